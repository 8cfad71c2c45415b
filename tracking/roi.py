"""Where to look between full-frame detections: what changed, and where tracked faces are.

A full-frame detection (at 1x and, for frames under 960 px, upscaled to 960 px) is most
of the classical path's cost. Every ``full_every``-th detection (and on the first frame
and at scene cuts) still looks at the whole frame; the ones between look only at crops:

* around what changed since the previous detection: a face that enters, walks, turns or
  is uncovered changes its pixels, so a face can only *appear* where something moved;
* around every face the previous detection left tracked, moved on by its measured speed
  (:meth:`CropPlanner.face_crops`): a face that stands still stays detected rather than
  held. The pipeline looks at these in a second job, once that detection is tracked.

A face the detector missed where nothing moves is looked for again by the next full pass
(on a still image a full pass would miss it again anyway). When the crops would cover
most of the frame (a moving camera, noise, a crowd) the whole frame is used instead, so
a plan never costs more than the whole frame. Measured on vtest.avi: see ``benchmarks/bench_pipeline.py``
and ``benchmarks/coverage.py`` (README, "Speed" and "Coverage").
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import cv2
import numpy as np

from .motion import STILL, Motion

MOTION_SCALE = 4  # the motion mask is computed on a copy this many times smaller
MOTION_LEVEL = 8  # grey levels (of 255) a pixel of that copy must change by to count
MIN_CROP = 48  # frame pixels a crop has at least on each side (vtest.avi: 64 px, 8 % more work, 22 exposed instead of 24)
MAX_CROPS = 48  # more separate crops than this: one full pass instead


def _thumb(image: np.ndarray) -> np.ndarray:
    h, w = image.shape[:2]
    small = cv2.resize(image, (max(1, w // MOTION_SCALE), max(1, h // MOTION_SCALE)), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(small, cv2.COLOR_RGB2GRAY) if small.ndim == 3 else small


def motion_boxes(previous: np.ndarray, current: np.ndarray) -> np.ndarray:
    """Boxes (N, 4 xyxy, in frame pixels) around the pixels of thumbnail ``current`` (made
    by :func:`_thumb`) that differ from ``previous``."""
    return _boxes((cv2.absdiff(current, previous) > MOTION_LEVEL).astype(np.uint8))


EDGE_FACE = 48  # frame px: the band beside a revealed strip that is looked at too (see compensated_motion_boxes)


def compensated_motion_boxes(previous: np.ndarray, current: np.ndarray, camera: Motion) -> np.ndarray:
    """:func:`motion_boxes` on a moving camera: ``previous`` is first moved by ``camera``
    (frame pixels), and a pixel has moved only if it lies outside the range of its 3x3
    neighbourhood in the moved copy by ``MOTION_LEVEL`` (resampling shifts edges by a
    fraction of a pixel; those are not motion). Where the moved copy has no pixels (the
    scene the camera brought into view at the frame's edge) everything counts as moved."""
    h, w = current.shape[:2]
    m = camera.matrix.astype(np.float32).copy()
    m[:, 2] /= MOTION_SCALE  # frame pixels -> thumbnail pixels (the linear part is scale-free)
    warped = cv2.warpAffine(previous, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    valid = cv2.warpAffine(np.full((h, w), 255, np.uint8), m, (w, h), flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    kernel = np.ones((3, 3), np.uint8)
    low, high = cv2.erode(warped, kernel), cv2.dilate(warped, kernel)
    cur = current.astype(np.int16)
    moved = (cur < low.astype(np.int16) - MOTION_LEVEL) | (cur > high.astype(np.int16) + MOTION_LEVEL)
    # The revealed strip, and beside it a band a small face wide: a face the frame's edge
    # cut at the detection before was not found there (a 29 px face entering a pan, bare).
    band = max(2, int(np.ceil(EDGE_FACE / MOTION_SCALE)))
    moved |= cv2.erode(valid, kernel, iterations=band) == 0
    return _boxes(moved.astype(np.uint8))


def _boxes(moved: np.ndarray) -> np.ndarray:
    if not moved.any():
        return np.zeros((0, 4), np.float32)
    moved = cv2.dilate(moved, np.ones((3, 3), np.uint8))  # join the parts of one moving person
    n, _, stats, _ = cv2.connectedComponentsWithStats(moved, connectivity=8)
    x, y, w, h = (stats[1:, i].astype(np.float32) for i in range(4))
    return np.stack([x, y, x + w, y + h], axis=1) * MOTION_SCALE


def _area(b: np.ndarray) -> float:
    return float((b[2] - b[0]) * (b[3] - b[1]))


def merge_boxes(boxes: np.ndarray, slack: float = 1.25) -> np.ndarray:
    """Overlapping ``boxes`` joined into their union box where that costs little: when the
    union is at most ``slack`` times the two areas together (two crops that overlap are
    fine, one crop spanning two far corners is not). Repeated until nothing joins."""
    boxes = [b.astype(np.float32) for b in boxes]
    merged = True
    while merged and len(boxes) > 1:
        merged = False
        out: list[np.ndarray] = []
        for b in boxes:
            for i, o in enumerate(out):
                if b[0] <= o[2] and o[0] <= b[2] and b[1] <= o[3] and o[1] <= b[3]:
                    union = np.array([min(b[0], o[0]), min(b[1], o[1]), max(b[2], o[2]), max(b[3], o[3])], np.float32)
                    if _area(union) <= slack * (_area(b) + _area(o)):
                        out[i] = union
                        merged = True
                        break
            else:
                out.append(b)
        boxes = out
    return np.array(boxes, np.float32).reshape(-1, 4)


@dataclass(frozen=True)
class Crops:
    """Where a detection between full passes looks (N, 4 xyxy int, frame pixels):
    ``faces`` around the tracked faces, ``moved`` around what changed. The two are merged
    apart: a face crop inside a moved one is still looked at on its own (on vtest.avi,
    dropping them, or merging both kinds into one set, left more faces exposed: the
    network finds small faces on a small crop that it misses on a larger one)."""

    faces: np.ndarray
    moved: np.ndarray

    @property
    def area(self) -> float:
        return float(sum(_area(c) for c in self.faces) + sum(_area(c) for c in self.moved))

    def __len__(self) -> int:
        return len(self.faces) + len(self.moved)


class CropPlanner:
    """Decides, for each detection in frame order, the whole frame (``None``) or crops.

    ``full_every``: every n-th detection looks at the whole frame (1: all of them).
    ``pad``: pixels added around each motion and track box (at least; a tracked face
    also grows by half its size), so that a face at its edge is inside the crop.
    ``max_share``: crops covering more than this share of the frame: the whole frame.
    """

    def __init__(self, full_every: int = 4, pad: int = 16, max_share: float = 0.8) -> None:
        self.full_every, self.pad, self.max_share = max(1, full_every), pad, max_share
        self._thumb: np.ndarray | None = None
        # What moved (frame pixels, the camera's motion taken out) between the last two
        # calls, whole-frame ones too; None where not known (the first call, a new size, a
        # camera motion not measured): then anything may have moved anywhere.
        self.moved: np.ndarray | None = None
        self._since_full = 0
        self.full = 0  # detections planned on the whole frame
        self.cropped = 0  # ... and on crops

    def plan(self, image: np.ndarray, force_full: bool = False, camera: Motion = STILL) -> Crops | None:
        """Crops around what moved for the detection of ``image``, or None for the whole
        frame (the crops around tracked faces are :meth:`face_crops`, a second job that
        waits for the detection before). ``force_full``: the first frame of a shot, or the
        last one before a cut. ``camera``: the camera's motion since the image of the call
        before (tracking/motion.py); what moved is measured after it is taken out, and the
        strip of scene it brought into view is always looked at. Not known: the whole frame."""
        previous, self._thumb = self._thumb, _thumb(image) if self.full_every > 1 else None
        self.moved = None
        if self.full_every == 1 or previous is None or previous.shape != self._thumb.shape or not camera.known:
            return self._whole()
        h, w = image.shape[:2]
        moved = motion_boxes(previous, self._thumb) if camera.still else compensated_motion_boxes(previous, self._thumb, camera)
        self.moved = moved
        if force_full or self._since_full + 1 >= self.full_every:
            return self._whole()
        if len(moved) > 4 * MAX_CROPS:
            return self._whole()
        # A moving area gets a fixed margin (it holds the whole moving person).
        crops = Crops(np.zeros((0, 4), np.int32), self._merged(moved, np.full((len(moved), 1), float(self.pad)), w, h))
        if len(crops) > MAX_CROPS or crops.area > self.max_share * w * h:
            return self._whole()
        self._since_full += 1
        self.cropped += 1
        return crops

    @classmethod
    def face_crops(cls, faces: Iterable[np.ndarray], w: int, h: int, pad: int = 16) -> np.ndarray:
        """Crops around tracked face boxes (already moved to this frame): half the face's
        size more on each side, at least ``pad`` (context for the detector, and its motion)."""
        faces = np.array(list(faces), np.float32).reshape(-1, 4)
        size = np.maximum(faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1])[:, None]
        return cls._merged(faces, np.maximum(pad, 0.5 * size), w, h)

    @staticmethod
    def _merged(boxes: np.ndarray, grow: np.ndarray, w: int, h: int) -> np.ndarray:
        boxes = boxes + np.concatenate([-grow, -grow, grow, grow], axis=1)
        # At least MIN_CROP px a side: on a crop barely larger than a small face the network
        # missed faces it finds on the frame (the track was then held and its cover grew).
        short = np.maximum(0.0, MIN_CROP - (boxes[:, 2:] - boxes[:, :2])) / 2
        boxes = boxes + np.concatenate([-short, short], axis=1)
        boxes = np.clip(boxes, 0, [w, h, w, h]).astype(np.float32)
        boxes = boxes[(boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])]
        return np.round(merge_boxes(boxes)).astype(np.int32).reshape(-1, 4)

    def _whole(self) -> None:
        self._since_full = 0
        self.full += 1
        return None
