"""The reference faces (several detectors) and the pixel measure behind the coverage
benchmark and ``camstream eval``."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import read_image

from streamer.anonymizers import Shape, SolidAnonymizer
from streamer.evaluation.evaluate import evaluate
from streamer.evaluation.reference import ReferenceFinder, covered_fraction
from tracking.tracker import Region


def test_covered_fraction_counts_replaced_pixels_only() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(60, 200, (100, 100, 3), dtype=np.uint8)
    box = np.array([20, 20, 60, 60], np.float32)
    half = image.copy()
    half[20:40, 20:60] = 0  # the top half of the box is black
    assert covered_fraction(image, image, box) == 0.0
    assert abs(covered_fraction(image, half, box) - 0.5) < 1e-6
    noisy = np.clip(image.astype(int) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)
    assert covered_fraction(image, noisy, box) == 0.0  # codec noise is not a cover


def test_reference_faces_agree_and_eval_counts_exposed_faces(data: Path, tmp_path: Path) -> None:
    image = read_image(data / "grace_hopper_512x512.jpg")
    (face,) = ReferenceFinder()(image)
    assert len(face.detectors) >= 2 and face.size > 100
    cx, cy = (face.inner[:2] + face.inner[2:]) / 2
    assert face.box[0] < cx < face.box[2] and face.box[1] < cy < face.box[3]
    solid = SolidAnonymizer(Shape(margin=0.3)).anonymize(image.copy(), [Region(box=face.box)])
    off = SolidAnonymizer(Shape(margin=0.3)).anonymize(image.copy(), [Region(box=face.box + 120)])  # beside the face
    paths = {}
    for name, img in {"solid": solid, "beside": off}.items():
        paths[name] = str(tmp_path / f"{name}.png")
        cv2.imwrite(paths[name], img[:, :, ::-1])
    ev = evaluate(str(data / "grace_hopper_512x512.jpg"), paths, reid_every=0, reference_every=1)
    p = {r.name: r.privacy for r in ev.results}
    assert (p["solid"].reference_faces, p["solid"].reference_exposed) == (1, 0)
    assert (p["beside"].reference_exposed, p["beside"].reference_bare) == (1, 1)
    assert "libfacedetection" in p["solid"].reference_detectors


def test_rotated_copies_find_a_small_face_tilted_60_degrees(data: Path) -> None:
    from hard_clips import backgrounds, paste, sources

    from streamer.evaluation.faces import same_place
    from tracking.detectors import LibFaceDetector, RotatedDetector

    (street,) = backgrounds(data)
    grace = sources(data)[0]
    detector = RotatedDetector(LibFaceDetector(threshold=0.2))
    for dx in (-120, 0, 120):
        image = street.copy()
        truth = paste(image, grace, (320 + dx, 240), 24, -60)
        assert same_place(truth.box, detector.detect(image).xyxy), dx


def test_turned_back_boxes_land_on_the_original_frame() -> None:
    import supervision as sv

    from tracking.detectors import _turned_back

    m = cv2.getRotationMatrix2D((50, 50), 90, 1.0)  # a 100x100 frame turned a quarter
    box = np.array([[10, 20, 30, 40]], np.float32)
    det = sv.Detections(xyxy=box, confidence=np.array([0.9], np.float32), class_id=np.zeros(1, int))
    corners = np.array([[10, 20], [30, 40]], np.float32) @ m[:, :2].T + m[:, 2]
    turned = sv.Detections(xyxy=np.concatenate([corners.min(0), corners.max(0)])[None].astype(np.float32),
                           confidence=det.confidence, class_id=det.class_id)
    back = _turned_back(turned, cv2.invertAffineTransform(m), 100, 100)
    assert np.allclose(back.xyxy, box, atol=1e-3)
    outside = sv.Detections(xyxy=np.array([[-40, -40, 60, 60]], np.float32), confidence=det.confidence, class_id=det.class_id)
    assert len(_turned_back(outside, np.eye(2, 3), 100, 100)) == 0  # reaches into the padding: dropped


@pytest.mark.full  # 14 s; the turned copies: test_rotated_copies_find_a_small_face_tilted_60_degrees
def test_rotated_copies_add_no_frame_sized_faces(data: Path) -> None:
    """The black corners of a turned frame looked like a face the size of the frame."""
    from conftest import read_frames

    from tracking.detectors import LibFaceDetector, RotatedDetector

    frames = read_frames(data / "vtest.avi", 541)
    detector = RotatedDetector(LibFaceDetector(threshold=0.2))
    for i in (20, 180, 540):  # frames where turned copies found half-frame "faces" at 0.22-0.3
        boxes = detector.detect(frames[i]).xyxy
        h, w = frames[i].shape[:2]
        assert len(boxes) and ((boxes[:, 2] - boxes[:, 0]) < w / 4).all() and ((boxes[:, 3] - boxes[:, 1]) < h / 4).all(), i
