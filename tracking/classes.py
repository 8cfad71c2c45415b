"""What a run detects besides faces (``--detect faces,plates,persons``): class ids, one
tracker per class, and where each class's model file is.

Every detector returns ``sv.Detections`` whose ``class_id`` says the class (faces 0,
persons 1, plates 2). :class:`ClassTracker` gives each class its own fail-closed
:class:`~tracking.tracker.FaceTracker`, so that a plate never continues a face's track
(ByteTrack matches boxes by overlap only, whatever they are) and a held region keeps its
class: a plate the detector misses stays a plate, covered classically, never handed to a
face generator.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import supervision as sv

from streamer.errors import ConfigError, ModelError
from streamer.validate import parse_classes  # noqa: F401 - the words of --detect, checked without NumPy

from .motion import Motion
from .tracker import FaceTracker, Looked, Region, TrackStats

log = logging.getLogger("camstream")

FACE, PERSON, PLATE = 0, 1, 2
KINDS = {FACE: "face", PERSON: "person", PLATE: "plate"}
CLASSES = {"faces": FACE, "persons": PERSON, "plates": PLATE}  # the words of --detect
TRACK_ID_STRIDE = 1_000_000  # class c's track ids start at c * stride: unique across the run's trackers




@dataclass
class ClassTracker:
    """One :class:`FaceTracker` per class, behind the FaceTracker interface the pipeline uses.

    ``classes``: the class ids to track; each gets a copy of ``template``'s settings with
    its own ``kind``. Detections of a class not listed go to the face tracker (fail-closed:
    they are still covered).
    """

    template: FaceTracker
    classes: tuple[int, ...] = (FACE,)
    trackers: dict[int, FaceTracker] = field(init=False)

    def __post_init__(self) -> None:
        self.trackers = {}
        for c in dict.fromkeys((FACE, *self.classes)):
            t = (
                self.template
                if c == FACE
                else FaceTracker(
                    fps=self.template.fps,
                    hold_frames=self.template.hold_frames,
                    hold_growth=self.template.hold_growth,
                    hold_max_growth=self.template.hold_max_growth,
                    activation_threshold=self.template.activation_threshold,
                    kind=KINDS[c],
                )
            )
            # ByteTrack numbers its tracks from 0 in each instance; the report and the
            # pipeline's coverage memory key on track ids, so each class gets its own range.
            t.bytetrack._next_track_id = c * TRACK_ID_STRIDE
            self.trackers[c] = t

    def __getattr__(self, name: str):  # noqa: ANN204 - hold_frames, hold_growth, ...: the face tracker's settings
        if name == "trackers":
            raise AttributeError(name)
        return getattr(self.trackers[FACE], name)

    def update(self, detections: sv.Detections, frame_index: int, timestamp: float | None = None,
               looked: Looked | None = None) -> list[Region]:
        ids = detections.class_id if detections.class_id is not None else np.zeros(len(detections), int)
        ids = np.where(np.isin(ids, list(self.trackers)), ids, FACE)
        regions: list[Region] = []
        for c, tracker in self.trackers.items():
            regions += tracker.update(detections[ids == c], frame_index, timestamp, looked)
        return regions

    def warp(self, camera: Motion) -> None:
        """Every class's tracks move with the camera (FaceTracker.warp)."""
        for tracker in self.trackers.values():
            tracker.warp(camera)

    def cut(self) -> None:
        for tracker in self.trackers.values():
            tracker.cut()

    @property
    def stats(self) -> dict[int, TrackStats]:
        return {tid: s for t in self.trackers.values() for tid, s in t.stats.items()}


def find_model(name: str, models_dir: str | Path | None, section: str, loaders: dict, offline: bool | None = None):  # noqa: ANN201
    """The manifest entry ``name`` of ``section`` and the folder holding its files
    (``--models-dir DIR/name``, else the default local folder, else the HF cache). A
    downloadable entry that is not there is fetched on first use, into the same place
    (``camstream models fetch`` does it ahead of time), unless offline (``HF_HUB_OFFLINE``
    or ``models.offline``); a missing model is a ModelError saying how to get it."""
    from camouflage.models.manifest import ModelResolver, default_local_dir, hub_offline

    resolver = ModelResolver(models_dir=models_dir, offline=offline)
    entry = resolver.manifest.entries.get(name)
    if entry is None or entry.kind not in loaders:
        known = ", ".join(resolver.manifest.sections.get(section, []))
        raise ConfigError(f"{name!r} is not a model of the manifest's {section!r} section (known: {known})")
    folder = resolver.find(name)
    if folder is None and entry.fetchable and not hub_offline(offline):
        log.info("%s: not here yet, fetching it (first use) from %s", name, entry.url or entry.repo)
        folder = resolver.fetch(name, Path(models_dir) if models_dir else None)
    if folder is None:
        where = f"{models_dir}/{name}" if models_dir else f"{default_local_dir()}/{name}"
        how = f"`camstream models fetch {name}` where there is network" if entry.fetchable else entry.hint
        why = "offline" if entry.fetchable else "not imported"
        raise ModelError(f"{section[:-1]} model {name} not found ({where}; {why}); {how}")
    resolver.warn_if_random()
    return entry, folder


def model_file(kind: str, folder: Path) -> Path:
    """The one file of a single-file detector entry of ``kind`` in ``folder``, by the
    publisher's file name pattern in the manifest."""
    from camouflage.models.manifest import entry_files, load_manifest

    entry = next(e for e in load_manifest() if e.kind == kind)
    files = entry_files(entry, folder)
    if not files:
        raise ModelError(f"{entry.name}: no {', '.join(entry.files)} in {folder}")
    return files[0]
