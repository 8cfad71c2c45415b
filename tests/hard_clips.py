"""Hard clips, made from the shared faces over shared footage, with exact ground truth.

Each clip is a list of frames and, per frame, where every pasted face is: its box and
its inner box (eyes-nose-mouth, from the landmarks of the source photo, moved with the
face). Faces are pasted through a soft elliptical mask, so no rectangle edge helps
the detector; rotation, scale and brightness are applied to the face patch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import av
import cv2
import numpy as np

SIZE = (640, 480)


@dataclass
class FaceSource:
    patch: np.ndarray  # RGB crop around the face
    box: np.ndarray  # face box in patch coordinates
    landmarks: np.ndarray  # (5, 2) in patch coordinates


@dataclass
class Truth:
    face: int  # which source face (0: Grace Hopper, 1: Messi)
    box: np.ndarray
    inner: np.ndarray


@dataclass
class Clip:
    name: str
    frames: list[np.ndarray] = field(default_factory=list)
    truth: list[list[Truth]] = field(default_factory=list)


def _read(path: Path, index: int = 0) -> np.ndarray:
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i == index:
                return f.to_ndarray(format="rgb24")
    raise ValueError(f"{path}: no frame {index}")


def sources(data: Path) -> list[FaceSource]:
    """Grace Hopper and Messi: crops around the faces libfacedetection finds in the photos
    (boxes and landmarks measured once, written here so the clips never depend on a detector)."""
    grace = _read(data / "grace_hopper_512x512.jpg")[44:377, 122:411]
    messi = _read(data / "messi5.jpg")[78:147, 210:270]
    return [
        FaceSource(grace, np.array([60, 60, 229, 273], np.float32),
                   np.array([[102, 130], [185, 130], [141, 176], [105, 206], [183, 206]], np.float32)),
        FaceSource(messi, np.array([15, 15, 45, 54], np.float32),
                   np.array([[29, 28], [41, 28], [38, 35], [31, 42], [40, 43]], np.float32)),
    ]


def backgrounds(data: Path) -> list[np.ndarray]:
    """The vtest.avi street (its negative is a second shot without faces)."""
    return [cv2.resize(_read(data / "vtest.avi"), SIZE, interpolation=cv2.INTER_AREA)]


def paste(image: np.ndarray, src: FaceSource, centre: tuple[float, float], size: float, angle: float = 0.0,
          gain: float = 1.0, face: int = 0) -> Truth:
    """Paste ``src`` so its face box is ``size`` px wide, centred at ``centre``, turned by
    ``angle`` degrees (counter-clockwise) and its brightness times ``gain``."""
    bw = float(src.box[2] - src.box[0])
    scale = size / bw
    fc = (src.box[:2] + src.box[2:]) / 2
    m = cv2.getRotationMatrix2D((float(fc[0]), float(fc[1])), angle, scale)
    m[:, 2] += np.array(centre) - fc  # the face centre lands on ``centre``
    h, w = image.shape[:2]
    patch = cv2.warpAffine(src.patch, m, (w, h), flags=cv2.INTER_LINEAR)
    alpha = np.zeros(src.patch.shape[:2], np.float32)
    ph, pw = alpha.shape
    cv2.ellipse(alpha, (pw // 2, ph // 2), (int(pw * 0.48), int(ph * 0.48)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.04 * pw))
    alpha = cv2.warpAffine(alpha, m, (w, h), flags=cv2.INTER_LINEAR)[:, :, None]
    out = image.astype(np.float32) * (1 - alpha) + np.clip(patch.astype(np.float32) * gain, 0, 255) * alpha
    image[:] = out.astype(np.uint8)

    def moved(points: np.ndarray) -> np.ndarray:
        return points @ m[:, :2].T + m[:, 2]

    b = src.box
    corners = moved(np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32))
    marks = moved(src.landmarks)
    pad = 0.1 * size
    inner = np.concatenate([marks.min(0) - pad, marks.max(0) + pad]).astype(np.float32)
    return Truth(face, np.concatenate([corners.min(0), corners.max(0)]).astype(np.float32), inner)


def _clip(name: str, bg: np.ndarray, n: int, faces) -> Clip:  # noqa: ANN001 - faces(i) -> [(src, kwargs)]
    clip = Clip(name)
    for i in range(n):
        image = bg(i).copy() if callable(bg) else bg.copy()
        clip.truth.append([paste(image, src, face=k, **kw) for k, src, kw in faces(i)])
        clip.frames.append(image)
    return clip


def clips(data: Path) -> dict[str, Clip]:
    grace, messi = sources(data)
    (street,) = backgrounds(data)
    return {c.name: c for c in [
        # Two faces crossing paths at 12 px/frame each.
        _clip("crossing", street, 32, lambda i: [(0, grace, {"centre": (120 + 12 * i, 220), "size": 44}),
                                                 (1, messi, {"centre": (520 - 12 * i, 240), "size": 40})]),
        # A cut at frame 14 (frame 13 is one the schedule skips) while two small faces
        # move fast; after it, both are elsewhere, close enough to be taken for the
        # same faces having moved.
        _clip("cut", lambda i: street if i < 14 else 255 - street, 28,
              lambda i: [(0, grace, {"centre": (100 + 15 * i, 150) if i < 14 else (425 + 10 * (i - 14), 240), "size": 48}),
                         (1, messi, {"centre": (540 - 15 * i, 380) if i < 14 else (215 - 10 * (i - 14), 300), "size": 48})]),
        # In-plane rotation 0 -> 90 degrees and back, 6 degrees a frame, then the other way.
        _clip("rotation", street, 62, lambda i: [(0, grace, {"centre": (320, 240), "size": 60,
                                                             "angle": 6.0 * (15 - abs(15 - i)) if i <= 30 else -6.0 * (15 - abs(45 - i))})]),
        # Shrinking from 100 px to 20 px and back.
        _clip("shrinking", street, 40, lambda i: [(0, grace, {"centre": (300 + 2 * i, 240), "size": 20 + 80 * abs(20 - i) / 20})]),
        # A dim stretch: brightness down to a quarter and back up.
        _clip("dim", street, 32, lambda i: [(0, grace, {"centre": (200 + 6 * i, 240), "size": 50,
                                                        "gain": 0.25 + 0.75 * abs(16 - i) / 16})]),
        # A face walking out of the frame on the left until half of it is outside, and back.
        _clip("half-out", street, 32, lambda i: [(0, grace, {"centre": (200 - 12.5 * (16 - abs(16 - i)), 240), "size": 100})]),
        # A fast face: 30 px/frame across the frame.
        _clip("fast", street, 20, lambda i: [(0, grace, {"centre": (40 + 30 * i, 240), "size": 40})]),
        # On a still street, between full-frame detections (tracking/roi.py): a small face
        # appears from nothing on a frame the schedule skips and stays; a second one later.
        _clip("pop-in", street, 44, lambda i: [(1, messi, {"centre": (430, 200), "size": 26})] * (i >= 9)
              + [(0, grace, {"centre": (150, 330), "size": 44})] * (i >= 22)),
        # A face walks in from the right, then stands still for 30 frames: found on a crop
        # around what moved, then kept on the crop around its track.
        _clip("standing", street, 44, lambda i: [(0, grace, {"centre": (max(400.0, 660 - 20 * i), 220), "size": 40})]),
    ]}
