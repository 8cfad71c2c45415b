"""Covering what ``--detect`` adds to faces: plates always classically, each class counted.

A generated licence plate would be a real-looking plate of somebody else's car, and a
diffusion model asked for a face where a plate was would paint a face there: so plates
never reach a generative method. :class:`ClassCover` wraps the run's anonymizer, hands
it every region but the plates, and covers the plates with a classical cover in a box
(a plate is a rectangle): the method itself when it is solid, pixelate or blur, else the
run's fallback (solid by default). It also counts, per class, the regions covered and the
tracks seen, for the report's ``classes``.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from tracking.tracker import Region

from .anonymizers import Anonymizer
from .config import Config
from .frame import Frame

CLASSICAL_FOR_PLATES = ("solid", "pixelate", "blur")


def plate_cover(config: Config, build_classical: Callable[[str, Config], Anonymizer]) -> Anonymizer:
    """The classical cover plates get (``build_classical``: the runner's builder): the method
    if it is one of :data:`CLASSICAL_FOR_PLATES`, else the fallback; always a box."""
    boxed = copy.deepcopy(config)
    boxed.anonymize.shape = "box"
    method = config.anonymize.method
    return build_classical(method if method in CLASSICAL_FOR_PLATES else config.anonymize.fallback, boxed)


class ClassCover:
    """The run's anonymizer for every region but plates; ``plates`` for plates."""

    def __init__(self, inner: Anonymizer, plates: Anonymizer) -> None:
        self._inner, self._plates = inner, plates
        self.regions: dict[str, int] = {}  # kind -> regions covered (one per frame a region is covered in)
        self.tracks: dict[str, set[int]] = {}  # kind -> track ids covered

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - name, live, close(), report() of the method
        return getattr(self._inner, name)

    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame: Frame | None = None) -> np.ndarray:
        for r in regions:
            self.regions[r.kind] = self.regions.get(r.kind, 0) + 1
            if r.track_id >= 0:
                self.tracks.setdefault(r.kind, set()).add(r.track_id)
        plates = [r for r in regions if r.kind == "plate"]
        others = [r for r in regions if r.kind != "plate"]
        if others or not plates:
            image = self._inner.anonymize(image, others, frame)
        if plates:
            image = self._plates.anonymize(image, plates, frame)
        return image

    def counts(self, kinds: Sequence[str]) -> dict[str, dict[str, int]]:
        """``{kind: {"regions_covered": n, "tracks": n}}`` for every kind asked for (zeros included)."""
        return {k: {"regions_covered": self.regions.get(k, 0), "tracks": len(self.tracks.get(k, ()))} for k in kinds}


def wants(config: Config) -> dict[str, bool]:
    """Which classes besides faces the run detects: ``--detect`` (``detection.classes``), and
    persons also through the older ``--persons`` / ``--scope person`` (YOLO)."""
    det = config.detection
    return {
        "persons": "persons" in det.classes or det.persons or config.anonymize.scope == "person",
        "plates": "plates" in det.classes,
    }


def class_detectors(config: Config) -> list[Any]:
    """The detectors ``--detect`` adds to the face detector: plates (the manifest entry
    ``detection.plate_model``), persons (``detection.person_model``: a manifest entry, or
    ``yolo`` for Ultralytics with ``--person-weights``). Missing models raise ModelError."""
    det, out = config.detection, []
    if "plates" in det.classes:
        from tracking.plates import build_plate_detector

        out.append(build_plate_detector(det.plate_model, config.models.dir, det.plate_threshold, config.models.offline))
    if "persons" in det.classes:
        if det.person_model == "yolo":
            from tracking.detectors import YoloPersonDetector

            out.append(YoloPersonDetector(det.person_weights, det.person_threshold))
        else:
            from tracking.persons import build_person_detector

            out.append(build_person_detector(det.person_model, config.models.dir, det.person_threshold, config.models.offline))
    return out


def class_tracker(tracker: Any, config: Config) -> Any:  # noqa: ANN401 - a FaceTracker
    """``tracker`` as is for faces only, else one tracker per class (tracking/classes.py)."""
    from tracking.classes import PERSON, PLATE, ClassTracker

    more = wants(config)
    classes = tuple(c for c, on in ((PERSON, more["persons"]), (PLATE, more["plates"])) if on)
    return ClassTracker(tracker, classes) if classes else tracker


def class_kinds(config: Config) -> list[str]:
    """The region kinds the report counts."""
    more = wants(config)
    return ["face"] + [k for k, word in (("person", "persons"), ("plate", "plates")) if more[word]]
