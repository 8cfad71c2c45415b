"""Utility: does the output still look like the video, and does it flicker?

* Warping error (Lai et al., "Learning Blind Video Temporal Consistency", ECCV 2018):
  optical flow on the ORIGINAL frames t -> t+1, the OUTPUT frame t+1 warped back onto
  t, squared difference (RGB in [0, 1], summed over channels) averaged over the pixels
  that a forward-backward consistency check finds not occluded. Measured inside the
  anonymized regions (where a method can flicker) and over the whole frame.
* Background: PSNR and SSIM outside the covered regions (what a method must not touch).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from tracking.tracker import enlarge

PSNR_CAP = 100.0  # dB reported for identical pixels


class OriginalFlow:
    """Forward flow of two original frames, as remap grids, plus the non-occluded mask."""

    def __init__(self) -> None:
        self._dis = cv2.DISOpticalFlow.create(cv2.DISOPTICAL_FLOW_PRESET_MEDIUM)

    def __call__(self, previous: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        a = cv2.cvtColor(previous, cv2.COLOR_RGB2GRAY)
        b = cv2.cvtColor(current, cv2.COLOR_RGB2GRAY)
        forward = self._dis.calc(a, b, None)
        backward = self._dis.calc(b, a, None)
        h, w = a.shape
        gx, gy = np.meshgrid(np.arange(w, dtype=np.float32), np.arange(h, dtype=np.float32))
        map_x, map_y = gx + forward[..., 0], gy + forward[..., 1]
        back = cv2.remap(backward, map_x, map_y, cv2.INTER_LINEAR)
        # Lai et al.: occluded where forward and warped backward flow do not cancel.
        mismatch = ((forward + back) ** 2).sum(-1)
        occluded = mismatch > 0.01 * ((forward**2).sum(-1) + (back**2).sum(-1)) + 0.5
        inside = (map_x >= 0) & (map_x <= w - 1) & (map_y >= 0) & (map_y <= h - 1)
        return map_x, map_y, inside & ~occluded


def warp_error_map(previous_out: np.ndarray, current_out: np.ndarray, map_x: np.ndarray, map_y: np.ndarray) -> np.ndarray:
    """Per-pixel squared difference between output t and output t+1 warped onto t."""
    warped = cv2.remap(current_out, map_x, map_y, cv2.INTER_LINEAR).astype(np.float32) / 255.0
    return ((previous_out.astype(np.float32) / 255.0 - warped) ** 2).sum(-1)


def covered_mask(original: np.ndarray, output: np.ndarray, boxes: np.ndarray, margin: float = 0.3) -> np.ndarray:
    """Pixels the anonymizer changed: clearly different blobs (codec noise filtered out),
    plus the original's face boxes enlarged by ``margin`` (a cover may look like the face)."""
    diff = cv2.absdiff(cv2.GaussianBlur(original, (5, 5), 0), cv2.GaussianBlur(output, (5, 5), 0)).max(-1)
    changed = (diff > 24).astype(np.uint8)
    changed = cv2.morphologyEx(changed, cv2.MORPH_OPEN, np.ones((5, 5), np.uint8))
    changed = cv2.dilate(changed, np.ones((9, 9), np.uint8))
    h, w = changed.shape
    for box in boxes:
        x1, y1, x2, y2 = enlarge(box, margin)
        changed[max(0, int(y1)):min(h, int(np.ceil(y2))), max(0, int(x1)):min(w, int(np.ceil(x2)))] = 1
    return changed.astype(bool)


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """SSIM (Wang et al. 2004) of two grey images, Gaussian window sigma 1.5."""
    a, b = a.astype(np.float32), b.astype(np.float32)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    blur = lambda x: cv2.GaussianBlur(x, (11, 11), 1.5)  # noqa: E731
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))


def psnr(mse: float) -> float:
    return PSNR_CAP if mse <= 1e-10 else min(PSNR_CAP, float(10 * np.log10(255.0**2 / mse)))


@dataclass
class UtilityResult:
    frames_compared: int = 0
    warp_error: float | None = None  # inside anonymized regions (x 1000 reads easier; raw here)
    warp_error_original: float | None = None  # the original's own, same pixels: the floor
    warp_error_frame: float | None = None  # whole frame
    psnr_outside: float | None = None  # dB, background outside covered regions
    ssim_outside: float | None = None
    covered_fraction: float = 0.0  # of the pixels, on average
    faces_per_frame_original: float = 0.0
    faces_per_frame_output: float = 0.0


class UtilityMeter:
    """Accumulates one output's flicker and background figures."""

    def __init__(self) -> None:
        self._warp = [0.0, 0]  # sum of squared errors, pixels (regions)
        self._warp_orig = [0.0, 0]
        self._warp_frame = [0.0, 0]
        self._sq, self._outside, self._ssim = 0.0, 0, 0.0
        self._covered = 0.0
        self.frames = 0
        self._faces = [0, 0]
        self.per_frame_warp: list[tuple[int, float]] = []

    def add_frame(self, original: np.ndarray, output: np.ndarray, covered: np.ndarray, faces_original: int, faces_output: int) -> None:
        self.frames += 1
        self._faces[0] += faces_original
        self._faces[1] += faces_output
        self._covered += float(covered.mean())
        outside = ~covered
        n = int(outside.sum())
        if n:
            d = original.astype(np.float32) - output.astype(np.float32)
            self._sq += float((d[outside] ** 2).mean(-1).sum())
            ssim = _ssim_map(cv2.cvtColor(original, cv2.COLOR_RGB2GRAY), cv2.cvtColor(output, cv2.COLOR_RGB2GRAY))
            self._ssim += float(ssim[outside].sum())
            self._outside += n

    def add_warp(self, frame_index: int, error: np.ndarray, error_original: np.ndarray, valid: np.ndarray, regions: np.ndarray) -> None:
        self._warp_frame[0] += float(error[valid].sum())
        self._warp_frame[1] += int(valid.sum())
        inside = valid & regions
        n = int(inside.sum())
        if n:
            e = float(error[inside].sum())
            self._warp[0] += e
            self._warp[1] += n
            self._warp_orig[0] += float(error_original[inside].sum())
            self._warp_orig[1] += n
            self.per_frame_warp.append((frame_index, e / n))

    def result(self) -> UtilityResult:
        mean = lambda acc: acc[0] / acc[1] if acc[1] else None  # noqa: E731
        r = UtilityResult(frames_compared=self.frames)
        r.warp_error, r.warp_error_original, r.warp_error_frame = mean(self._warp), mean(self._warp_orig), mean(self._warp_frame)
        if self._outside:
            r.psnr_outside = psnr(self._sq / self._outside)
            r.ssim_outside = self._ssim / self._outside
        if self.frames:
            r.covered_fraction = self._covered / self.frames
            r.faces_per_frame_original = self._faces[0] / self.frames
            r.faces_per_frame_output = self._faces[1] / self.frames
        return r
