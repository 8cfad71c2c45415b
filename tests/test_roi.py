"""Detections between full passes look at crops (tracking/roi.py): where something moved
and around tracked faces; the whole frame every ``full_every``-th time, at cuts, and
whenever crops would cover most of it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from conftest import read_image

from tracking.detectors import LibFaceDetector
from tracking.roi import MIN_CROP, CropPlanner, Crops, merge_boxes


def street(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = np.full((360, 640, 3), 90, np.uint8)
    image[200:] = 140
    for _ in range(20):  # some fixed texture, the same in every frame
        x, y = rng.integers(0, 600), rng.integers(0, 320)
        image[y:y + 40, x:x + 40] = rng.integers(0, 255, 3)
    return image


def inside(box: np.ndarray, crops: np.ndarray) -> bool:
    return any(c[0] <= box[0] and c[1] <= box[1] and c[2] >= box[2] and c[3] >= box[3] for c in crops)


def test_the_whole_frame_first_then_every_full_every_th_time() -> None:
    planner = CropPlanner(full_every=4)
    plans = [planner.plan(street()) for _ in range(9)]
    assert [p is None for p in plans] == [True, False, False, False, True, False, False, False, True]
    assert all(len(p) == 0 for p in plans if p is not None)  # nothing moved, nothing tracked: nothing to look at
    assert planner.plan(street(), force_full=True) is None  # a cut
    assert all(CropPlanner(full_every=1).plan(street()) is None for _ in range(3))


def test_what_moved_and_what_is_tracked_is_inside_a_crop() -> None:
    planner = CropPlanner(full_every=8)
    planner.plan(street())
    moved = street()
    moved[100:130, 300:330] = 255  # something appeared here
    tracked = np.array([500, 60, 530, 95], np.float32)  # a face standing still
    crops = planner.plan(moved)
    assert isinstance(crops, Crops)
    assert inside(np.array([300, 100, 330, 130]), crops.moved)
    assert not inside(tracked, crops.moved)  # nothing moved there: the second job's face crops hold it
    assert inside(tracked, CropPlanner.face_crops([tracked], 640, 360))
    assert crops.area < 0.2 * 640 * 360  # far less than the frame


def test_a_frame_that_changed_everywhere_is_detected_whole() -> None:
    planner = CropPlanner(full_every=8)
    planner.plan(street(0))
    noise = np.random.default_rng(1).integers(0, 255, (360, 640, 3), dtype=np.uint8)  # a moving camera, a flash
    assert planner.plan(noise) is None
    moving = np.random.default_rng(2).integers(0, 255, (360, 640, 3), dtype=np.uint8)  # and it goes on moving
    assert planner.plan(moving) is None
    assert planner.full == 3 and planner.cropped == 0


def test_what_changed_since_the_previous_detection_is_looked_at_once() -> None:
    """Only what changed since the previous detection: a face that appeared and stands
    still since is looked at by the second job, around the faces that detection left
    tracked (the pipeline; hard clip pop-in), not by motion."""
    planner = CropPlanner(full_every=8)
    appeared = street()
    appeared[150:190, 300:340] = 255
    planner.plan(street())
    crops = planner.plan(appeared)
    assert crops is not None and inside(np.array([300, 150, 340, 190]), crops.moved)
    crops = planner.plan(appeared.copy())  # nothing changed since: nothing to look at
    assert crops is not None and len(crops) == 0


def test_face_crops_hold_each_tracked_face_with_room_around_it() -> None:
    small, big = np.array([100, 100, 110, 112], np.float32), np.array([300, 50, 400, 170], np.float32)
    crops = CropPlanner.face_crops([small, big], 640, 360)
    assert len(crops) == 2
    assert inside(small - [16, 16, -16, -16], crops)  # at least the pad around a small face
    assert inside(big - [50, 50, -50, -50], crops)  # half its size around a large one
    assert all(c[2] - c[0] >= MIN_CROP and c[3] - c[1] >= MIN_CROP for c in crops)
    assert len(CropPlanner.face_crops([], 640, 360)) == 0


def test_a_frame_of_another_size_is_detected_whole() -> None:
    planner = CropPlanner(full_every=8)
    planner.plan(street())
    assert planner.plan(street()[:300, :500]) is None


def test_merge_joins_overlaps_only_where_it_costs_little() -> None:
    near = merge_boxes(np.array([[0, 0, 50, 50], [40, 0, 90, 50]], np.float32))
    assert near.tolist() == [[0, 0, 90, 50]]
    far = merge_boxes(np.array([[0, 0, 50, 50], [49, 49, 300, 300]], np.float32))  # touching corners: two crops
    assert len(far) == 2


def test_a_face_in_a_crop_is_found_where_the_whole_frame_finds_it(data: Path) -> None:
    face = read_image(data / "grace_hopper_512x512.jpg")[40:380, 110:420]
    import cv2

    image = street()
    image[60:60 + 85, 400:400 + 78] = cv2.resize(face, (78, 85))
    detector = LibFaceDetector(threshold=0.5)
    whole = detector.detect(image)
    assert len(whole) == 1
    crops = Crops(faces=np.array([[360, 20, 520, 190]]), moved=np.zeros((0, 4), int))
    cropped = detector.detect_crops(image, crops)
    assert len(cropped) == 1
    assert np.abs(cropped.xyxy[0] - whole.xyxy[0]).max() < 4  # in frame pixels, not the crop's
    assert np.abs(cropped.data["landmarks"][0] - whole.data["landmarks"][0]).max() < 4
    only_moved = Crops(faces=np.zeros((0, 4), int), moved=np.array([[360, 20, 520, 190]]))
    assert len(detector.detect_crops(image, only_moved)) == 1
    nowhere = Crops(faces=np.zeros((0, 4), int), moved=np.array([[0, 200, 200, 360]]))
    assert len(detector.detect_crops(image, nowhere)) == 0


def test_what_moved_is_known_on_whole_frame_passes_too() -> None:
    """The backfill of a face first seen by a detection asks whether anything moved where
    it is (streamer/pipeline.py _between): known on whole-frame passes as on crop ones."""
    planner = CropPlanner(full_every=2)
    assert planner.plan(street()) is None and planner.moved is None  # nothing before it: not known
    planner.plan(street())
    moving = street()
    moving[100:160, 300:340] = 255
    assert planner.plan(moving) is None  # every second detection is a whole-frame pass
    assert planner.moved is not None and inside(np.array([300, 100, 340, 160]), planner.moved)
    planner.plan(moving)
    assert planner.moved is not None and len(planner.moved) == 0  # nothing moved since
    assert CropPlanner(full_every=1).moved is None
