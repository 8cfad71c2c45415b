"""The JSON run report: what was read, what was covered, how fast each stage ran."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from .errors import OutputError


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
    decode_errors: int = 0
    frames_lost: int = 0
    reconnects: int = 0
    source_errors: list[str] = field(default_factory=list)
    tracks: list[dict[str, Any]] = field(default_factory=list)
    untracked: dict[str, Any] = field(default_factory=dict)  # frames covered for faces no track was confirmed for
    streams: list[dict[str, Any]] = field(default_factory=list)  # each source stream: anonymized, copied, transcoded or dropped (why)
    anonymizer: dict[str, Any] = field(default_factory=dict)  # the method's own figures (e.g. camouflage's)
    stages: dict[str, dict[str, float]] = field(default_factory=dict)
    wall_seconds: float = 0.0
    fps: float = 0.0
    source: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str)

    def write(self, path: str | Path) -> None:
        try:
            Path(path).write_text(self.to_json() + "\n")
        except OSError as exc:  # e.g. a full disk: an output error (exit 4), not a crash
            raise OutputError(f"{path}: cannot write the report ({exc.strerror})") from None
