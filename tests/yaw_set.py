"""Faces turned away from the camera, with known positions: the shared faces turned by
foreshortening, and the real profile heads of vtest.avi's walkers.

A flat face turned by ``yaw`` shows its width times cos(yaw), and its centre moves towards
the side it turns to; that is all a photo can give (no 3D), so the synthetic set is easier
than real profiles. The real ones are the walkers a user saw bare (frames 280-287, 756,
760: centres measured by eye on the frames, heads of 6-10 px).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import av
import cv2
import numpy as np
from hard_clips import sources

YAWS = (0.0, 30.0, 45.0, 60.0, 75.0)
SIZES = (16, 24, 32, 48)
REAL = {280: [(370, 168), (640, 148)], 281: [(365, 168)], 283: [(355, 168)], 285: [(345, 168)], 287: [(330, 168)],
        756: [(448, 226)], 760: [(245, 197)]}
REAL_SIZE = 10.0


@dataclass
class YawFace:
    image: np.ndarray  # RGB frame holding the face
    centre: np.ndarray  # (x, y) of the face
    size: float  # px, its height
    yaw: float  # degrees; -1 for a real profile
    crop: tuple[int, int, int, int]  # the crop a tracker's second look would cut around it


def _vtest_frames(data: Path, wanted: set[int]) -> dict[int, np.ndarray]:
    out = {}
    with av.open(str(data / "vtest.avi")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i in wanted:
                out[i] = f.to_ndarray(format="rgb24")
            if i >= max(wanted):
                break
    return out


def _crop(centre: np.ndarray, size: float, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    half = max(24.0, 2.5 * size)
    h, w = shape[:2]
    x1, y1 = max(0, int(centre[0] - half)), max(0, int(centre[1] - half))
    return x1, y1, min(w, int(centre[0] + half)), min(h, int(centre[1] + half))


def turned_faces(data: Path) -> list[YawFace]:
    """Each shared face at each yaw and size, alone on a vtest.avi background frame."""
    background = _vtest_frames(data, {0})[0]
    faces = []
    for src in sources(data):
        bw, bh = float(src.box[2] - src.box[0]), float(src.box[3] - src.box[1])
        for yaw in YAWS:
            squeeze = float(np.cos(np.radians(yaw)))
            for size in SIZES:
                scale = size / bh
                # Squeezed about the face's centre, which moves a quarter of the lost width aside.
                fc = (src.box[:2] + src.box[2:]) / 2
                m = np.array([[scale * squeeze, 0, 0], [0, scale, 0]], np.float32)
                centre = np.array([200.0 + 0.25 * bw * scale * (1 - squeeze), 200.0])
                m[:, 2] = centre - m[:, :2] @ fc
                image = background.copy()
                patch = cv2.warpAffine(src.patch, m, (image.shape[1], image.shape[0]), flags=cv2.INTER_AREA)
                alpha = cv2.warpAffine(np.ones(src.patch.shape[:2], np.float32), m, (image.shape[1], image.shape[0]))[..., None]
                image = (image * (1 - alpha) + patch * alpha).astype(np.uint8)
                faces.append(YawFace(image, centre, float(size), yaw, _crop(centre, size, image.shape)))
    return faces


def real_profiles(data: Path) -> list[YawFace]:
    frames = _vtest_frames(data, set(REAL))
    return [YawFace(frames[i], np.array(p, float), REAL_SIZE, -1.0, _crop(np.array(p, float), REAL_SIZE, frames[i].shape))
            for i, points in REAL.items() for p in points]
