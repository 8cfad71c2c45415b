"""A live camera's output cut into fixed-length files, so a crash or restart loses at
most the segment that was open.

Each segment is a :class:`~streamer.sinks.VideoFileSink` of its own, written as
``NAME.partial.mkv`` and renamed when complete, timestamps from 0, a fresh encoder so
it starts on a keyframe. A process killed mid-segment leaves its ``.partial`` file
unfinished (the muxer's buffer is lost with the process): the camera's next start
deletes it, so the folder holds complete segments and the one being written. Names carry the UTC wall time of their first frame and a
sequence number: ``FOLDER/CAMERA-20260101T120000.000Z-0001.mkv``.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..errors import OutputError
from ..frame import Frame
from ..sinks import Sink, VideoFileSink
from ..sources import SourceInfo

log = logging.getLogger("camstream")


def _stamp(wall: float) -> str:
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(wall)) + f".{int(wall % 1 * 1000):03d}Z"


class SegmentSink(Sink):
    def __init__(self, folder: str | Path, info: SourceInfo, *, prefix: str, seconds: float = 60.0, suffix: str = ".mkv",
                 crf: int = 23, preset: str = "veryfast") -> None:
        if seconds <= 0:
            raise OutputError(f"{folder}: segment length must be > 0 seconds")
        self.folder = Path(folder)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"{folder}: cannot create the segment folder ({exc.strerror})") from None
        for stale in self.folder.glob(f"{prefix}-*.partial{suffix}"):  # one camera, one writer: a dead run's
            log.warning("%s: removing %s, left unfinished by a process that died", prefix, stale.name)
            stale.unlink(missing_ok=True)
        self.info, self.prefix, self.seconds, self.suffix = info, prefix, seconds, suffix
        self.options = {"crf": crf, "preset": preset, "keep_audio": False, "keep_metadata": False}
        self.current: VideoFileSink | None = None
        self.segment_start = 0.0
        self.sequence = 0
        self.frames_written = 0
        self.completed: list[Path] = []

    def _open(self, start: float) -> VideoFileSink:
        self.sequence += 1
        path = self.folder / f"{self.prefix}-{_stamp(time.time())}-{self.sequence:04d}{self.suffix}"
        self.segment_start = start
        return VideoFileSink(path, self.info, start=start, **self.options)

    def write(self, frame: Frame) -> None:
        t = frame.time if frame.time is not None else self.frames_written / float(self.info.fps or 25)
        if self.current is not None and t - self.segment_start >= self.seconds - 1e-6:
            self._close_current(True)
        if self.current is None:
            self.current = self._open(t)
        self.current.write(frame)
        self.frames_written += 1

    def _close_current(self, success: bool) -> Path | None:
        current, self.current = self.current, None
        done = current.close(success=success) if current is not None else None
        if done is not None and success:
            self.completed.append(Path(done))
        return done

    def close(self, success: bool = True) -> Path:
        self._close_current(success)
        return self.folder
