"""Faces turned away: the yaw set (tests/yaw_set.py) and the second look (CenterFace on crops
around tracked faces, detection.second_look, on in -c paranoid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import read_image
from privacy import faces
from test_coverage import _pipeline
from yaw_set import real_profiles, turned_faces

from streamer.config import load_config
from tracking.detectors import CenterFaceCrops, LibFaceDetector


def _found(boxes: np.ndarray, centre: np.ndarray, size: float) -> bool:
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    return bool(len(boxes)) and bool((np.hypot(*(centres - centre).T) <= size / 2).any())


def test_the_second_look_finds_real_profiles_the_detector_drops(data: Path) -> None:
    """vtest.avi's walkers seen from the side: libfacedetection finds 3 of the 8, CenterFace
    on the crops around them 3 more (benchmarks/profile_recall.py has the table)."""
    detector, second = LibFaceDetector(threshold=0.2), CenterFaceCrops(threshold=0.2)
    alone = both = 0
    for f in real_profiles(data):
        first = _found(detector.detect(f.image).xyxy, f.centre, f.size)
        alone += first
        both += first or _found(second.detect_crops(f.image, np.array([f.crop])).xyxy, f.centre, f.size)
    assert both >= alone + 2, (alone, both)


def test_turned_faces_are_found_up_to_60_degrees(data: Path) -> None:
    faces_ = [f for f in turned_faces(data) if f.yaw <= 60]
    detector = LibFaceDetector(threshold=0.2)
    missed = [(f.yaw, f.size) for f in faces_ if not _found(detector.detect(f.image).xyxy, f.centre, f.size)]
    assert missed == []


class _Counting(CenterFaceCrops):
    def __init__(self) -> None:
        super().__init__(threshold=0.2)
        self.boxes: list[np.ndarray] = []

    def detect_crops(self, image, boxes):  # noqa: ANN001, ANN201
        self.boxes.append(np.asarray(boxes))
        return super().detect_crops(image, boxes)


def test_the_second_look_runs_around_tracked_faces_on_whole_frame_detections(data: Path) -> None:
    """-c paranoid detects the whole frame every time (no crops of its own): the second look
    still gets the crops around the faces the detection before left tracked."""
    image = read_image(data / "grace_hopper_512x512.jpg")
    p, sink = _pipeline([image] * 5, every=1)
    p.second_look = second = _Counting()
    p.run()
    assert len(second.boxes) == 4  # every detection after the first
    face = faces(image)[0]
    for boxes in second.boxes:
        assert any(b[0] <= face[0] and b[1] <= face[1] and b[2] >= face[2] and b[3] >= face[3] for b in boxes)
    assert all(len(faces(f, threshold=0.3)) == 0 for f in sink.frames)


def test_paranoid_turns_the_second_look_on() -> None:
    assert load_config(["paranoid"]).detection.second_look == "centerface"
    assert load_config([]).detection.second_look == "none"
