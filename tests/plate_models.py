"""Synthetic licence plates for the tests: yellow plates with black characters rendered onto
shared footage at several sizes and angles (the models they are run through are
camouflage/models/tiny_detectors.py's, in their publishers' formats)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from media import make_media

YELLOW = (250, 210, 20)  # RGB; UK rear plates are this colour


def draw_plate(frame: np.ndarray, centre: tuple[float, float], width: int, angle: float) -> np.ndarray:
    """A yellow plate with black characters, turned by ``angle`` degrees, drawn in place;
    returns the mask of its pixels."""
    h = max(4, round(width * 0.22))  # EU plates are 520 x 112 mm
    plate = np.zeros((h, width, 3), np.uint8)
    plate[:] = YELLOW
    cv2.putText(
        plate,
        "AB12 CDE",
        (round(width * 0.06), round(h * 0.78)),
        cv2.FONT_HERSHEY_SIMPLEX,
        h / 34,
        (0, 0, 0),
        max(1, h // 12),
        cv2.LINE_AA,
    )
    m = cv2.getRotationMatrix2D((width / 2, h / 2), angle, 1.0)
    m[:, 2] += np.array(centre) - (width / 2, h / 2)
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpAffine(plate, m, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((h, width), 255, np.uint8), m, size, flags=cv2.INTER_NEAREST) > 0
    frame[mask] = warped[mask]
    return mask


PLATES = ((120, 0.0), (70, 12.0), (44, -20.0))  # width in px, angle in degrees: several sizes and angles


def plate_clip(source: Path, path: Path, frames: int = 24) -> tuple[Path, list[list[np.ndarray]]]:
    """``frames`` frames of ``source`` with :data:`PLATES` drawn, each moving 3 px per frame;
    returns the clip and, per frame, the mask of each plate."""
    from conftest import read_frames

    out, masks = [], []
    for i, frame in enumerate(read_frames(source, frames)):
        frame = frame.copy()
        h, w = frame.shape[:2]
        masks.append(
            [
                draw_plate(frame, (w * (0.2 + 0.3 * k) + 3 * i, h * (0.3 + 0.25 * k)), width, angle)
                for k, (width, angle) in enumerate(PLATES)
            ]
        )
        out.append(frame)
    return make_media(path, out), masks
