"""Global camera motion between frames: pans, zooms, roll and handshake, in frame pixels.

BoT-SORT's recipe (global motion compensation, GMC): corners on a small grey copy of the
frame (``goodFeaturesToTrack``), followed into the next frame by pyramidal Lucas-Kanade
optical flow, and a similarity transform (translation, rotation, uniform scale) fitted to
the matches by RANSAC (``estimateAffinePartial2D``), so the people who move, a minority
of the corners, do not pull it. Everything that moves a box between frames (held,
interpolated and backfilled covers, the tracker's prediction, the crops around tracked
faces) moves it with the camera first and with the face's own speed second; "what moved"
(tracking/roi.py) is measured after the camera's motion is taken out.

Not ``trackers.utils.cmc.CMC``: it returns the identity when it fails, so a failure reads
as "the camera stood still", exactly the case where covers must not stay put; and its
integer downscale makes the cost grow with the resolution (a fixed-width copy here:
~2 ms a frame whatever the frame size). Its Kalman-state warp (``CMC.apply_batch``) is
used for the tracker (tracking/tracker.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import cv2
import numpy as np

WIDTH = 320  # the grey copy the motion is measured on (vtest.avi: 0.04 px mean error at 320, 0.2 px at 160)
MAX_CORNERS = 200
MIN_INLIERS = 12  # fewer matches agreeing on one motion: unknown (a cut, a blank or blurred frame)
MIN_INLIER_SHARE = 0.3
REFIND = 8  # frames a set of corners is followed before they are found anew (see MotionEstimator)
STILL_PX = 0.5  # a motion that moves no frame corner more than this is no motion (a fixed camera's noise)


def _identity() -> np.ndarray:
    return np.eye(2, 3, dtype=np.float64)


@dataclass(frozen=True)
class Motion:
    """Frame ``i-1`` -> frame ``i`` (or across several frames, composed): ``matrix`` maps a
    point of the earlier frame to where the scene at that point is in the later one.
    ``known`` False: it could not be measured; the matrix is then the identity and covers
    must allow for any motion (today's growth), as before camera motion was measured."""

    matrix: np.ndarray = field(default_factory=_identity)
    known: bool = True
    residual: float = 0.0  # frame px: median distance of the inliers from the fit (the scene's own motion, parallax)

    @cached_property  # asked for every box moved: np.allclose each time was 6 % of a vtest.avi run
    def still(self) -> bool:
        return self.known and bool(np.allclose(self.matrix, _identity()))

    @property
    def scale(self) -> float:
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def then(self, later: Motion) -> Motion:
        """This motion followed by ``later``."""
        if later.still and self.known:
            return Motion(self.matrix, True, self.residual + later.residual)
        a = np.vstack([self.matrix, [0, 0, 1]])
        b = np.vstack([later.matrix, [0, 0, 1]])
        return Motion((b @ a)[:2], self.known and later.known, self.residual + later.residual)

    def inverse(self) -> Motion:
        return Motion(cv2.invertAffineTransform(self.matrix), self.known, self.residual)

    def points(self, xy: np.ndarray) -> np.ndarray:
        """Points (..., 2) moved."""
        if self.still:
            return xy
        return (xy @ self.matrix[:, :2].T + self.matrix[:, 2]).astype(xy.dtype)

    def boxes(self, xyxy: np.ndarray) -> np.ndarray:
        """Boxes (N, 4) or one box (4,) moved: the axis-aligned hull of their moved corners."""
        if self.still:
            return xyxy
        b = np.asarray(xyxy, np.float32).reshape(-1, 4)
        corners = np.stack([b[:, [0, 1]], b[:, [2, 1]], b[:, [2, 3]], b[:, [0, 3]]], axis=1)  # (N, 4, 2)
        moved = self.points(corners.astype(np.float64))
        out = np.concatenate([moved.min(1), moved.max(1)], axis=1).astype(np.float32)
        return out.reshape(np.shape(xyxy))

    def vectors(self, v: np.ndarray) -> np.ndarray:
        """A velocity (xyxy pixels per frame) turned and scaled with the scene (no translation)."""
        if self.still or v is None:
            return v
        lin = self.matrix[:, :2]
        p = np.asarray(v, np.float64).reshape(2, 2) @ lin.T
        return p.reshape(4).astype(np.float32)


STILL = Motion()
UNKNOWN = Motion(known=False)


def compose(motions: list[Motion]) -> Motion:
    """Frame-to-frame motions in order, as one."""
    out = STILL
    for m in motions:
        out = out.then(m)
    return out


class MotionEstimator:
    """Call with each frame in order; returns the :class:`Motion` from the frame before."""

    def __init__(self, width: int = WIDTH) -> None:
        self.width = width
        self._grey: np.ndarray | None = None
        self._follow: np.ndarray | None = None  # the last frame's corners (inliers), where they were found in it
        self._scale = 1.0
        self.measured = 0
        self.failed = 0

    def reset(self) -> None:
        self._grey = None
        self._follow = None

    def thumb(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        h, w = image.shape[:2]
        scale = min(1.0, self.width / w)
        step = max(1, int(1 / scale) // 2)  # subsample big frames first: resizing 4K whole costs more than the fit
        src = image[::step, ::step] if step > 1 else image
        size = (max(8, round(w * scale)), max(8, round(h * scale)))
        grey = cv2.cvtColor(src, cv2.COLOR_RGB2GRAY) if src.ndim == 3 else src  # grey first: half the cost
        # Halved by area while twice too large, then bilinear: INTER_AREA by a factor like
        # 2.4 took 0.9 ms a vtest.avi frame, this 0.3 ms (the motion differs by <= 0.25 px).
        while grey.shape[1] >= 2 * size[0]:
            grey = cv2.resize(grey, (grey.shape[1] // 2, grey.shape[0] // 2), interpolation=cv2.INTER_AREA)
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_LINEAR)
        return grey, size[0] / w

    def __call__(self, image: np.ndarray) -> Motion:
        grey, scale = self.thumb(image)
        previous, self._grey = self._grey, grey
        if previous is None or previous.shape != grey.shape:
            self._follow = None
            return UNKNOWN
        self._scale = scale
        self.measured += 1
        # The corners followed into the last frame are followed on (KLT), found anew every
        # REFIND frames or when fewer than half are left (a pan takes them out of the frame):
        # finding them was a third of the cost.
        corners = self._follow if self._follow is not None and len(self._follow) >= MAX_CORNERS // 2 \
            and self.measured % REFIND else None
        m, self._follow = _estimate(previous, grey, scale, corners)
        self.failed += not m.known
        return m


def estimate(previous: np.ndarray, current: np.ndarray, scale: float = 1.0) -> Motion:
    """The similarity transform from grey ``previous`` to ``current`` (thumbnails ``scale``
    times the frame), in frame pixels."""
    return _estimate(previous, current, scale)[0]


def _corners(grey: np.ndarray) -> np.ndarray | None:
    return cv2.goodFeaturesToTrack(grey, MAX_CORNERS, 0.01, max(4, grey.shape[1] // 40), blockSize=3)


def _estimate(previous: np.ndarray, current: np.ndarray, scale: float = 1.0,
              corners: np.ndarray | None = None) -> tuple[Motion, np.ndarray | None]:
    """:func:`estimate`, from ``corners`` of ``previous`` (found anew when None), and the
    inlier corners where they are in ``current`` (the next call's, or None)."""
    h, w = current.shape[:2]
    if corners is None:
        corners = _corners(previous)
    if corners is None or len(corners) < MIN_INLIERS:
        return UNKNOWN, None
    moved, status, _ = cv2.calcOpticalFlowPyrLK(previous, current, corners, None, winSize=(15, 15), maxLevel=3,
                                                criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 20, 0.03))
    ok = status.reshape(-1) == 1
    if ok.sum() < MIN_INLIERS:
        return UNKNOWN, None
    src, dst = corners.reshape(-1, 2)[ok], moved.reshape(-1, 2)[ok]
    matrix, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC, ransacReprojThreshold=1.0, maxIters=500)
    if matrix is None or inliers is None:
        return UNKNOWN, None
    inliers = inliers.reshape(-1).astype(bool)
    if inliers.sum() < max(MIN_INLIERS, MIN_INLIER_SHARE * len(corners)):
        return UNKNOWN, None
    inside = (dst[:, 0] >= 0) & (dst[:, 1] >= 0) & (dst[:, 0] < w - 1) & (dst[:, 1] < h - 1)
    follow = dst[inliers & inside].reshape(-1, 1, 2).astype(np.float32)
    fit = src[inliers] @ matrix[:, :2].T + matrix[:, 2]
    residual = float(np.median(np.linalg.norm(fit - dst[inliers], axis=1))) / scale
    # Back to frame pixels: x_frame = x_thumb / scale, for both sides.
    matrix = matrix.astype(np.float64)
    matrix[:, 2] /= scale
    corners_frame = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64) / scale
    shift = np.abs(corners_frame @ matrix[:, :2].T + matrix[:, 2] - corners_frame).max()
    if shift <= STILL_PX:
        return Motion(_identity(), True, residual), follow
    return Motion(matrix, True, residual), follow
