"""Large frames and moving cameras: native-scale tiles, camera-motion compensation, and
covers no larger than privacy needs (tracking/detectors.py, tracking/motion.py, the pipeline)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from hard_clips import Clip, sources
from moving_clips import camera, film, handheld, mosaic, pan, paste_world, static_8k
from test_hard_clips import run_default

from streamer.anonymizers import Shape, SolidAnonymizer
from streamer.config import Config
from streamer.evaluation.reference import EXPOSED, covered_fraction
from streamer.report import RunReport
from tracking.detectors import TILE_SCALE, LibFaceDetector, Part, tile_grid
from tracking.motion import STILL, MotionEstimator, compose, estimate
from tracking.roi import Crops
from tracking.tracker import CoverageMemory, Region


def _exposed(clip: Clip, out: list[np.ndarray], smallest: float = 16) -> list[tuple[int, int, float]]:
    """(frame, face size, covered fraction) of every truth face of ``smallest`` px or more left exposed."""
    return [
        (i, round(float(max(t.box[2] - t.box[0], t.box[3] - t.box[1]))), round(f, 2))
        for i, (orig, o, truth) in enumerate(zip(clip.frames, out, clip.truth, strict=True))
        for t in truth
        if max(t.box[2] - t.box[0], t.box[3] - t.box[1]) >= smallest and (f := covered_fraction(orig, o, t.inner)) < EXPOSED
    ]


SMALL_COVERS = 2.5  # covers at most 2.5 times what the true faces' own covers take (measured 2.33; before: 2.6-3.4 times)


def _true_cover_percent(clip: Clip) -> float:
    """The mean share of the frame that covering exactly the true faces takes (the
    default shape and margin): what a perfect detector and tracker would cover."""
    ano = Config().anonymize
    solid = SolidAnonymizer(Shape(kind=ano.shape, margin=ano.margin))
    shares = [
        float((solid.anonymize(np.full_like(f, 255), [Region(box=np.asarray(t.box, np.float32)) for t in truth])[..., 0] == 0).mean())
        if truth else 0.0
        for f, truth in zip(clip.frames, clip.truth, strict=True)
    ]
    return 100 * float(np.mean(shares))


# -- tiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("box,tile,overlap", [((0, 0, 3840, 2160), 960, 96), ((0, 0, 6000, 4000), 960, 150),
                                              ((100, 50, 1100, 700), 960, 64), ((0, 0, 7680, 4320), 960, 192)])
def test_tiles_cover_the_box_and_overlap_enough(box: tuple[int, int, int, int], tile: int, overlap: int) -> None:
    tiles = tile_grid(box, tile, overlap)
    x1, y1, x2, y2 = box
    covered = np.zeros((y2 - y1, x2 - x1), bool)
    for tx1, ty1, tx2, ty2 in tiles:
        assert tx2 - tx1 <= tile + 1 and ty2 - ty1 <= tile + 1
        assert x1 <= tx1 < tx2 <= x2 and y1 <= ty1 < ty2 <= y2
        covered[ty1 - y1:ty2 - y1, tx1 - x1:tx2 - x1] = True
    assert covered.all()
    # Any object of ``overlap`` px lies whole in one tile: neighbouring tiles share at least that.
    xs = sorted({(t[0], t[2]) for t in tiles})
    for (_a1, a2), (b1, _b2) in zip(xs, xs[1:], strict=False):
        assert a2 - b1 >= overlap - 1


def test_a_large_frame_is_looked_at_in_native_tiles_plus_an_overview() -> None:
    detector = LibFaceDetector(threshold=0.3)
    parts = detector.parts((2160, 3840, 3))
    tiles = [p for p in parts if p.scale == TILE_SCALE]
    assert len(tiles) >= 8 and all(max(p.box[2] - p.box[0], p.box[3] - p.box[1]) * TILE_SCALE <= 961 for p in tiles)
    assert Part((0, 0, 3840, 2160), 0.25) in parts  # the overview, for faces larger than a tile's overlap
    small = detector.parts((576, 768, 3))  # under 960 px: the frame at 1x and upscaled (as before)
    assert [p.scale for p in small] == [1.0, 1.25]


@pytest.fixture(scope="module")
def faces_2k(data: Path) -> Clip:
    """A still 1920x1080 street with faces of 14-28 px: at 960 px (the detector's input) they were 7-14 px."""
    grace, messi = sources(data)
    world, own = mosaic(data, "vtest.avi", 1920, 1080, 2.5)
    faces = [paste_world(world, src, (200 + 260 * k, 300 + 400 * (k % 2)), s, 0.0, k % 2)
             for k, (src, s) in enumerate([(grace, 14), (messi, 16), (grace, 18), (messi, 20), (grace, 24), (messi, 28)])]
    return film("faces-2k", world, own + faces, (1920, 1080), [camera(0, 0)] * 9, seed=7)


def _missed(clip: Clip, found) -> list[list[float]]:  # noqa: ANN001 - sv.Detections
    """The pasted faces of 16 px or more of frame 0 that no box in ``found`` holds the centre of."""
    missed = []
    for t in clip.truth[0]:
        if t.face < 0 or t.box[2] - t.box[0] < 16:
            continue
        centre = (t.box[:2] + t.box[2:]) / 2
        if not any((b[:2] <= centre).all() and (centre <= b[2:]).all() for b in found.xyxy):
            missed.append(t.box.round().tolist())
    return missed


def test_small_faces_in_a_large_frame_are_found_at_native_scale(faces_2k: Clip) -> None:
    assert _missed(faces_2k, LibFaceDetector(threshold=0.2).detect(faces_2k.frames[0])) == []


def test_a_20px_face_in_a_4k_tile_is_found(data: Path) -> None:
    """The 8K frame of the benchmark at half size: its 20 px face was missed by the tile that
    held it at 1x (found in a 320 or 640 px crop of it at 1x: a face that small hangs on
    where the anchor grid falls), and bare on every frame. Tiles are looked at 1.3x."""
    clip = static_8k(data, 0.5, frames=1)
    assert _missed(clip, LibFaceDetector(threshold=0.2).detect(clip.frames[0])) == []


def test_crops_between_full_passes_are_cut_from_the_native_frame(faces_2k: Clip) -> None:
    """Frame 0 is a whole-frame pass; the detections after look at crops around the faces it
    found: on a large frame those were scaled down with it, and the small faces went bare."""
    detector = LibFaceDetector(threshold=0.2)
    whole = detector.detect(faces_2k.frames[0])
    crops = Crops(np.round(whole.xyxy + np.array([-40, -40, 40, 40])).astype(int).clip(0), np.zeros((0, 4), int))
    assert all(p.scale == 1.0 for p in detector.parts(faces_2k.frames[0].shape, crops))
    assert _missed(faces_2k, detector.detect_crops(faces_2k.frames[0], crops)) == []


def test_a_still_large_frame_keeps_its_small_faces_covered_on_every_frame(faces_2k: Clip) -> None:
    report = RunReport(input="memory")
    out = run_default(faces_2k.frames, report=report)
    assert report.detections_on_crops > 0  # the frames after the first: crops, at native scale
    assert _exposed(faces_2k, out) == []
    assert report.frame_covered["max_percent"] < 8  # the faces and the vtest.avi walkers of the background


# -- camera motion -------------------------------------------------------------------


@pytest.fixture(scope="module")
def street(data: Path) -> np.ndarray:
    world, _ = mosaic(data, "vtest.avi", 1600, 1100, 2.0)
    return world


@pytest.mark.parametrize("dx,dy,zoom,roll", [(24, -9, 1.0, 0.0), (-3, 2, 1.08, 0.0), (5, 4, 1.0, 6.0), (60, 0, 0.95, -3.0)])
def test_the_camera_motion_between_two_frames_is_measured(street: np.ndarray, dx: float, dy: float, zoom: float, roll: float) -> None:
    a = cv2.warpAffine(street, camera(800, 550, 1.0, 0.0, (480, 270)).astype(np.float32), (960, 540))
    b = cv2.warpAffine(street, camera(800 - dx, 550 - dy, zoom, roll, (480, 270)).astype(np.float32), (960, 540))
    estimator = MotionEstimator()
    assert not estimator(a).known  # nothing before the first frame
    m = estimator(b)
    assert m.known
    # Points of frame a land where the scene at them is in frame b.
    truth = camera(800 - dx, 550 - dy, zoom, roll, (480, 270)) @ np.vstack([cv2.invertAffineTransform(camera(800, 550, 1.0, 0.0, (480, 270))), [0, 0, 1]])
    grid = np.array([[x, y] for x in (100, 480, 860) for y in (80, 270, 460)], np.float64)
    err = np.linalg.norm(m.points(grid) - (grid @ truth[:, :2].T + truth[:, 2]), axis=1)
    assert err.max() < 1.5, err
    assert abs(m.scale - zoom) < 0.01


def test_a_still_camera_is_still_and_a_cut_is_unknown(street: np.ndarray, data: Path) -> None:
    a = street[:540, :960]
    noisy = np.clip(a.astype(np.int16) + np.random.default_rng(0).normal(0, 2, a.shape), 0, 255).astype(np.uint8)
    grey = MotionEstimator().thumb
    ga, sa = grey(a)
    assert estimate(ga, grey(noisy)[0], sa).still  # sensor noise is not motion: today's exact behaviour on fixed cameras
    other = cv2.resize(sources(data)[0].patch, (960, 540))
    assert not estimate(ga, grey(other)[0], sa).known


def test_motions_compose_and_invert() -> None:
    a = type(STILL)(camera(0, 0, 1.0, 0.0, (10, -4)))
    b = type(STILL)(camera(0, 0, 1.1, 3.0))
    both = compose([a, b])
    p = np.array([[100.0, 50.0]])
    assert np.allclose(both.points(p), b.points(a.points(p)))
    assert np.allclose(both.inverse().points(both.points(p)), p)
    box = np.array([10, 10, 50, 30], np.float32)
    assert np.allclose(a.boxes(box), box + np.array([10, -4, 10, -4]))


def test_on_a_shaking_camera_faces_stay_covered_and_covers_stay_small(data: Path) -> None:
    """A handheld shake with +-30 deg roll and motion blur (960x540 at half size): no face
    of 16 px or more exposed, and covers at most SMALL_COVERS times what covering exactly
    the true faces takes (before camera motion was measured: 2.6-3.4 times, whole frames
    at the whip pans)."""
    clip = handheld(data, 0.5, frames=24)
    report = RunReport(input="memory")
    out = run_default(clip.frames, report=report)
    assert _exposed(clip, out) == []
    needed = _true_cover_percent(clip)
    assert report.frame_covered["mean_percent"] < SMALL_COVERS * needed, (report.frame_covered, needed)


def test_faces_a_pan_brings_in_are_found_at_the_edge(data: Path) -> None:
    """A 1080p pan (the 4K pan at half size): the strip the pan reveals, and a band a face
    wide beside it, is looked at between whole-frame passes, and the last frame is
    detected. Faces under 30 px are not asserted: some of this world's 17-29 px faces are
    found by the detector at no scale (1x, 1.3x, 1.6x tried), benchmarks/coverage.py
    --moving counts them. The world's blurred crowd (messi5.jpg) is real heads, covered on
    every frame, so the share covered is bounded only against whole-frame blackouts (93 %
    of a frame before)."""
    clip = pan(data, 0.5, frames=20)
    report = RunReport(input="memory")
    out = run_default(clip.frames, report=report)
    assert _exposed(clip, out, smallest=30) == []
    assert report.frame_covered["max_percent"] < 60, report.frame_covered


# -- covers no larger than needed ----------------------------------------------------


def test_a_weak_one_off_detection_looked_for_six_times_and_not_found_is_no_longer_held() -> None:
    memory = CoverageMemory(hold_frames=12)
    ghost = Region(box=np.array([100, 100, 120, 124], np.float32), confidence=0.3)
    memory.update([ghost], 0)
    assert len(memory.update([], 2, looked=lambda box: False)) == 1  # not looked at (a crop elsewhere): held
    for frame in (3, 4, 5, 6, 7):
        assert len(memory.update([], frame, looked=lambda box: True)) == 1  # misses (blurred frames) are bridged ...
    assert memory.update([], 8, looked=lambda box: True) == []  # ... weak, once, six misses: a ghost, dropped
    for first in (Region(box=ghost.box.copy(), confidence=0.9), None):  # a sure one-off, or a face found twice
        memory = CoverageMemory(hold_frames=12)
        memory.update([first or Region(box=ghost.box.copy(), confidence=0.3)], 0)
        if first is None:
            memory.update([Region(box=ghost.box.copy(), confidence=0.3)], 2)
        for frame in range(4, 12):
            assert len(memory.update([], frame, looked=lambda box: True)) == 1  # held its hold_frames


def test_a_face_first_seen_where_nothing_moved_is_backfilled_where_it_is() -> None:
    """A face the run after found where nothing moved since the run before did not walk in
    (a weak face of a crowd, missed once): its frames before are covered around where it is,
    not by the walk-in growth (on the 8K frame of the benchmark a crowd's backfills were
    4x the face: 38.6 % of the frame covered at most, 20.9 % since)."""
    from streamer.pipeline import _between

    face = Region(box=np.array([100, 100, 140, 140], np.float32), state="detected")

    def widest(moved):  # noqa: ANN001, ANN202
        covers = _between([], [face], 3, 0.1, 0.6, moved=moved)
        return max(float(r.box[2] - r.box[0]) for frame in covers for r in frame)

    assert widest(np.zeros((0, 4), np.float32)) <= 40 * (1 + 2 * 0.3) + 1e-3  # 3 frames of held growth at most
    assert widest(None) > 40 * 3  # not known: it may have walked in
    assert widest(np.array([[90, 90, 200, 200]], np.float32)) > 40 * 3  # something moved there
