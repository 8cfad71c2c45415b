"""The JSON run report: what was read, what was covered, how fast each stage ran."""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import OutputError
from .redact import redacted


@dataclass
class StageTimer:
    """Wall time spent in one stage, to print fps per stage."""

    seconds: float = 0.0
    calls: int = 0

    def add(self, seconds: float) -> None:
        self.seconds += seconds
        self.calls += 1

    def summary(self) -> dict[str, float]:
        ms = 1000 * self.seconds / self.calls if self.calls else 0.0
        fps = self.calls / self.seconds if self.seconds > 0 else 0.0
        return {"seconds": round(self.seconds, 3), "calls": self.calls, "ms_per_call": round(ms, 2), "fps": round(fps, 1)}


def made_with(method: str, config: dict[str, Any], start: float | None, end: float | None) -> dict[str, Any]:
    """What decides an output's content: the method, every setting (a digest of the whole
    config) and the time range. An output whose report says otherwise was made another way:
    ``--skip-existing`` does not keep it (a blur output was kept when solid was asked)."""
    settings = json.dumps(config, sort_keys=True, default=str)
    return {"method": method, "settings": hashlib.sha256(settings.encode()).hexdigest()[:32], "start": start, "end": end}


@dataclass
class RunReport:
    input: str
    output: str | None = None
    method: str = ""
    method_reason: str | None = None  # --method auto: which method it chose and why
    status: str = "running"  # "ok" | "partial" | "error" | "interrupted"
    error: str | None = None
    frames_in: int = 0
    frames_out: int = 0
    frames_detected: int = 0  # frames the detector ran on
    detections_on_crops: int = 0  # of those, looked at crops around motion and tracked faces only (tracking/roi.py)
    regions_covered: int = 0
    regions_held: int = 0  # covered at a predicted box while the detector missed the face
    regions_backfilled: int = 0  # covered from the next detection (faces appearing between detections)
    fallback_regions: int = 0  # covered by the fallback because the method failed
    frames_blanked: int = 0  # whole frame covered because it could not be checked
    frame_covered: dict[str, float] = field(default_factory=dict)  # mean and max share of a frame covered, % (the price of the cover)
    decode_errors: int = 0
    frames_lost: int = 0
    reconnects: int = 0
    source_errors: list[str] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)
    untracked: dict[str, Any] = field(default_factory=dict)  # frames covered for faces no track was confirmed for
    classes: dict[str, dict[str, int]] = field(default_factory=dict)  # per class (face, person, plate): regions covered, tracks
    streams: list[dict[str, Any]] = field(default_factory=list)  # each source stream: anonymized, copied, transcoded or dropped (why)
    anonymizer: dict[str, Any] = field(default_factory=dict)  # the method's own figures (e.g. camouflage's)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    fps: float = 0.0
    source: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    made_with: dict[str, Any] = field(default_factory=dict)  # what made the output (made_with()): --skip-existing compares it
    started: float = field(default_factory=time.time)

    def to_json(self) -> str:
        """The report as written: every string redacted (a camera URL's password never lands in a file)."""
        return json.dumps(redacted(json.loads(json.dumps(asdict(self), default=str))), indent=2)

    def write(self, path: str | Path, overwrite: bool = False) -> None:
        """Written to a new file and moved into place (never in place: through a link, an
        in-place write once turned a video into JSON); an existing file only with ``overwrite``."""
        from .paths import write_text

        try:
            write_text(path, self.to_json() + "\n", overwrite)
        except OSError as exc:  # e.g. a full disk: an output error (exit 4), not a crash
            raise OutputError(f"{path}: cannot write the report ({exc.strerror})") from None
