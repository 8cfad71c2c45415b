"""Where frames come from: video files, images, folders of images, RTSP cameras, webcams.

Every source yields upright RGB :class:`~streamer.frame.Frame` objects with the
source's own timestamps and exposes :class:`SourceInfo` (size, rate, audio, ...) and
:class:`SourceStats` (decode errors, frames lost, reconnects) for the report.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import InputError, StreamError
from .frame import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "srt://", "udp://", "http://", "https://")


@dataclass
class SourceInfo:
    """What the sinks need to know to write a faithful output."""

    uri: str
    kind: str  # "file" | "image" | "images" | "stream" | "webcam"
    width: int = 0
    height: int = 0
    fps: Fraction | None = None  # nominal (average) rate; None for stills
    time_base: Fraction | None = None
    frame_count: int | None = None  # best guess, for progress bars
    duration: float | None = None  # seconds
    rotation: int = 0  # degrees the stored picture was turned to make it upright
    has_audio: bool = False
    metadata: dict[str, str] = field(default_factory=dict)
    live: bool = False


@dataclass
class SourceStats:
    frames: int = 0
    decode_errors: int = 0
    frames_lost: int = 0  # live streams: frames missing between reconnects (estimate)
    reconnects: int = 0
    errors: list[str] = field(default_factory=list)

    def note_error(self, message: str) -> None:
        if len(self.errors) < 20:  # keep the report small on a badly damaged file
            self.errors.append(message)


def _upright(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored picture so that it displays upright (display-matrix rotation)."""
    turns = (round(rotation / 90) % 4) if rotation else 0
    if turns == 0:
        return image
    # PyAV's rotation is counter-clockwise degrees to apply for display.
    return np.ascontiguousarray(np.rot90(image, k=turns))


class _TimestampGuesser:
    """libavcodec's best-effort timestamp: trust pts unless it goes backwards more often
    than dts does. AVI files with packed B-frames carry decode-order pts on frames that
    come out in display order; their dts is right."""

    def __init__(self) -> None:
        self.pts_faults = self.dts_faults = 0
        self.last_pts: int | None = None
        self.last_dts: int | None = None

    def peek(self, pts: int | None, dts: int | None) -> int | None:
        pts_faults = self.pts_faults + (pts is not None and self.last_pts is not None and pts <= self.last_pts)
        dts_faults = self.dts_faults + (dts is not None and self.last_dts is not None and dts <= self.last_dts)
        if pts is not None and (pts_faults <= dts_faults or dts is None):
            return pts
        return dts

    def __call__(self, pts: int | None, dts: int | None) -> int | None:
        if pts is not None and self.last_pts is not None and pts <= self.last_pts:
            self.pts_faults += 1
        if dts is not None and self.last_dts is not None and dts <= self.last_dts:
            self.dts_faults += 1
        self.last_pts = pts if pts is not None else self.last_pts
        self.last_dts = dts if dts is not None else self.last_dts
        if pts is not None and (self.pts_faults <= self.dts_faults or dts is None):
            return pts
        return dts


class Source:
    info: SourceInfo
    stats: SourceStats

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def __enter__(self) -> Source:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class VideoFileSource(Source):
    """Any container/codec FFmpeg reads. Damaged packets are skipped and counted."""

    def __init__(self, path: str | Path, start: float | None = None, end: float | None = None) -> None:
        self.path = Path(path)
        self.start, self.end = start, end
        self.stats = SourceStats()
        try:
            self.container = av.open(str(self.path), metadata_errors="replace")
        except (av.error.InvalidDataError, av.error.ValueError) as exc:
            raise InputError(f"{self.path}: not a video or image FFmpeg can read ({exc.strerror or exc})") from None
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot open ({exc.strerror or exc})") from None
        if not self.container.streams.video:
            self.container.close()
            what = "an audio-only file" if self.container.streams.audio else "no video stream"
            raise InputError(f"{self.path}: {what}; nothing to anonymize")
        self.stream = self.container.streams.video[0]
        self.stream.thread_type = "AUTO"
        cc = self.stream.codec_context
        fps = self.stream.average_rate or self.stream.guessed_rate
        duration = None
        if self.stream.duration and self.stream.time_base:
            duration = float(self.stream.duration * self.stream.time_base)
        elif self.container.duration:
            duration = self.container.duration / av.time_base
        frames = self.stream.frames or (round(duration * float(fps)) if duration and fps else None)
        if frames and fps and (start or end):
            first = (start or 0.0) * float(fps)
            last = min(frames, (end * float(fps)) if end else frames)
            frames = max(0, round(last - first))
        self.info = SourceInfo(
            uri=str(self.path),
            kind="file",
            width=cc.width,
            height=cc.height,
            fps=Fraction(fps) if fps else None,
            time_base=self.stream.time_base,
            frame_count=frames or None,
            duration=duration,
            has_audio=bool(self.container.streams.audio),
            metadata=dict(self.container.metadata),
        )
        if cc.width <= 0 or cc.height <= 0:
            raise InputError(f"{self.path}: video stream has no picture size (damaged header?)")
        if start:
            # Seek to the keyframe before start; frames before start are dropped below.
            try:
                self.container.seek(int(start / float(self.stream.time_base)), stream=self.stream, backward=True)
            except av.error.FFmpegError:
                pass  # not seekable: decode from the beginning and drop

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        first_rotation_checked = False
        guess = _TimestampGuesser()
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # damaged container: stop where it breaks
                self.stats.decode_errors += 1
                self.stats.note_error(f"demux: {exc}")
                break
            try:
                decoded = packet.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as exc:
                self.stats.decode_errors += 1
                self.stats.note_error(f"packet at pts={packet.pts}: {exc}")
                continue
            for vframe in decoded:
                pts = guess.peek(vframe.pts, vframe.dts)
                t = float(pts * vframe.time_base) if pts is not None and vframe.time_base else None
                if self.start is not None and t is not None and t < self.start - 1e-6:
                    continue
                if self.end is not None and t is not None and t >= self.end - 1e-6:
                    return
                if not first_rotation_checked:
                    self.info.rotation = int(getattr(vframe, "rotation", 0) or 0)
                    if self.info.rotation % 180:
                        self.info.width, self.info.height = self.info.height, self.info.width
                    first_rotation_checked = True
                image = _upright(vframe.to_ndarray(format="rgb24"), self.info.rotation)
                self.stats.frames += 1
                yield Frame(index=index, image=image, pts=guess(vframe.pts, vframe.dts), time_base=vframe.time_base)
                index += 1

    def close(self) -> None:
        self.container.close()


class ImageSource(Source):
    """A single still image, or a folder of them (sorted by name)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stats = SourceStats()
        if self.path.is_dir():
            self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not self.files:
                raise InputError(f"{self.path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            kind = "images"
        else:
            self.files = [self.path]
            kind = "image"
        first = self._read(self.files[0])
        self._first = first
        self.info = SourceInfo(
            uri=str(self.path), kind=kind, width=first.shape[1], height=first.shape[0], frame_count=len(self.files)
        )

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        try:
            with av.open(str(path)) as container:
                vframe = next(container.decode(video=0))
                return _upright(vframe.to_ndarray(format="rgb24"), int(getattr(vframe, "rotation", 0) or 0))
        except (av.error.FFmpegError, StopIteration) as exc:
            raise InputError(f"{path}: not an image FFmpeg can read ({exc})") from None

    def __iter__(self) -> Iterator[Frame]:
        for index, path in enumerate(self.files):
            try:
                image = self._first if index == 0 else self._read(path)
            except InputError as exc:
                self.stats.decode_errors += 1
                self.stats.note_error(str(exc))
                log.warning("skipping %s", exc)
                continue
            self.stats.frames += 1
            yield Frame(index=index, image=image)


class LiveSource(Source):
    """An RTSP (or other network) camera, or a local webcam, read with reconnects.

    RTSP is read over TCP with open/read timeouts. When the stream drops, the source
    reconnects with exponential backoff (``reconnect_backoff`` seconds, doubling, up to
    ``reconnect_max_backoff``), counts the frames lost from the wall-clock gap, and gives
    up after ``reconnect_attempts`` failures in a row (``-1`` retries for ever).
    """

    def __init__(
        self,
        uri: str,
        open_timeout: float = 10.0,
        read_timeout: float = 10.0,
        reconnect_attempts: int = 10,
        reconnect_backoff: float = 0.5,
        reconnect_max_backoff: float = 10.0,
        max_frames: int | None = None,
    ) -> None:
        self.uri = uri
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_backoff, self.reconnect_max_backoff = reconnect_backoff, reconnect_max_backoff
        self.max_frames = max_frames
        self.stats = SourceStats()
        self.webcam = uri.startswith("webcam:")
        self.info = SourceInfo(uri=uri, kind="webcam" if self.webcam else "stream", live=True)
        self.container = self._open()  # the first connection must work: fail fast otherwise
        self._describe()
        self._closed = False

    def _open(self) -> av.container.InputContainer:
        if self.webcam:
            device = self.uri.split(":", 1)[1] or "0"
            path = f"/dev/video{device}" if device.isdigit() else device
            kwargs: dict = {"format": "v4l2"}
        else:
            path = self.uri
            kwargs = {"options": {"rtsp_transport": "tcp"}} if self.uri.startswith(("rtsp://", "rtsps://")) else {}
        try:
            return av.open(path, timeout=(self.open_timeout, self.read_timeout), **kwargs)
        except av.error.FFmpegError as exc:
            raise StreamError(f"{self.uri}: cannot connect ({exc.strerror or exc})") from None
        except OSError as exc:
            raise StreamError(f"{self.uri}: cannot connect ({exc})") from None

    def _describe(self) -> None:
        if not self.container.streams.video:
            raise StreamError(f"{self.uri}: the stream carries no video")
        stream = self.container.streams.video[0]
        self.info.width, self.info.height = stream.codec_context.width, stream.codec_context.height
        rate = stream.average_rate or stream.guessed_rate
        self.info.fps = Fraction(rate) if rate else None
        self.info.time_base = stream.time_base

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        pts_offset = 0  # keeps output timestamps increasing across reconnects
        last_pts: int | None = None
        while not self._closed:
            dropped_at = None
            try:
                stream = self.container.streams.video[0]
                time_base = stream.time_base
                for vframe in self.container.decode(stream):
                    if vframe.pts is None:
                        pts = last_pts + 1 if last_pts is not None else 0
                    else:
                        pts = vframe.pts + pts_offset
                        if last_pts is not None and pts <= last_pts:
                            pts = last_pts + 1
                    last_pts = pts
                    self.stats.frames += 1
                    yield Frame(index=index, image=vframe.to_ndarray(format="rgb24"), pts=pts, time_base=time_base)
                    index += 1
                    if self.max_frames is not None and index >= self.max_frames:
                        return
                dropped_at = time.monotonic()
                log.warning("%s: stream ended", self.uri)
            except av.error.FFmpegError as exc:
                dropped_at = time.monotonic()
                self.stats.note_error(f"stream dropped: {exc}")
                log.warning("%s: stream dropped (%s)", self.uri, exc)
            if self._closed:
                return
            self._reconnect()
            # Continue the timeline: frames lost = wall-clock gap x nominal rate.
            gap = time.monotonic() - dropped_at
            fps = float(self.info.fps) if self.info.fps else 25.0
            lost = int(gap * fps)
            self.stats.frames_lost += lost
            new_tb = self.container.streams.video[0].time_base
            if last_pts is not None and time_base:
                pts_offset = int((last_pts + 1) * time_base / new_tb + gap / new_tb)
                last_pts = None

    def _reconnect(self) -> None:
        try:
            self.container.close()
        except av.error.FFmpegError:
            pass
        delay = self.reconnect_backoff
        attempt = 0
        while not self._closed:
            attempt += 1
            time.sleep(delay)
            try:
                self.container = self._open()
                self._describe()
                self.stats.reconnects += 1
                log.warning("%s: reconnected after %d attempt(s)", self.uri, attempt)
                return
            except StreamError as exc:
                self.stats.note_error(str(exc))
                if 0 <= self.reconnect_attempts <= attempt:
                    raise StreamError(f"{self.uri}: stream lost, {attempt} reconnect attempts failed") from None
                delay = min(delay * 2, self.reconnect_max_backoff)

    def close(self) -> None:
        self._closed = True
        try:
            self.container.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not raise
            pass


def open_source(uri: str, start: float | None = None, end: float | None = None, **live_options: object) -> Source:
    """Open a file, image, folder of images, ``rtsp://...`` URL or ``webcam:N``."""
    if uri.startswith(STREAM_SCHEMES) or uri.startswith("webcam:"):
        return LiveSource(uri, **live_options)  # type: ignore[arg-type]
    path = Path(uri)
    if not path.exists():
        raise InputError(f"{uri}: no such file or folder")
    if path.is_dir():
        return ImageSource(path)
    if path.stat().st_size == 0:
        raise InputError(f"{uri}: file is empty (0 bytes)")
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return ImageSource(path)
    return VideoFileSource(path, start=start, end=end)
