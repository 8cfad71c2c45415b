"""ByteTrack with fail-closed coverage.

The cover set of a frame is the union of
  * every detection of the frame (whether or not the tracker has confirmed it), and
  * every track that was seen recently but not in this frame, at its Kalman-predicted
    box, enlarged a little more for each frame it has been missing ("held").
So a face the detector misses for a few frames stays covered, and nothing depends on
the tracker accepting a detection. Tracker IDs give identities, stats and the report.

ByteTrack comes from Roboflow's ``trackers`` package (Apache-2.0): it is the maintained
successor of ``supervision.ByteTrack`` (removed in supervision 0.31) and its Kalman
prediction honours real timestamps, so variable frame rate video tracks correctly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import supervision as sv
from trackers import ByteTrackTracker
from trackers.utils.cmc import CMC

from .motion import Motion


@dataclass(slots=True)
class Region:
    """One area of a frame to anonymize."""

    box: np.ndarray  # xyxy float32, frame pixels, NOT yet enlarged by the anonymizer's margin
    track_id: int = -1  # -1: not (yet) a confirmed track
    kind: str = "face"
    state: str = "detected"  # "detected" | "held" (predicted while the detector misses it)
    confidence: float = 1.0
    landmarks: np.ndarray | None = None  # (K, 2) when the detector gives them
    velocity: np.ndarray | None = None  # xyxy pixels per frame, when known
    grown: float = 0.0  # held covers: the growth (of the face's size, per side) already in ``box``


@dataclass
class TrackStats:
    track_id: int
    first_frame: int
    last_frame: int
    frames_detected: int = 0
    frames_held: int = 0  # frames covered at the predicted box while the detector missed it

    @property
    def frames_covered(self) -> int:
        return self.frames_detected + self.frames_held


@dataclass
class FaceTracker:
    """Tracks faces (or persons) and returns the regions to cover for every frame.

    Args:
        fps: nominal frame rate, for ByteTrack's buffers.
        hold_frames: how many frames a lost track stays covered at its predicted box.
        hold_growth: extra relative size per missed frame (0.1 = +10 % per frame) ...
        hold_max_growth: ... up to this much.
        activation_threshold: confidence that starts a track (covering never needs one).
    """

    fps: float = 25.0
    hold_frames: int = 12
    hold_growth: float = 0.1
    hold_max_growth: float = 0.6
    activation_threshold: float = 0.5
    kind: str = "face"
    stats: dict[int, TrackStats] = field(default_factory=dict)
    _frame_index: int = -1
    _last_timestamp: float | None = None
    _last: dict[int, tuple[np.ndarray, int, np.ndarray | None]] = field(default_factory=dict)  # id: box, frame, velocity
    _unconfirmed: dict[int, int] = field(default_factory=dict)  # lost track id: looks that did not find it, in a row

    def __post_init__(self) -> None:
        self.bytetrack = ByteTrackTracker(
            lost_track_buffer=max(30, self.hold_frames),
            frame_rate=self.fps,
            track_activation_threshold=self.activation_threshold,
            minimum_consecutive_frames=1,
            minimum_iou_threshold=0.1,
            high_conf_det_threshold=self.activation_threshold,
        )

    def update(self, detections: sv.Detections, frame_index: int, timestamp: float | None = None,
               looked: Looked | None = None) -> list[Region]:
        """Feed one frame's detections; get back every region that must be covered.
        ``looked``: see :meth:`CoverageMemory.update` (a lost track it looked for and did
        not find is no longer held)."""
        self._frame_index = frame_index
        if timestamp is not None:
            # Timestamps must strictly increase for the Kalman step (damaged files repeat them).
            if self._last_timestamp is not None and timestamp <= self._last_timestamp:
                timestamp = self._last_timestamp + 1e-3
            self._last_timestamp = timestamp
        tracked = self.bytetrack.update(detections, timestamp=timestamp)
        regions: list[Region] = []
        seen: set[int] = set()
        landmarks = tracked.data.get("landmarks") if len(tracked) else None
        for i in range(len(tracked)):
            tid = int(tracked.tracker_id[i])
            marks = None if landmarks is None or np.isnan(landmarks[i]).any() else landmarks[i]
            regions.append(
                Region(
                    box=tracked.xyxy[i].astype(np.float32),
                    track_id=tid,
                    kind="person" if tracked.class_id is not None and tracked.class_id[i] == 1 else self.kind,
                    state="detected",
                    confidence=float(tracked.confidence[i]) if tracked.confidence is not None else 1.0,
                    landmarks=marks,
                )
            )
            if tid >= 0:
                seen.add(tid)
                self._count(tid, frame_index, held=False)
                self._unconfirmed.pop(tid, None)
        # The tracker returns only the detections it kept; cover any it dropped too.
        if len(tracked) < len(detections):
            kept = tracked.xyxy
            for i in range(len(detections)):
                box = detections.xyxy[i]
                if not len(kept) or not np.any(np.all(np.isclose(kept, box), axis=1)):
                    regions.append(Region(box=box.astype(np.float32), kind=self.kind, confidence=float(detections.confidence[i])))
        for region in regions:
            last = self._last.get(region.track_id) if region.track_id >= 0 else None
            if last is not None and frame_index > last[1]:
                region.velocity = bounded_velocity((region.box - last[0]) / (frame_index - last[1]), region.box)
            if region.track_id >= 0:
                self._last[region.track_id] = (region.box, frame_index, region.velocity)
        for track in self.bytetrack.tracks:
            tid = int(track.tracker_id)
            if tid < 0 or tid in seen or track.time_since_update == 0 or tid not in self._last:
                continue
            box, seen_at, velocity = self._last[tid]
            missed = frame_index - seen_at
            if missed > self.hold_frames:
                continue
            # The last detected box moved at its measured speed (pixels per frame), not
            # the Kalman state: that one also extrapolates the box's height and aspect,
            # and a face leaving the frame grew into a tall ghost block.
            moved = shifted(box, velocity, missed)
            misses = self._unconfirmed.get(tid, 0) + bool(looked is not None and looked(moved))
            self._unconfirmed[tid] = misses
            hits = self.stats[tid].frames_detected if tid in self.stats else 1
            if unconfirmed_out(hits, misses):
                continue
            grow = min(self.hold_growth * missed, self.hold_max_growth)
            regions.append(Region(box=enlarge(moved, grow), track_id=tid, kind=self.kind, state="held", velocity=velocity, grown=grow))
            self._count(tid, frame_index, held=True)
        keep = max(30, self.hold_frames)
        self._last = {t: v for t, v in self._last.items() if frame_index - v[1] <= keep}
        self._unconfirmed = {t: n for t, n in self._unconfirmed.items() if t in self._last}
        return regions

    def warp(self, camera: Motion) -> None:
        """The camera moved by ``camera`` since the last update: every track's state and
        last box move with the scene (trackers' CMC warp of the Kalman state, as in
        BoT-SORT), so the velocities measured next are the faces' own."""
        if camera.still or not camera.known:
            return
        if self.bytetrack.tracks:
            CMC.apply_batch(camera.matrix.astype(np.float32), self.bytetrack.tracks)
        self._last = {t: (camera.boxes(box), f, camera.vectors(v)) for t, (box, f, v) in self._last.items()}

    def cut(self) -> None:
        """A scene cut: nothing seen before it says where anything is after it. Tracks
        end (their ids are not reused, so the stats stay apart)."""
        self.bytetrack.tracks = []
        self._last.clear()
        self._unconfirmed.clear()

    def _count(self, tid: int, frame_index: int, held: bool) -> None:
        st = self.stats.get(tid)
        if st is None:
            st = self.stats[tid] = TrackStats(track_id=tid, first_frame=frame_index, last_frame=frame_index)
        st.last_frame = frame_index
        if held:
            st.frames_held += 1
        else:
            st.frames_detected += 1


Looked = Callable[[np.ndarray], bool]  # did a detection look where this box (frame pixels) is?
ONE_OFF_LOOKS = 6  # a weak face detected once is dropped after this many looks that did not find it (fewer: a vtest.avi face leaked)
ONE_OFF_CONFIDENCE = 0.5  # "weak": below this confidence (the ghosts on cones, grass and walls were)


def unconfirmed_out(hits: int, misses: int, confidence: float = 1.0) -> bool:
    """Whether a face detected ``hits`` times (the last with ``confidence``), that
    detections looked for and did not find ``misses`` times in a row since, is no longer
    held. Only a weak one-off goes, after ONE_OFF_LOOKS misses: on vtest.avi dropping any
    face after one or two misses left 19 more faces exposed, and a weak one-off dropped
    after three leaked one (a real face is often found once, blurred or small, then
    missed); any other face is held its ``hold_frames``."""
    return hits <= 1 and confidence < ONE_OFF_CONFIDENCE and misses >= ONE_OFF_LOOKS


def enlarge(box: np.ndarray, margin: float) -> np.ndarray:
    """Grow an xyxy box by ``margin`` of its width/height on every side."""
    x1, y1, x2, y2 = (float(v) for v in box)
    dw, dh = (x2 - x1) * margin, (y2 - y1) * margin
    return np.array([x1 - dw, y1 - dh, x2 + dw, y2 + dh], dtype=np.float32)


def shifted(box: np.ndarray, velocity: np.ndarray | None, frames: float) -> np.ndarray:
    """``box`` moved ``frames`` frames on at ``velocity``'s centre speed. Its size stays:
    the size change between two detections is mostly the detector's (a face cut by the
    frame's edge grew a box 20 px a frame as it came in) and held covers grow anyway."""
    if velocity is None:
        return box
    v = np.asarray(velocity, np.float32)
    dx, dy = (v[0] + v[2]) / 2 * frames, (v[1] + v[3]) / 2 * frames
    return box + np.array([dx, dy, dx, dy], np.float32)


def regrow(box: np.ndarray, grown: float, total: float) -> np.ndarray:
    """A box that already holds a growth of ``grown`` (see :func:`enlarge`) grown to
    ``total`` of the face's own size: growths add up, they do not compound."""
    x1, y1, x2, y2 = (float(v) for v in box)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    w, h = (x2 - x1) / (1 + 2 * grown), (y2 - y1) / (1 + 2 * grown)
    return enlarge(np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], np.float32), total)


def bounded_velocity(velocity: np.ndarray, box: np.ndarray, limit: float = 1.0) -> np.ndarray:
    """A measured velocity (xyxy pixels per frame), each component clipped to ``limit``
    face sizes per frame: a wrong pairing must not throw a held box across the frame."""
    size = float(max(box[2] - box[0], box[3] - box[1], 1.0))
    return np.clip(velocity, -limit * size, limit * size).astype(np.float32)


def match_regions(before: list[Region], after: list[Region], gap: int | list[int], predict: bool = True) -> dict[int, int]:
    """Pair regions of two moments ``gap`` frames apart (or one gap per region of
    ``before``): the same track id, else the nearest centre (after moving ``before`` by its
    velocity) within a gate of one face width per frame of gap. Greedy, closest first
    over all pairs (each face taking its nearest in turn gave a neighbour's detection to
    the first face that reached it)."""
    gaps = gap if isinstance(gap, list) else [gap] * len(before)
    pairs: dict[int, int] = {}
    used: set[int] = set()

    def distance(i: int, j: int) -> float | None:
        """Centre distance of the pair, None beyond the gate."""
        a = before[i]
        box = shifted(a.box, a.velocity, gaps[i]) if predict else a.box
        d = float(np.hypot(*((box[:2] + box[2:]) / 2 - (after[j].box[:2] + after[j].box[2:]) / 2)))
        return d if d <= float(max(a.box[2] - a.box[0], a.box[3] - a.box[1], 1.0)) * (1.0 + gaps[i]) else None

    ids = {r.track_id: j for j, r in enumerate(after) if r.track_id >= 0}
    for i, r in enumerate(before):
        j = ids.get(r.track_id) if r.track_id >= 0 else None
        # The same id within the gate: a tracker that coasted a lost track across the
        # frame gave its id to another face (a moving camera's held covers spanned it).
        if j is not None and j not in used and distance(i, j) is not None:
            pairs[i] = j
            used.add(j)
    candidates = []
    for i in range(len(before)):
        if i in pairs:
            continue
        for j in range(len(after)):
            if j not in used and (d := distance(i, j)) is not None:
                candidates.append((d, i, j))
    for _, i, j in sorted(candidates):
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs


@dataclass
class _Remembered:
    region: Region  # its last detection
    seen: int  # the frame of that detection
    hits: int = 1  # detections of this face so far
    misses: int = 0  # detections since that looked where it should be and did not find it, in a row
    best: float = 0.0  # the highest confidence any of its detections had


@dataclass
class CoverageMemory:
    """Remembers every face detected in the last ``hold_frames`` frames, tracked or not.

    ByteTrack associates by IoU, which fails for small fast faces (a CCTV face of 8 px
    moving 7 px a frame has no overlap between detection runs) and it only holds
    confirmed tracks. This memory matches by centre distance with a velocity estimate,
    so a face the detector misses stays covered at its extrapolated position.
    """

    hold_frames: int = 12
    growth: float = 0.1
    max_growth: float = 0.6
    _faces: list[_Remembered] = field(default_factory=list)

    def update(self, detected: list[Region], frame_index: int, looked: Looked | None = None) -> list[Region]:
        """Give it the detected regions of a detection frame; returns them (with velocities)
        plus held regions for remembered faces that were not detected this time.

        ``looked(box)``: whether this detection looked where a remembered face should be
        now (the whole frame, or a crop holding it). A face it looked for and did not find
        is dropped (:func:`unconfirmed_out`): a false detection on a cone or a wall was
        held, and grew, for ``hold_frames`` frames."""
        previous = self._faces
        # Every remembered face at its own gap, closest pairs first.
        pairs = match_regions([f.region for f in previous], detected, [frame_index - f.seen for f in previous])
        faces = [_Remembered(d, frame_index, best=d.confidence) for d in detected]
        for i, j in pairs.items():
            f = previous[i]
            detected[j].velocity = bounded_velocity((detected[j].box - f.region.box) / max(1, frame_index - f.seen), detected[j].box)
            faces[j].hits = f.hits + 1
            faces[j].best = max(f.best, faces[j].best)
        held: list[Region] = []
        for i, f in enumerate(previous):
            gap = frame_index - f.seen
            if i in pairs or gap > self.hold_frames:
                continue
            r = f.region
            box = shifted(r.box, r.velocity, gap)
            misses = f.misses + bool(looked is not None and looked(box))
            if unconfirmed_out(f.hits, misses, r.confidence):
                continue
            grow = min(self.growth * gap, self.max_growth)
            held.append(Region(box=enlarge(box, grow), track_id=r.track_id, kind=r.kind, state="held",
                               confidence=r.confidence, velocity=r.velocity, grown=grow))
            faces.append(_Remembered(r, f.seen, f.hits, misses, f.best))
        self._faces = faces
        return detected + held

    def known_boxes(self, confidence: float = 0.0) -> list[np.ndarray]:
        """The last box of every remembered face (moved with the camera) that was once
        detected with at least ``confidence``."""
        return [f.region.box for f in self._faces if f.best >= confidence]

    def warp(self, camera: Motion) -> None:
        """Every remembered face moved with the camera (see :meth:`FaceTracker.warp`)."""
        if camera.still or not camera.known:
            return
        for f in self._faces:
            r = f.region
            f.region = replace(r, box=camera.boxes(r.box), velocity=camera.vectors(r.velocity),
                               landmarks=None if r.landmarks is None else camera.points(r.landmarks))

    def cut(self) -> None:
        """A scene cut: forget every face (its position says nothing about the new shot)."""
        self._faces = []
