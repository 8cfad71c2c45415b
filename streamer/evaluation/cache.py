"""What ``camstream eval`` learns about the ORIGINAL, kept on disk and reused.

Most of an evaluation's time goes to the original, not to the outputs: the reference
faces (several detectors, a 2x pass: seconds a frame), CenterFace, the dlib landmarks
and embeddings and the check that each face can be told from no face. None of it
depends on the output, so it is computed once per original (and range and settings)
and read back by every later ``eval`` of another output of the same original.

Kept as gzipped JSON (no pickle: a cache file is read, never executed) under
``$CAMSTREAM_CACHE_DIR/eval``, else ``$XDG_CACHE_HOME/camstream/eval``, else
``~/.cache/camstream/eval``. The key holds the original's path, size and modification
time, the range and every setting that changes the figures, and :data:`VERSION`
(raised whenever the code that fills it changes what it finds).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .reference import ReferenceFace

log = logging.getLogger("camstream")

VERSION = 1


def cache_dir() -> Path:
    if os.environ.get("CAMSTREAM_CACHE_DIR"):
        return Path(os.environ["CAMSTREAM_CACHE_DIR"]) / "eval"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "camstream" / "eval"


def cache_key(original: str, **settings: Any) -> str | None:  # noqa: ANN401
    """None when the original is not a plain file (nothing to key on)."""
    path = Path(original)
    if not path.is_file():
        return None
    st = path.stat()
    what = {"version": VERSION, "path": str(path.resolve()), "size": st.st_size, "mtime_ns": st.st_mtime_ns, **settings}
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


@dataclass
class FrameFacts:
    """One frame of the original: what every output is measured against."""

    boxes: np.ndarray  # CenterFace, (N, 4)
    reference: list[ReferenceFace] | None = None  # None: not a reference frame
    reid_index: list[int] | None = None  # None: not embedded; else which of ``boxes`` were (identifiable ones)
    rects: list[list[int]] = field(default_factory=list)  # dlib rectangles of those ...
    points: list[list[list[float]]] = field(default_factory=list)  # ... their 5 landmarks ...
    embeddings: np.ndarray | None = None  # ... and their embeddings (M, 128)
    unidentifiable: int = 0  # faces left out: as close to their own erased patch

    def to_json(self) -> dict:
        return {
            "boxes": self.boxes.tolist(),
            "reference": None if self.reference is None else [
                [f.box.tolist(), f.inner.tolist(), list(f.detectors), f.confidence] for f in self.reference],
            "reid_index": self.reid_index,
            "rects": self.rects,
            "points": self.points,
            "embeddings": None if self.embeddings is None else self.embeddings.tolist(),
            "unidentifiable": self.unidentifiable,
        }

    @classmethod
    def from_json(cls, d: dict) -> FrameFacts:
        return cls(
            boxes=np.array(d["boxes"], np.float32).reshape(-1, 4),
            reference=None if d["reference"] is None else [
                ReferenceFace(np.array(b, np.float32), np.array(i, np.float32), tuple(n), float(c)) for b, i, n, c in d["reference"]],
            reid_index=d["reid_index"],
            rects=d["rects"],
            points=d["points"],
            embeddings=None if d["embeddings"] is None else np.array(d["embeddings"], np.float32).reshape(-1, 128),
            unidentifiable=int(d["unidentifiable"]),
        )


def shapes_to_json(shapes: list) -> tuple[list[list[int]], list[list[list[float]]]]:
    """dlib full_object_detections as plain numbers."""
    rects = [[s.rect.left(), s.rect.top(), s.rect.right(), s.rect.bottom()] for s in shapes]
    points = [[[p.x, p.y] for p in s.parts()] for s in shapes]
    return rects, points


def shapes_from_json(rects: list[list[int]], points: list[list[list[float]]]) -> list:
    import dlib

    return [dlib.full_object_detection(dlib.rectangle(*r), [dlib.point(int(x), int(y)) for x, y in p])
            for r, p in zip(rects, points, strict=True)]


@dataclass
class OriginalFacts:
    frames: list[FrameFacts]
    detectors: list[str]


def load(key: str | None) -> OriginalFacts | None:
    if key is None:
        return None
    path = cache_dir() / f"{key}.json.gz"
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
        return OriginalFacts([FrameFacts.from_json(f) for f in data["frames"]], list(data["detectors"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:  # a damaged cache is rebuilt, never trusted
        log.warning("eval cache %s unreadable (%s); measuring the original again", path, exc)
        return None


def save(key: str | None, facts: OriginalFacts) -> Path | None:
    """Written atomically (a temporary file renamed); a cache that cannot be written is
    only a warning: the evaluation itself is done."""
    if key is None:
        return None
    folder = cache_dir()
    data = gzip.compress(json.dumps({"frames": [f.to_json() for f in facts.frames], "detectors": facts.detectors}).encode())
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=".partial-", suffix=".json.gz")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        target = folder / f"{key}.json.gz"
        os.replace(tmp, target)
        return target
    except OSError as exc:
        log.warning("eval cache not written (%s): the next eval of this original measures it again", exc)
        return None
