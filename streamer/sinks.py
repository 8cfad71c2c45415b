"""Where anonymized frames go: a video file (with the source's audio), images, RTSP.

A video file is written under a temporary name (``NAME.partial.EXT``) and renamed to
its final name only when the run succeeded. After an error or Ctrl-C the partial file is
closed properly, so it is playable and holds every frame processed so far, but its name
says that the run did not finish.
"""

from __future__ import annotations

import logging
import os
import time
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

from .errors import OutputError
from .frame import Frame
from .sources import IMAGE_SUFFIXES, SourceInfo

log = logging.getLogger(__name__)

VIDEO_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "libx264"}
AUDIO_FALLBACK = {".webm": "libopus"}  # re-encode target when the codec cannot be copied; aac otherwise


def _video_frame(image: np.ndarray, width: int, height: int) -> av.VideoFrame:
    """An RGB frame padded (edge pixels) to the encoder's even size: 4:2:0 needs it."""
    if image.shape[1] != width or image.shape[0] != height:
        image = np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def partial_path(path: Path) -> Path:
    return path.with_name(f"{path.stem}.partial{path.suffix}")


def _check_writable_dir(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")


class Sink:
    frames_written: int = 0

    def write(self, frame: Frame) -> None:
        raise NotImplementedError

    def close(self, success: bool = True) -> Path | str | None:
        """Finish the output; returns where it ended up."""
        raise NotImplementedError


class VideoFileSink(Sink):
    """H.264 (mp4/mkv/mov) or VP9 (webm), timestamps passed through, audio carried over.

    Audio is read from the source file with a second demuxer and interleaved by time, so
    the pipeline never has to carry it. It is copied when the container accepts the
    codec, else re-encoded (AAC, or Opus for webm). Container metadata (GPS, creation
    time, device) is dropped unless ``keep_metadata``.
    """

    def __init__(
        self,
        path: str | Path,
        info: SourceInfo,
        *,
        crf: int = 20,
        preset: str = "veryfast",
        keep_audio: bool = True,
        keep_metadata: bool = False,
        start: float | None = None,
        end: float | None = None,
        codec: str | None = None,
        encoder_options: dict[str, str] | None = None,
    ) -> None:
        self.path = Path(path)
        self.info = info
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_CODECS:
            raise OutputError(f"{self.path}: unsupported output type {suffix or '(none)'}; use .mp4, .mkv, .mov or .webm")
        _check_writable_dir(self.path)
        self.tmp_path = partial_path(self.path)
        self.start = start or 0.0
        self.end = end
        try:
            self.container = av.open(str(self.tmp_path), "w")
        except (av.error.FFmpegError, OSError) as exc:
            raise OutputError(f"{self.path}: cannot create ({exc})") from None
        if keep_metadata:
            self.container.metadata.update(info.metadata)
        self.width = info.width + (info.width % 2)  # 4:2:0 needs even sizes: pad by one
        self.height = info.height + (info.height % 2)
        rate = info.fps or Fraction(25)
        self.stream = self.container.add_stream(codec or VIDEO_CODECS[suffix], rate=rate)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf)}
        if self.stream.codec_context.name == "libx264":
            options["preset"] = preset
        options.update(encoder_options or {})
        self.stream.options = options
        # Timestamps pass through in the source's time base: VFR and sync survive.
        self.time_base = info.time_base or Fraction(1, int(round(float(rate))) or 25)
        self.stream.codec_context.time_base = self.time_base
        self.start_pts = int(round(self.start / self.time_base)) if self.start else 0
        self.last_pts: int | None = None
        self.last_time = 0.0
        self.frames_written = 0
        self.audio = None
        if keep_audio and info.has_audio and info.kind == "file":
            self.audio = _AudioCarrier(info.uri, self.container, suffix, self.start, self.end)

    def write(self, frame: Frame) -> None:
        vframe = _video_frame(frame.image, self.width, self.height)
        if frame.pts is not None and frame.time_base is not None:
            pts = int(round(frame.pts * frame.time_base / self.time_base)) - self.start_pts
        else:
            pts = self.frames_written
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1  # never go backwards: a damaged source can repeat pts
        vframe.pts = pts
        vframe.time_base = self.time_base
        self.last_pts = pts
        self.last_time = float(pts * self.time_base)
        try:
            for packet in self.stream.encode(vframe):
                self.container.mux(packet)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path}: encoding failed ({exc})") from None
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed ({exc})") from None
        self.frames_written += 1
        if self.audio is not None:
            self.audio.pump(until=self.last_time)

    def close(self, success: bool = True) -> Path | None:
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
            if self.audio is not None:
                frame_duration = float(1 / self.info.fps) if self.info.fps else 0.0
                self.audio.pump(until=None if success else self.last_time + frame_duration)
                self.audio.close()
        except (av.error.FFmpegError, OSError) as exc:
            log.error("finalizing %s: %s", self.tmp_path, exc)
            success = False
        finally:
            self.container.close()
        if self.frames_written == 0:
            self.tmp_path.unlink(missing_ok=True)
            return None
        if success:
            os.replace(self.tmp_path, self.path)
            return self.path
        return self.tmp_path


class _AudioCarrier:
    """Copies (or re-encodes) the source's first audio track into the output."""

    def __init__(self, source: str, out: av.container.OutputContainer, suffix: str, start: float, end: float | None):
        self.input = av.open(source, metadata_errors="replace")
        self.in_stream = self.input.streams.audio[0]
        self.start, self.end = start, end
        name = self.in_stream.codec_context.name
        self.copy = name in out.supported_codecs and suffix != ".avi"
        if self.copy:
            self.out_stream = out.add_stream_from_template(self.in_stream)
        else:
            codec = AUDIO_FALLBACK.get(suffix, "aac")
            rate = self.in_stream.codec_context.sample_rate or 48000
            if codec == "libopus" and rate not in (8000, 12000, 16000, 24000, 48000):
                rate = 48000
            self.out_stream = out.add_stream(codec, rate=rate)
            self.out_stream.layout = self.in_stream.codec_context.layout.name if self.in_stream.codec_context.layout else "stereo"
        self.out = out
        self.packets = self.input.demux(self.in_stream)
        self.done = False
        self.written = 0
        self.time_base = self.in_stream.time_base
        self.offset = int(round(self.start / self.time_base)) if self.start else 0

    def pump(self, until: float | None) -> None:
        """Mux audio up to ``until`` seconds of output time (None: all of it)."""
        while not self.done:
            if self._pending is not None:
                packet = self._pending
                self._pending = None
            else:
                try:
                    packet = next(self.packets)
                except (StopIteration, av.error.FFmpegError):
                    self._finish()
                    return
            if packet.dts is None and packet.pts is None:
                if packet.size == 0:  # the final flush packet
                    self._finish()
                    return
                continue
            t = float(((packet.pts if packet.pts is not None else packet.dts)) * self.time_base)
            if t < self.start - 1e-6:
                continue
            if self.end is not None and t >= self.end:
                self._finish()
                return
            if until is not None and t - self.start > until:
                self._pending = packet
                return
            self._write(packet)

    _pending: av.Packet | None = None

    def _write(self, packet: av.Packet) -> None:
        if self.copy:
            if packet.pts is not None:
                packet.pts -= self.offset
            if packet.dts is not None:
                packet.dts -= self.offset
            packet.stream = self.out_stream
            self.out.mux(packet)
            self.written += 1
            return
        try:
            frames = packet.decode()
        except av.error.FFmpegError:
            return  # a damaged audio packet is skipped, not fatal
        for aframe in frames:
            if aframe.pts is not None:
                aframe.pts -= self.offset
            for out_packet in self.out_stream.encode(aframe):
                self.out.mux(out_packet)
                self.written += 1

    def _finish(self) -> None:
        if self.done:
            return
        self.done = True
        if not self.copy:
            for out_packet in self.out_stream.encode(None):
                self.out.mux(out_packet)

    def close(self) -> None:
        self._finish()
        self.input.close()


class ImageSink(Sink):
    """One image file, or a folder with one image per frame (named after the inputs)."""

    def __init__(self, path: str | Path, names: list[str] | None = None, quality: int = 95) -> None:
        self.path = Path(path)
        self.names = names
        self.quality = quality
        self.is_dir = self.path.suffix.lower() not in IMAGE_SUFFIXES
        if self.is_dir:
            if not self.path.parent.is_dir():
                raise OutputError(f"{self.path}: output folder {self.path.parent} does not exist")
            try:
                self.path.mkdir(exist_ok=True)
            except OSError as exc:
                raise OutputError(f"{self.path}: cannot create folder ({exc.strerror})") from None
            if not os.access(self.path, os.W_OK):
                raise OutputError(f"{self.path}: output folder is not writable")
        else:
            _check_writable_dir(self.path)
        self.frames_written = 0

    def write(self, frame: Frame) -> None:
        if self.is_dir:
            name = self.names[frame.index] if self.names and frame.index < len(self.names) else f"{frame.index:06d}.png"
            target = self.path / name
        else:
            target = self.path
        tmp = partial_path(target)
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality] if target.suffix.lower() in (".jpg", ".jpeg") else []
        ok = cv2.imwrite(str(tmp), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{target}: cannot write image")
        os.replace(tmp, target)
        self.frames_written += 1

    def close(self, success: bool = True) -> Path:
        return self.path


class RtspSink(Sink):
    """Publishes H.264 to an RTSP server (ANNOUNCE/RECORD over TCP), low-latency settings.

    The connection is made when the sink is built, so an unreachable server fails the
    run before any work. A keyframe every 2 s lets viewers join a running stream. Frames
    from a file or images are paced to their timestamps (like ``ffmpeg -re``): a relay
    forwards what it gets as it gets it, and a file processed faster than real time
    would otherwise play fast-forward for the viewers.
    """

    def __init__(self, url: str, info: SourceInfo, *, crf: int = 23, timeout: float = 10.0) -> None:
        from .errors import StreamError

        self.url = url
        self.info = info
        rate = info.fps or Fraction(25)
        self.width = info.width + (info.width % 2)
        self.height = info.height + (info.height % 2)
        self.time_base = info.time_base or Fraction(1, 90000)
        self.frames_written = 0
        self.last_pts: int | None = None
        self.pace = not info.live
        self._clock: tuple[float, float] | None = None  # (wall, media) time of the first frame
        try:
            self.container = av.open(url, "w", format="rtsp", options={"rtsp_transport": "tcp"}, timeout=(timeout, timeout))
        except (av.error.FFmpegError, OSError) as exc:
            raise StreamError(f"{url}: cannot publish ({getattr(exc, 'strerror', None) or exc})") from None
        try:
            self.stream = self.container.add_stream("libx264", rate=rate)
            self.stream.width, self.stream.height = self.width, self.height
            self.stream.pix_fmt = "yuv420p"
            keyint = str(max(1, round(2 * float(rate))))
            self.stream.options = {"preset": "ultrafast", "tune": "zerolatency", "crf": str(crf), "g": keyint}
            self.stream.codec_context.time_base = self.time_base
            self.container.start_encoding()  # ANNOUNCE + RECORD now: fail before the run, not after
        except (av.error.FFmpegError, OSError) as exc:
            self._abort()
            raise StreamError(f"{url}: cannot publish ({getattr(exc, 'strerror', None) or exc})") from None

    def _abort(self) -> None:
        try:
            self.container.close()
        except (av.error.FFmpegError, OSError):
            pass

    def write(self, frame: Frame) -> None:
        from .errors import StreamError

        vframe = _video_frame(frame.image, self.width, self.height)
        if frame.pts is not None and frame.time_base is not None:
            pts = int(round(frame.pts * frame.time_base / self.time_base))
        else:
            pts = int(round(self.frames_written / float(self.info.fps or 25) / self.time_base))
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        vframe.pts, vframe.time_base = pts, self.time_base
        if self.pace:
            media = float(pts * self.time_base)
            if self._clock is None:
                self._clock = (time.monotonic(), media)
            delay = self._clock[0] + (media - self._clock[1]) - time.monotonic()
            if delay > 0:
                time.sleep(min(delay, 10.0))
        try:
            for packet in self.stream.encode(vframe):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError) as exc:
            raise StreamError(f"{self.url}: publishing failed ({getattr(exc, 'strerror', None) or exc})") from None
        self.frames_written += 1

    def close(self, success: bool = True) -> str:
        try:
            for packet in self.stream.encode(None):
                self.container.mux(packet)
        except (av.error.FFmpegError, OSError):
            pass
        finally:
            self._abort()
        return self.url


def open_sink(output: str | Path, info: SourceInfo, names: list[str] | None = None, **options: object) -> Sink:
    """Pick the sink from the output's form: ``rtsp://`` URL, image path/folder or video file."""
    text = str(output)
    if text.startswith(("rtsp://", "rtsps://")):
        allowed = {k: v for k, v in options.items() if k in ("crf",)}
        return RtspSink(text, info, **allowed)  # type: ignore[arg-type]
    path = Path(text)
    if path.suffix.lower() in IMAGE_SUFFIXES or (info.kind == "images" and path.suffix.lower() not in VIDEO_CODECS):
        return ImageSink(path, names=names)
    return VideoFileSink(path, info, **options)  # type: ignore[arg-type]
