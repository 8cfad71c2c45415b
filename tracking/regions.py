"""Regions from a file: ``camstream run --regions FILE`` adds them to the detector's,
``--regions-only`` uses them alone (detections brought from another tool).

The file is a MOTChallenge detection CSV, one box per line::

    frame,id,x,y,w,h,conf[,wx,wy,wz][,lx1,ly1,...,lx5,ly5]

``frame`` is 1-based (a single image is frame 1; a folder of images numbers its images
1, 2, ... in order); ``x,y,w,h`` is the box in pixels (left, top, width, height); ``conf``
its confidence. MOT's three world coordinates (``-1,-1,-1`` in 2D files) are read and
ignored; 10 more values are the face's 5 landmarks (eyes, nose, mouth corners: x, y each).
``id`` is read but not used: identities come from the tracker, as for any detection.
Blank lines and lines starting with ``#`` are skipped. A bad row is a one-line error
naming the file, the line and what is wrong (exit 3).

Every box is covered on every frame that names it, whatever else happens (the
pipeline's ``given_regions``), and goes to the tracker like a detection (:class:`RegionsDetector`),
so it is also held, interpolated and backfilled between detections like the detector's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import supervision as sv

from streamer.errors import ConfigError, InputError
from streamer.frame import Frame

from .tracker import Region

COLUMNS = "frame,id,x,y,w,h,conf[,x,y,z][,10 landmark values]"


@dataclass
class RegionsFile:
    """The boxes of a regions file by frame index (0-based, as :class:`~streamer.frame.Frame` counts)."""

    path: str
    boxes: dict[int, list[Region]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: str | Path) -> RegionsFile:
        try:
            text = Path(path).read_text()
        except FileNotFoundError:
            raise ConfigError(f"--regions {path}: no such file") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--regions {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
        out = cls(str(path))
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            index, region = _row(line, f"{path}:{number}")
            out.boxes.setdefault(index, []).append(region)
        return out

    def __len__(self) -> int:
        return sum(len(v) for v in self.boxes.values())

    def regions(self, frame: Frame) -> list[Region]:
        """The file's regions of ``frame`` (fresh copies: the pipeline may change them)."""
        return [
            Region(
                box=r.box.copy(),
                track_id=-1,
                kind=r.kind,
                confidence=r.confidence,
                landmarks=None if r.landmarks is None else r.landmarks.copy(),
            )
            for r in self.boxes.get(frame.index, ())
        ]

    def detector(self) -> RegionsDetector:
        return RegionsDetector(self)


class RegionsDetector:
    """The file's boxes as a detector (``--regions-only``, or beside the face detector with
    ``--regions``). The pipeline calls :meth:`detect_frame` (it knows the frame index);
    :meth:`detect` alone cannot know which frame it is given and raises, so a caller that
    does not know this detector covers the whole frame (the pipeline's rule for a failed
    detection) instead of missing a box."""

    kind = "face"

    def __init__(self, regions: RegionsFile) -> None:
        self.regions = regions

    def detect(self, image: np.ndarray) -> sv.Detections:
        raise RuntimeError("the regions file's detector needs the frame index: call detect_frame(frame)")

    def detect_frame(self, frame: Frame) -> sv.Detections:
        found = self.regions.boxes.get(frame.index, [])
        if not found:
            return sv.Detections.empty()
        det = sv.Detections(
            xyxy=np.stack([r.box for r in found]).astype(np.float32),
            confidence=np.array([r.confidence for r in found], np.float32),
            class_id=np.zeros(len(found), int),
        )
        det.data["landmarks"] = np.stack(
            [r.landmarks if r.landmarks is not None else np.full((5, 2), np.nan, np.float32) for r in found]
        ).astype(np.float32)
        return det


def _row(line: str, where: str) -> tuple[int, Region]:
    cells = [c.strip() for c in line.split(",")]
    if len(cells) not in (7, 10, 17, 20):
        raise InputError(f"{where}: {len(cells)} values; expected {COLUMNS}")
    try:
        values = [float(c) for c in cells]
    except ValueError:
        bad = next(c for c in cells if not _is_number(c))
        raise InputError(f"{where}: {bad!r} is not a number ({COLUMNS})") from None
    if not all(math.isfinite(v) for v in values):
        raise InputError(f"{where}: a value is not finite")
    frame, _, x, y, w, h, conf = values[:7]
    if frame != int(frame) or frame < 1:
        raise InputError(f"{where}: frame {cells[0]}: frames are whole numbers from 1 (MOTChallenge)")
    if w <= 0 or h <= 0:
        raise InputError(f"{where}: box {cells[4]} x {cells[5]}: width and height must be positive")
    extra = values[7:]
    if len(extra) in (3, 13):  # MOT's world coordinates: not ours to use
        extra = extra[3:]
    landmarks = np.asarray(extra, np.float32).reshape(5, 2) if extra else None
    box = np.array([x, y, x + w, y + h], np.float32)
    return int(frame) - 1, Region(box=box, confidence=float(min(max(conf, 0.0), 1.0)), landmarks=landmarks)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
