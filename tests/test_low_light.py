"""Dark footage: the detector is shown a dark frame brightened (tracking/detectors.py
``low_light_gain``). Megamind.avi darkened to 15 % lost a third of its faces to the
network (26 of 40 found at confidence 0.5), vtest.avi three quarters (11 of 45)."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from tracking.detectors import LibFaceDetector, low_light_gain


def _frames(path: Path, step: int) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % step == 0]


def _found(detector: LibFaceDetector, frames: list[np.ndarray]) -> int:
    return sum(int((detector.detect(f).confidence >= 0.5).sum()) for f in frames)


@pytest.mark.parametrize(("clip", "step"), [("Megamind.avi", 10), ("vtest.avi", 40)])
def test_faces_in_a_dark_frame_are_found_as_in_daylight(data: Path, clip: str, step: int) -> None:
    frames = _frames(data / clip, step)
    detector = LibFaceDetector(threshold=0.2)
    daylight = _found(detector, frames)
    dark = [(f * 0.15).astype(np.uint8) for f in frames]
    assert daylight >= 20
    assert _found(detector, dark) >= 0.9 * daylight


def test_a_normal_frame_is_not_brightened(data: Path) -> None:
    frames = _frames(data / "vtest.avi", 100) + _frames(data / "Megamind.avi", 50)[1:]  # Megamind's first frame is black
    assert all(low_light_gain(f) == 1.0 for f in frames)
    assert low_light_gain((frames[0] * 0.15).astype(np.uint8)) > 1.3
