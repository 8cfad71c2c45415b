"""The run: Source -> Detect -> Track -> Anonymize -> Sink, in three threads.

A reader thread decodes, the main thread detects, tracks and anonymizes, a writer
thread encodes; bounded queues between them. FFmpeg, OpenCV and the detectors release
the GIL, so the stages overlap on a multi-core machine.

Fail-closed: a frame is handed to the sink only after every region that was detected,
is still predicted by the tracker (``held``) or will be detected at the next detection
run (``backfilled``) has been replaced. If the anonymizer fails, the fallback covers
the regions; if detection fails, the whole frame is covered. An original face is never
written.
"""

from __future__ import annotations

import functools
import logging
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field, replace

import cv2
import numpy as np
import supervision as sv

from tracking.detectors import BIG_CONFIDENCE, DOUBTFUL, CenterFaceCrops, Detector, merge_parts
from tracking.motion import STILL, UNKNOWN, Motion, MotionEstimator
from tracking.roi import MAX_CROPS, CropPlanner, Crops
from tracking.tracker import CoverageMemory, FaceTracker, Region, enlarge, match_regions, regrow, shifted

from .anonymizers import Anonymizer, Shape, cover_frame
from .errors import CamstreamError, InputError, Interrupted, StreamError
from .frame import Frame
from .report import RunReport, StageTimer
from .sinks import Sink
from .sources import Source

log = logging.getLogger(__name__)

_END = object()
NEW_FACE_GROWTH = 0.5  # per frame and side, in face sizes: a new face's backfill (see _between)
MOVING_NEW_FACE = 0.5  # of NEW_FACE_GROWTH where the camera moved (measured) between the runs
COVER_GRID = 8  # px: the cell of the grid the share of the frame covered is measured on
AGREE = 0.9  # share of a predicted box (its centre too) inside an interpolated cover for the two to agree (_between)
STILL_FRAMES = 4  # frames a face not found again is also covered where it was (a detection gap; then no ghost)


@dataclass
class _Failure:
    exc: BaseException


class _Joined:
    """The parts of one detection (tracking/detectors.py ``Part``: tiles, crops, scales),
    each its own job on the detector workers, as one future: done when all are, the
    result merged in the parts' order (never in the order they finished)."""

    def __init__(self, futures: list[Future], merge: Callable[[list[sv.Detections]], sv.Detections]) -> None:
        self.futures, self._merge = futures, merge

    def done(self) -> bool:
        return all(f.done() for f in self.futures)

    def result(self) -> sv.Detections:
        return self._merge([f.result() for f in self.futures])


@dataclass
class _Group:
    """A frame the detector runs on, and the frames after it that it skips."""

    frame: Frame
    future: Future | _Joined
    skipped: list[Frame] = field(default_factory=list)
    regions: list[Region] | None = None  # the tracker's regions for ``frame``
    failed: bool = False
    cut: bool = False  # ``frame`` starts a new shot: nothing before it is carried over
    faces: Future | _Joined | None = None  # the second job: crops around the faces the group before left tracked
    wants_faces: bool = False  # a detection on crops whose second job waits for the group before
    next: _Group | None = None
    looked: list[np.ndarray] | None = None  # the crops both jobs looked at (None: the whole frame)
    moved: np.ndarray | None = None  # what moved since the detection before (CropPlanner.moved; None: not known)

    def looked_at(self, box: np.ndarray) -> bool:
        """Whether this detection looked where ``box`` is (most of it inside one crop)."""
        return self.looked is None or any(_inside(box, c) >= 0.9 for crops in self.looked for c in crops)

    def done(self) -> bool:
        return not self.wants_faces and self.future.done() and (self.faces is None or self.faces.done())


def _dedupe(regions: list[Region]) -> list[Region]:
    """Drop near-duplicates (tracker and memory often hold the same face): a region whose
    box lies inside a region's box of at most twice its area, so its cover is nearly the same."""
    if len(regions) < 2:
        return regions

    boxes = np.array([r.box for r in regions], np.float64).reshape(-1, 4)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kinds = np.array([r.kind for r in regions])
    # absorbs[i, j]: region j's box holds region i's and is at most twice its area, same kind.
    absorbs = (kinds[:, None] == kinds[None, :]) & (areas[None, :] <= 2 * areas[:, None]) \
        & (boxes[None, :, :2] <= boxes[:, None, :2]).all(2) & (boxes[None, :, 2:] >= boxes[:, None, 2:]).all(2)
    np.fill_diagonal(absorbs, False)
    kept = np.zeros(len(regions), bool)
    keep: list[int] = []
    for i in np.argsort(-areas, kind="stable"):  # largest first; only a kept region absorbs
        if not (absorbs[i] & kept).any():
            kept[i] = True
            keep.append(int(i))
    return [regions[i] for i in keep]


def _centre(box: np.ndarray) -> np.ndarray:
    return (box[:2] + box[2:]) / 2


def _moved(r: Region, frames: int) -> np.ndarray:
    """``r``'s box ``frames`` frames later (earlier when negative), at its measured speed."""
    return shifted(r.box, r.velocity, frames)


def _inside(box: np.ndarray, cover: np.ndarray) -> float:
    """Fraction of ``box``'s area that lies inside ``cover``."""
    w = max(0.0, float(min(box[2], cover[2]) - max(box[0], cover[0])))
    h = max(0.0, float(min(box[3], cover[3]) - max(box[1], cover[1])))
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    return w * h / area if area > 0 else 1.0


def _disagree(predicted: np.ndarray, cover: np.ndarray) -> bool:
    """Whether a face predicted at ``predicted`` is not covered by ``cover``: its centre
    outside, or less than AGREE of it inside."""
    cx, cy = _centre(predicted)
    return not (cover[0] <= cx <= cover[2] and cover[1] <= cy <= cover[3]) or _inside(predicted, cover) < AGREE


def _confirmed(detections: sv.Detections, known: list[np.ndarray]) -> sv.Detections:
    """``detections`` less the doubtful ones (tracking/detectors.py: large for the network
    and weak) that continue no face followed lately and once sure: near one of the
    ``known`` boxes (its
    centre inside the known box grown by half) a weak box is the same face, blurred or
    turned; anywhere else it was a soft crowd or a shirt, covered 100-300 px wide."""
    doubtful = detections.data.get(DOUBTFUL) if len(detections) else None
    if doubtful is None:
        return detections
    doubtful = np.nan_to_num(np.asarray(doubtful, np.float32)) > 0.5
    if not doubtful.any():
        return detections
    grown = [enlarge(k, 0.5) for k in known]
    centres = (detections.xyxy[:, :2] + detections.xyxy[:, 2:]) / 2
    near = np.array([any(g[0] <= cx <= g[2] and g[1] <= cy <= g[3] for g in grown) for cx, cy in centres], bool)
    return detections[~doubtful | near]


def _pad(box: np.ndarray, px: float) -> np.ndarray:
    return box + np.array([-px, -px, px, px], np.float32)


def in_frame(regions: list[Region], width: int, height: int, keep: float = 0.25) -> list[Region]:
    """Drop held and backfilled regions with less than ``keep`` of their box inside the
    frame: a face that walked out needs no cover, and its extrapolated box, clipped to
    the border, was a ghost block. Detected regions always stay."""
    frame = np.array([0, 0, width, height], np.float32)
    return [r for r in regions if r.state == "detected" or _inside(r.box, frame) >= keep]


def _between(before: list[Region], after: list[Region] | None, n: int, growth: float,
             max_growth: float = 0.6, camera: list[Motion] | None = None, span: Motion = STILL,
             moved: np.ndarray | None = None) -> list[list[Region]]:
    """Regions for the ``n`` frames between two detection runs (``after`` None: a scene
    cut or the end follows, so only ``before`` says anything).

    ``camera[k-1]``: the camera's motion from the run before to the k-th frame between,
    ``span``: to the run after (tracking/motion.py). Every box from the run before is moved
    with the scene to the frame it covers, every box from the run after moved back; the
    speeds below are the faces' own, the camera's taken out.

    A face found by both runs is covered at its linearly interpolated box, grown by
    ``growth`` and by half its measured speed times the distance to the nearer run (a
    face that turns or stops leaves the straight line by about that much). Where the
    two runs disagree (the box held forward from before at its own speed, or the box
    backfilled from after, is not inside the interpolated cover: a wrong pairing of
    crossing faces, a sudden turn), those boxes are covered too: a skipped frame is
    never covered less than either neighbouring detection implies. A face found by one
    run only is covered from that side at its speed, grown per frame of distance up to
    ``max_growth``; a face first seen by the run after where nothing moved since the run
    before (``moved``: boxes of what moved, in the run after's frame, the camera's motion
    taken out; None: not known) did not walk in: it was there, missed (a weak face in a
    crowd, a head turned back), and is covered where it is, grown as a held face.
    """
    after = [r for r in (after or []) if r.state == "detected"]
    camera = camera or [STILL] * n
    # The run after's boxes in the run before's frame, to pair them where the camera left them.
    back = span.inverse()
    after_here = [replace(a, box=back.boxes(a.box)) for a in after] if not span.still else after
    # Only faces the run before detected are paired: a held box is grown by its frames
    # unseen, and its gate (face widths per frame) grew with it until it took a face
    # across the frame, interpolated into a cover as wide as the path between them.
    seen = [i for i, r in enumerate(before) if r.state == "detected"]
    pairs = {seen[i]: j for i, j in match_regions([before[i] for i in seen], after_here, n + 1).items()}
    matched_after = set(pairs.values())
    out: list[list[Region]] = []
    for k in range(1, n + 1):
        alpha = k / (n + 1)
        to_k = camera[k - 1]  # run before -> this frame
        from_after = back.then(to_k)  # run after -> this frame
        cover: list[Region] = []
        for i, r in enumerate(before):
            j = pairs.get(i)
            grow = min(r.grown + growth * k, max_growth)  # a held face's growth goes on, it does not start again
            held = Region(box=to_k.boxes(regrow(_moved(r, k), r.grown, grow)), track_id=r.track_id, kind=r.kind,
                          state="held", confidence=r.confidence, velocity=r.velocity, grown=grow)
            if j is None:
                cover.append(held)
                # Not found again (or nothing after: the end, a cut): the speed may be a wrong
                # pairing in a crowd, or the face stopped. Where it was is covered too: a
                # still face in messi5.jpg was bare on the last frame, its cover thrown 25 px off.
                still = Region(box=to_k.boxes(regrow(r.box, r.grown, grow)), track_id=r.track_id, kind=r.kind,
                               state="held", confidence=r.confidence, grown=grow)
                if k <= STILL_FRAMES and _inside(still.box, held.box) < 0.9:
                    cover.append(still)
                continue
            a = after[j]
            start, end = to_k.boxes(r.box), from_after.boxes(a.box)
            speed = float(np.hypot(*(_centre(after_here[j].box) - _centre(r.box)))) / (n + 1)
            box = _pad(enlarge((1 - alpha) * start + alpha * end, growth), 0.5 * speed * min(k, n + 1 - k))
            cover.append(Region(box=box, track_id=r.track_id, kind=r.kind, state="interpolated", confidence=r.confidence))
            backfilled = Region(box=from_after.boxes(enlarge(_moved(a, k - n - 1), min(growth * (n + 1 - k), max_growth))),
                                track_id=r.track_id, kind=a.kind, state="backfilled", confidence=a.confidence)
            # Whether the runs disagree is judged on the predicted boxes before their growth:
            # grown, a prediction that agrees was never inside the cover and was always added
            # (three covers around every face between detections on a handheld camera).
            predicted = (to_k.boxes(_moved(r, k)), from_after.boxes(_moved(a, k - n - 1)))
            cover += [x for x, p in zip((held, backfilled), predicted, strict=True) if _disagree(p, box)]
        for j, r in enumerate(after):
            if j not in matched_after:
                # A face first seen by the run after, at a speed nobody measured yet: it may
                # have walked in fast (half its size a frame: a close walker). Its frames
                # before are covered that far around, for at most ``detect_every`` frames.
                # On a moving camera (measured) a face appears mostly because the camera
                # turned to it, and the camera's motion is taken out: half that growth.
                new = NEW_FACE_GROWTH if span.still or not span.known else NEW_FACE_GROWTH * MOVING_NEW_FACE
                came = moved is None or any(_inside(r.box, m) > 0 for m in moved)
                per_frame, most = (growth, max_growth) if r.velocity is not None or not came else (new, 3 * new)
                cover.append(Region(box=from_after.boxes(enlarge(_moved(r, k - n - 1), min(per_frame * (n + 1 - k), most))),
                                    track_id=r.track_id, kind=r.kind, state="backfilled"))
        out.append(cover)
    return out


def _merge(dets: sv.Detections, more: sv.Detections) -> sv.Detections:
    """Two detections of one frame as one (keys the other lacks filled with NaN)."""
    if not len(more):
        return dets
    if not len(dets):
        return more
    for key, value in dets.data.items():  # e.g. persons have no face landmarks
        if key not in more.data:
            more.data[key] = np.full((len(more), *value.shape[1:]), np.nan, value.dtype)
    for key in list(more.data):
        if key not in dets.data:
            del more.data[key]
    return sv.Detections.merge([dets, more])


def _detect_whole(detector: Detector, frame: Frame) -> sv.Detections:
    """``detector`` on the whole frame; a detector that needs to know which frame it is given
    (tracking/regions.py: boxes from a file) has ``detect_frame(frame)``."""
    detect_frame = getattr(detector, "detect_frame", None)
    return detect_frame(frame) if detect_frame is not None else detector.detect(frame.image)


@contextmanager
def _signal_handler(handler: Callable[[int, object], None]) -> Iterator[None]:
    """``handler`` for SIGINT and SIGTERM inside the block; the previous handlers after it."""
    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


@dataclass
class Pipeline:
    """Everything one run needs; :meth:`run` drives it."""

    source: Source
    sink: Sink
    detector: Detector
    tracker: FaceTracker
    anonymizer: Anonymizer
    fallback: Anonymizer
    detect_every: int = 1
    scene_cut: float = 0.25
    hold_growth: float = 0.1
    report: RunReport = field(default_factory=lambda: RunReport(input=""))
    on_frame: Callable[[int], None] | None = None  # progress callback (frames written)
    extra_detectors: list[Detector] = field(default_factory=list)
    queue_size: int = 16
    detect_workers: int = 2
    preview: Callable[[np.ndarray, np.ndarray], None] | None = None  # on-screen only
    stills: bool = False  # unrelated images (a folder of photos): every frame is a scene cut
    full_every: int = 1  # every n-th detection on the whole frame, the others on crops (tracking/roi.py)
    # Regions that must be covered on their frame whatever the detector and the tracker say
    # (`--regions FILE`, tracking/regions.py): added in _anonymize, so every frame gets them,
    # detected or between detections.
    given_regions: Callable[[Frame], list[Region]] | None = None
    cover_shape: Shape | None = None  # the covers' shape, for the share of the frame covered (default: the fallback's)
    second_look: CenterFaceCrops | None = None  # a second detector on the crops around tracked faces (detection.second_look)

    def __post_init__(self) -> None:
        self.timers = {name: StageTimer() for name in ("decode", "motion", "detect", "track", "anonymize", "encode")}
        self._stop = threading.Event()
        self._interrupted = 0  # the signal that asked the run to stop (0: none)
        self._lock = threading.Lock()
        self.memory = CoverageMemory(self.tracker.hold_frames, self.hold_growth, self.tracker.hold_max_growth)
        self.max_growth = self.tracker.hold_max_growth
        self._thumb: np.ndarray | None = None
        self._size: tuple[int, ...] | None = None
        self._covered: dict[int, list[int]] = {}  # track id (-1: none confirmed) -> [first, last, frames covered]
        # Crops only where the detector can look at them (detect_crops); others always see the whole frame.
        every = self.full_every if hasattr(self.detector, "detect_crops") else 1
        self.planner = CropPlanner(every)
        self._motions: dict[int, Motion] = {}  # frame index -> the camera's motion from the frame before (main thread)
        self._planned: int | None = None  # the frame the planner saw last
        self._tracked: int | None = None  # the frame the tracker saw last
        self._cover_shares: list[float] = []  # per frame written, the share of it covered
        if self.cover_shape is None:
            self.cover_shape = getattr(self.fallback, "shape", None)

    # -- stages ---------------------------------------------------------------------

    def _read(self, out: queue.Queue) -> None:
        estimator = None if self.stills else MotionEstimator()
        try:
            it = iter(self.source)
            while not self._stop.is_set():
                t = time.perf_counter()
                try:
                    frame = next(it)
                except StopIteration:
                    break
                self.timers["decode"].add(time.perf_counter() - t)
                if estimator is not None:  # here, beside decoding: OpenCV releases the GIL, the main thread goes on
                    t = time.perf_counter()
                    frame.motion = estimator(frame.image)
                    self.timers["motion"].add(time.perf_counter() - t)
                self._put(out, frame)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            self._put(out, _Failure(exc))
            return
        self._put(out, _END)

    def _write(self, inp: queue.Queue, errors: list[BaseException]) -> None:
        while True:
            item = inp.get()
            if item is _END:
                return
            if errors:
                continue  # drain so the producer never blocks
            t = time.perf_counter()
            try:
                self.sink.write(item)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                self._stop.set()
                continue
            self.timers["encode"].add(time.perf_counter() - t)
            self.report.frames_out += 1
            if self.on_frame:
                self.on_frame(self.report.frames_out)

    def _put(self, q: queue.Queue, item: object, always: bool = False) -> None:
        """Put, but give up once the run is stopping (nobody may read any more), unless
        ``always`` (the writer's end marker: the writer keeps draining until it sees it)."""
        while True:
            try:
                q.put(item, timeout=0.1)
                return
            except queue.Full:
                if self._stop.is_set() and not always:
                    return

    @contextmanager
    def _signals_stop(self) -> Iterator[None]:
        """SIGINT/SIGTERM ask the run to stop: the frame in hand is finished and written,
        then :meth:`run` raises :class:`Interrupted` and its ``finally`` finalizes the
        output (playable, named ``.partial``).

        The handler only sets flags; it never raises into whatever the main thread is
        doing: raised inside an anonymizer call, the exception was taken for a failure
        of that frame (covered by the fallback) and the run went on to the end; raised
        between a lock's acquire and its ``with`` block, it leaves the lock held. An
        anonymizer's ``stop()`` (signal-safe: it sets a flag) ends a long render early;
        that frame gets the fallback, as for any failure. A second signal raises at once,
        for a run that does not stop."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: object) -> None:
            if self._interrupted:
                raise Interrupted(signum)
            self._interrupted = signum
            self._stop.set()
            stop = getattr(self.anonymizer, "stop", None)
            if callable(stop):
                stop()

        with _signal_handler(handler):
            yield

    def _is_scene_cut(self, image: np.ndarray, camera: Motion | None = None) -> bool:
        step = max(1, min(image.shape[0] // 72, image.shape[1] // 128))  # every step-th pixel: 3 % of the main thread's time before
        thumb = cv2.resize(image[::step, ::step], (32, 18), interpolation=cv2.INTER_AREA).astype(np.int16)
        previous, self._thumb = self._thumb, thumb
        size, self._size = self._size, image.shape[:2]
        if previous is None or size != self._size:  # a frame of another size is another shot
            return True
        if camera is not None and camera.known and not camera.still:
            return False  # the same scene, seen from a camera that moved (a pan's thumbnails differ as much as a cut's)
        return float(np.abs(thumb - previous).mean()) / 255.0 > self.scene_cut

    def _camera(self, start: int | None, end: int) -> Motion:
        """The camera's motion from frame ``start`` to frame ``end`` (later), composed of the
        frame-to-frame motions of the frames read between; unknown without a start."""
        if start is None:
            return UNKNOWN
        if start == end:
            return STILL
        out = STILL
        for index in range(start + 1, end + 1):
            m = self._motions.get(index)
            if m is not None:  # indices a source skipped (lost frames) have no frame, no motion
                out = out.then(m)
        return out

    def _face_job(self, group: _Group, before: _Group, pool) -> None:  # noqa: ANN001 - an Executor
        """Submit ``group``'s second job: crops around every face ``before`` (the detection
        just before it) left tracked, moved on at its speed. Submitted once ``before`` is
        tracked, so the crops are the same in every run whatever finished first, and a face
        that ``before`` found where nothing moves since is looked at again (hard clip pop-in).
        ``before`` failed: the whole frame. A group whose own detection saw the whole frame
        only gets the second look (``second_look``: CenterFace on those crops, for faces
        turning away)."""
        group.wants_faces = False
        whole = group.looked is None  # this group's own detection saw the whole frame
        boxes = np.zeros((0, 4), np.int32)
        if before.failed or before.regions is None:
            crops = None
        else:
            h, w = group.frame.image.shape[:2]
            gap = group.frame.index - before.frame.index
            camera = self._camera(before.frame.index, group.frame.index)
            boxes = CropPlanner.face_crops((camera.boxes(_moved(r, gap)) for r in before.regions), w, h, self.planner.pad)
            if not len(boxes):
                return
            crops = Crops(boxes, np.zeros((0, 4), np.int32)) if len(boxes) <= MAX_CROPS else None
        jobs: list[Future | _Joined] = []
        if not whole:
            if crops is None:
                group.looked = None
            else:
                group.looked.append(crops.faces)
            jobs.append(self._submit(pool, group.frame, crops, second=True))
        if self.second_look is not None and len(boxes):
            jobs.append(pool.submit(self._second_look, group.frame, boxes))
        if jobs:
            group.faces = jobs[0] if len(jobs) == 1 else _Joined(jobs, lambda found: functools.reduce(_merge, found))

    def _second_look(self, frame: Frame, boxes: np.ndarray) -> sv.Detections:
        t = time.perf_counter()
        try:
            return self.second_look.detect_crops(frame.image, boxes)
        finally:
            self._timed(t)

    def _submit(self, pool, frame: Frame, crops: Crops | None = None, second: bool = False) -> Future | _Joined:  # noqa: ANN001
        """One detection of ``frame`` (the whole frame, or ``crops``) on the detector workers.
        A detector that splits its work into parts (tiles of a large frame, crops, scales:
        ``parts``/``detect_part``) gets one job per part, so the workers share one frame's
        tiles. ``second``: a detection's second job (:meth:`_face_job`), the face detector only."""
        if not second:
            self.report.frames_detected += 1
            self.report.detections_on_crops += crops is not None
        plan = getattr(self.detector, "parts", None)
        if plan is None:
            return pool.submit(self._detect, frame, crops, second)
        futures = [pool.submit(self._detect_part, frame, part) for part in plan(frame.image.shape, crops)]
        extras = [] if second else [pool.submit(self._detect_extra, frame, d) for d in self.extra_detectors]

        def merge(results: list[sv.Detections]) -> sv.Detections:
            dets = merge_parts(results[:len(futures)])
            for more in results[len(futures):]:
                dets = _merge(dets, more)
            return dets

        return _Joined(futures + extras, merge)

    def _timed(self, t: float) -> None:
        with self._lock:
            self.timers["detect"].add(time.perf_counter() - t)

    def _detect_part(self, frame: Frame, part) -> sv.Detections:  # noqa: ANN001 - tracking.detectors.Part
        t = time.perf_counter()
        try:
            return self.detector.detect_part(frame.image, part)
        finally:
            self._timed(t)

    def _detect_extra(self, frame: Frame, detector: Detector) -> sv.Detections:
        t = time.perf_counter()
        try:
            return _detect_whole(detector, frame)
        finally:
            self._timed(t)

    def _detect(self, frame: Frame, crops: Crops | None = None, second: bool = False) -> sv.Detections:
        """Runs in a worker thread; detectors must be re-entrant (ours are: one buffer per call).
        ``second``: a detection's second job (:meth:`_face_job`), the face detector only."""
        t = time.perf_counter()
        try:
            dets = _detect_whole(self.detector, frame) if crops is None else self.detector.detect_crops(frame.image, crops)
            for extra in () if second else self.extra_detectors:
                dets = _merge(dets, _detect_whole(extra, frame))
            return dets
        finally:
            self._timed(t)

    def _measure_cover(self, regions: list[Region], width: int, height: int) -> None:
        """The share of the frame the regions' covers take (the price of privacy), on a grid
        of COVER_GRID px cells: the anonymizer's own shape around each box, overlaps once."""
        if not regions:
            self._cover_shares.append(0.0)
            return
        shape = self.cover_shape or Shape()
        gw, gh = -(-width // COVER_GRID), -(-height // COVER_GRID)
        grid = np.zeros((gh, gw), np.uint8)
        for r in regions:
            x1, y1, x2, y2 = (float(v) / COVER_GRID for v in shape.grown(r.box))
            if shape.kind == "box":
                cv2.rectangle(grid, (round(x1), round(y1)), (round(x2) - 1, round(y2) - 1), 1, -1)
            else:
                centre = (round((x1 + x2) * 8), round((y1 + y2) * 8))  # 16ths of a cell (shift 4)
                axes = (max(1, round((x2 - x1) * 8)), max(1, round((y2 - y1) * 8)))
                cv2.ellipse(grid, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_8, 4)
        self._cover_shares.append(float(grid.mean()))

    def _anonymize(self, frame: Frame, regions: list[Region]) -> Frame:
        t = time.perf_counter()
        if self.given_regions is not None:
            regions = regions + self.given_regions(frame)
        regions = _dedupe(regions)
        self.report.regions_covered += len(regions)
        for tid in {r.track_id for r in regions}:  # every frame a track is covered in, detected or not
            span = self._covered.setdefault(tid, [frame.index, frame.index, 0])
            span[1], span[2] = frame.index, span[2] + 1
        self.report.regions_held += sum(r.state == "held" for r in regions)
        self.report.regions_backfilled += sum(r.state == "backfilled" for r in regions)
        self._measure_cover(regions, frame.width, frame.height)
        before = frame.image.copy() if self.preview is not None else None
        if regions:
            original = frame.image
            try:
                frame.image = self.anonymizer.anonymize(original.copy(), regions, frame)
            except Exception as exc:  # noqa: BLE001 - any failure falls back, never the original
                log.warning("frame %d: %s failed (%s); covering with %s", frame.index, self.anonymizer.name, exc, self.fallback.name)
                self.report.fallback_regions += len(regions)
                try:
                    frame.image = self.fallback.anonymize(original, regions, frame)
                except Exception:  # noqa: BLE001
                    self.report.frames_blanked += 1
                    frame.image = cover_frame(original)
        if before is not None:
            try:
                self.preview(before, frame.image)
            except Exception as exc:  # noqa: BLE001 - a window must never stop the run
                log.warning("preview disabled: %s", exc)
                self.preview = None
        self.timers["anonymize"].add(time.perf_counter() - t)
        return frame

    # -- the loop -------------------------------------------------------------------

    def frames(self, inp: queue.Queue) -> Iterator[Frame]:
        while True:
            try:
                item = inp.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set():  # Ctrl-C, or a write error: the reader may never end
                    return
                continue
            if item is _END:
                return
            if isinstance(item, _Failure):
                raise item.exc
            yield item

    def process(self, frames: Iterator[Frame]) -> Iterator[Frame]:
        """Detect/track/anonymize; yields anonymized frames in order.

        With ``detect_every = k`` the detector runs on every k-th frame, on scene cuts and
        on the frame before a cut, in worker threads, so that detection of the next group overlaps with the current
        one. A skipped frame is covered by the regions of the detection before it (grown
        a little per frame) and by the detections of the run after it ("backfill"): a
        face that appears between two detection runs is covered from its first frame.
        The price is up to ``2 k`` frames of latency.

        A detection between full passes (tracking/roi.py) is two jobs: the crops around what
        moved, submitted with its frame, and the crops around the faces the detection before
        it left tracked, submitted as soon as that one is tracked (in frame order). Neither
        depends on which worker finished first, so every run gives the same output.
        """
        from concurrent.futures import ThreadPoolExecutor

        groups: deque[_Group] = deque()
        with ThreadPoolExecutor(max_workers=self.detect_workers, thread_name_prefix="camstream-detect") as pool:

            def track(group: _Group) -> None:
                """Tracker update for a group's detection frame (in frame order)."""
                if group.regions is not None or group.failed:
                    return
                try:
                    _track(group)
                finally:  # the next group's second job needs this one's faces (or its failure)
                    if group.next is not None and group.next.wants_faces:
                        self._face_job(group.next, group, pool)

            def _track(group: _Group) -> None:
                try:
                    detections = group.future.result()
                    if group.faces is not None:
                        detections = _merge(detections, group.faces.result())
                        detections = detections.with_nms(threshold=0.5) if len(detections) > 1 else detections
                except Exception as exc:  # noqa: BLE001 - cannot check these frames: cover them all
                    log.warning("frame %d: detector failed (%s); covering the whole frame", group.frame.index, exc)
                    group.failed = True
                    return
                t = time.perf_counter()
                if group.cut:  # velocities and held boxes of the last shot mean nothing here
                    self.tracker.cut()
                    self.memory.cut()
                else:  # what the tracker knows, moved with the camera to this frame
                    camera = self._camera(self._tracked, group.frame.index)
                    self.tracker.warp(camera)
                    self.memory.warp(camera)
                self._tracked = group.frame.index
                detections = _confirmed(detections, self.memory.known_boxes(BIG_CONFIDENCE))
                regions = self.tracker.update(detections, group.frame.index, group.frame.time, group.looked_at)
                detected = [r for r in regions if r.state == "detected"]
                tracker_held = [r for r in regions if r.state != "detected"]
                h, w = group.frame.image.shape[:2]
                group.regions = in_frame(self.memory.update(detected, group.frame.index, group.looked_at) + tracker_held, w, h)
                self.timers["track"].add(time.perf_counter() - t)

            def advance() -> None:
                """Track every group whose detection is in, in order (each submits the next one's second job)."""
                for g in groups:
                    if g.regions is not None or g.failed:
                        continue
                    if not g.done():
                        return
                    track(g)

            def add(frame: Frame, full: bool, cut: bool = False) -> None:
                # What moved since the detection before, the camera's motion taken out; the faces: _face_job.
                crops = self.planner.plan(frame.image, force_full=full, camera=self._camera(self._planned, frame.index))
                self._planned = frame.index
                group = _Group(frame, self._submit(pool, frame, crops), cut=cut,
                               wants_faces=crops is not None or (self.second_look is not None and bool(groups) and not cut),
                               looked=None if crops is None else [crops.moved], moved=self.planner.moved)
                if groups:
                    before = groups[-1]
                    before.next = group
                    if group.wants_faces and (before.regions is not None or before.failed):
                        self._face_job(group, before, pool)
                groups.append(group)

            def finalize(group: _Group, following: _Group | None) -> Iterator[Frame]:
                track(group)
                if following is not None:
                    track(following)
                for index in [i for i in self._motions if i <= group.frame.index]:
                    del self._motions[index]  # nothing composes motions from before a finished group
                if group.failed or (following is not None and following.failed and group.skipped):
                    # A failed detection leaves frames that cannot be checked: cover them whole.
                    frames_ = (group.frame, *group.skipped) if group.failed else group.skipped
                    if not group.failed:
                        yield self._anonymize(group.frame, group.regions or [])
                    for f in frames_:
                        self.report.frames_blanked += 1
                        self._cover_shares.append(1.0)
                        f.image = cover_frame(f.image)
                        yield f
                    return
                yield self._anonymize(group.frame, group.regions)
                if group.skipped:
                    # No interpolation or backfill across a cut: the next shot's faces are elsewhere.
                    after = following.regions if following is not None and not following.cut else None
                    h, w = group.frame.image.shape[:2]
                    camera = [self._camera(group.frame.index, f.index) for f in group.skipped]
                    span = self._camera(group.frame.index, following.frame.index) if after is not None else STILL
                    covers = _between(group.regions, after, len(group.skipped), self.hold_growth, self.max_growth, camera, span,
                                      following.moved if after is not None else None)
                    for f, cover in zip(group.skipped, covers, strict=True):
                        yield self._anonymize(f, in_frame(cover, w, h))

            since_detect = self.detect_every  # detect on the first frame
            for frame in frames:
                self.report.frames_in += 1
                self._motions[frame.index] = frame.motion if frame.motion is not None else STILL
                cut = self.stills or self._is_scene_cut(frame.image, frame.motion)
                if groups and not (since_detect >= self.detect_every or cut):
                    since_detect += 1
                    groups[-1].skipped.append(frame)
                else:
                    if cut and groups and groups[-1].skipped:
                        # The last frame of a shot is detected, not held: frames before the
                        # cut are covered from detections on this side of it only.
                        add(groups[-1].skipped.pop(), True)
                    since_detect = 1
                    advance()
                    add(frame, cut, cut)
                advance()  # on every frame: a second job is submitted as soon as it can be
                # A group is final once the next group's detection is known (backfill).
                while len(groups) >= 2 and (groups[1].done() or len(groups) > self.detect_workers + 1):
                    yield from finalize(groups.popleft(), groups[0])
            if groups and groups[-1].skipped:
                # The last frame is detected too: a face that came in after the last
                # detection (at a pan's edge in the last frames) had nothing to find it.
                advance()
                add(groups[-1].skipped.pop(), False)
            while groups:
                group = groups.popleft()
                yield from finalize(group, groups[0] if groups else None)

    def run(self) -> RunReport:
        inq: queue.Queue = queue.Queue(self.queue_size)
        outq: queue.Queue = queue.Queue(self.queue_size)
        write_errors: list[BaseException] = []
        reader = threading.Thread(target=self._read, args=(inq,), name="camstream-read", daemon=True)
        writer = threading.Thread(target=self._write, args=(outq, write_errors), name="camstream-write", daemon=True)
        started = time.perf_counter()
        success = False
        frames = None
        # Outside: signals are only noted while the output is finished (a second Ctrl-C
        # that cut the closing short left an unplayable file). Inside: they stop the run.
        with self.signals_deferred():
            try:
                with self._signals_stop():
                    reader.start()
                    writer.start()
                    frames = self.process(self.frames(inq))
                    for frame in frames:
                        if write_errors:
                            break
                        self._put(outq, frame)
                        if self._stop.is_set():
                            break
                    if self._interrupted:
                        raise Interrupted(self._interrupted)
                    success = not write_errors
            except Interrupted as exc:
                self.report.status = "interrupted"
                self.report.error = str(exc)
                raise
            except CamstreamError as exc:
                self.report.status = "error"
                self.report.error = str(exc)
                raise
            except Exception as exc:
                self.report.status = "error"
                self.report.error = f"{type(exc).__name__}: {exc}"
                raise
            finally:
                self._finish(frames, outq, writer, reader, success and not write_errors, started)
        if write_errors:
            self.report.status = "error"
            self.report.error = str(write_errors[0])
            raise write_errors[0]
        if self.sink.error is not None:
            self.report.status = "error"
            self.report.error = str(self.sink.error)
            raise self.sink.error
        if self.report.frames_in == 0:
            empty = self._nothing_read()
            self.report.status, self.report.error = "error", str(empty)
            raise empty
        self.report.status = "partial" if self.report.decode_errors else "ok"
        return self.report

    def _finish(self, frames: Iterator[Frame] | None, outq: queue.Queue, writer: threading.Thread,
                reader: threading.Thread, success: bool, started: float) -> None:
        """Stop the threads, close source and sink, complete the report."""
        self._stop.set()
        if frames is not None:
            frames.close()  # ends the detection worker pool now, not at garbage collection
        self._put(outq, _END, always=True)
        writer.join()
        reader.join(timeout=5)
        if reader.is_alive():  # stuck in a network read: a live source closes safely under it
            self.source.close()
            reader.join(timeout=5)
        else:
            self.source.close()
        output = self.sink.close(success=success)
        self.report.output = str(output) if output else None
        muxed = getattr(self.sink, "frames_muxed", None)
        if muxed is not None:  # what the file holds (the encoder's last frames, if any, included)
            self.report.frames_out = muxed if output else 0
        if self.sink.error is not None and self.report.status == "running":
            self.report.status = "error"  # a failure to finish the file, with no earlier one
            self.report.error = str(self.sink.error)
        self._finish_report(time.perf_counter() - started)

    def _nothing_read(self) -> CamstreamError:
        info = self.source.info
        start = getattr(self.source, "start", None)
        what = f"no video frames after --start {start:g} s" if start else "no video frames"
        if info.live:
            return StreamError(f"{info.uri}: the stream delivered {what}")
        return InputError(f"{info.uri}: {what}; nothing written")

    @contextmanager
    def signals_deferred(self) -> Iterator[None]:
        """While the output is finished: SIGINT/SIGTERM are noted, not raised."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def handler(signum: int, _frame: object) -> None:
            self._interrupted = self._interrupted or signum
            log.warning("finishing the output and the report first (kill -9 keeps the file playable up to its last second)")

        with _signal_handler(handler):
            yield

    def _finish_report(self, wall: float) -> None:
        r = self.report
        stats = self.source.stats
        r.decode_errors, r.frames_lost, r.reconnects = stats.decode_errors, stats.frames_lost, stats.reconnects
        r.source_errors = list(stats.errors)
        r.wall_seconds = round(wall, 3)
        r.fps = round(r.frames_out / wall, 2) if wall > 0 else 0.0
        r.stages = {name: timer.summary() for name, timer in self.timers.items()}
        shares = self._cover_shares
        r.frame_covered = {"mean_percent": round(100 * float(np.mean(shares)), 2) if shares else 0.0,
                           "max_percent": round(100 * float(np.max(shares)), 2) if shares else 0.0}
        r.streams = list(getattr(self.sink, "streams", None) or [])
        figures = getattr(self.anonymizer, "report", None)
        if callable(figures):
            r.anonymizer = figures()
        tracks = self.tracker.stats
        ids = sorted((set(tracks) | set(self._covered)) - {-1})
        r.tracks = [
            {
                "track_id": tid,
                "first_frame": self._covered[tid][0] if tid in self._covered else tracks[tid].first_frame,
                "last_frame": self._covered[tid][1] if tid in self._covered else tracks[tid].last_frame,
                "frames_covered": self._covered[tid][2] if tid in self._covered else 0,
                "frames_detected": tracks[tid].frames_detected if tid in tracks else 0,
                "misses_bridged": tracks[tid].frames_held if tid in tracks else 0,
            }
            for tid in ids
        ]
        untracked = self._covered.get(-1)
        r.untracked = {"frames_covered": untracked[2] if untracked else 0, "first_frame": untracked[0] if untracked else None,
                       "last_frame": untracked[1] if untracked else None}
