"""Reading the original and the outputs in step: frames are paired by timestamp."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from ..frame import Frame
from ..sources import Source, open_source


@dataclass
class MediaInfo:
    """What a file holds, for the frame-count, duration and audio checks."""

    path: str
    kind: str
    frames: int = 0  # decoded (within the evaluated range)
    duration: float | None = None  # seconds spanned by the decoded frames
    fps: float | None = None
    has_audio: bool = False
    width: int = 0
    height: int = 0


class TimedReader:
    """Frames of one source with times relative to its first frame.

    Relative times let an output that starts at 0 pair with an original read from
    ``--start``. Sources without timestamps (images) count frames instead.
    """

    def __init__(self, uri: str, end: float | None = None, start: float | None = None) -> None:
        self.source: Source = open_source(uri, start=start, end=end)
        info = self.source.info
        self.info = MediaInfo(
            path=uri, kind=info.kind, fps=float(info.fps) if info.fps else None,
            has_audio=info.has_audio, width=info.width, height=info.height,
        )
        self._iter = iter(self.source)
        self._t0: float | None = None
        self._last: float | None = None
        self._pending: tuple[float, Frame] | None = None
        self.unpaired = 0

    @property
    def frame_interval(self) -> float:
        return 1.0 / self.info.fps if self.info.fps else 1.0

    def next(self) -> tuple[float, Frame] | None:
        try:
            frame = next(self._iter)
        except StopIteration:
            return None
        t = frame.time
        if t is None:
            t = frame.index * self.frame_interval
        if self._t0 is None:
            self._t0 = t
        t -= self._t0
        if self._last is not None and t <= self._last:
            # A repeated timestamp (an AVI's flushed last frame has one): the frame is
            # still shown after the previous one.
            t = self._last + self.frame_interval
        self.info.frames += 1
        self._last = t
        self.info.duration = t + self.frame_interval if self.info.fps else None
        return t, frame

    def at(self, t: float, tolerance: float) -> Frame | None:
        """The frame shown at ``t`` (within ``tolerance``), skipping earlier ones."""
        while True:
            if self._pending is None:
                self._pending = self.next()
                if self._pending is None:
                    return None
            ft, frame = self._pending
            if ft < t - tolerance:  # an output frame with no original partner
                self._pending = None
                self.unpaired += 1
                continue
            if ft <= t + tolerance:
                self._pending = None
                return frame
            return None  # the output has no frame here: the original frame is unpaired

    def drain(self) -> None:
        """Count the frames left after the original ended."""
        if self._pending is not None:
            self._pending = None
            self.unpaired += 1
        while self.next() is not None:
            self.unpaired += 1

    def close(self) -> None:
        self.source.close()


def frames_of(reader: TimedReader) -> Iterator[tuple[float, Frame]]:
    while (item := reader.next()) is not None:
        yield item
