"""Where anonymized frames go: a video file (with the source's audio), images, RTSP.

A video file is written under a temporary name (``NAME.partial.EXT``, or
``NAME.partial-XXXXXX.EXT`` when that name is taken: an existing file is never written
over) and renamed to its final name only when the run succeeded. After an error or
Ctrl-C the partial file is closed properly, so it is playable and holds every frame
processed so far, but its name says that the run did not finish; after a crash or
SIGKILL it plays up to its last second (fragmented MP4/MOV, Matroska clusters).
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

from .errors import CamstreamError, ConfigError, OutputError
from .frame import Frame
from .muxing import CONTAINERS, SUFFIXES, ContainerSpec, StreamCarrier, check_encoder_options, refuse, trim_fragments
from .paths import claim_partial, publish
from .sources import IMAGE_SUFFIXES, READ_ONLY_IMAGE_SUFFIXES, SourceInfo

log = logging.getLogger(__name__)

def _video_frame(image: np.ndarray, width: int, height: int) -> av.VideoFrame:
    """An RGB frame padded (edge pixels) to the encoder's even size: 4:2:0 needs it."""
    if image.shape[1] != width or image.shape[0] != height:
        image = np.pad(image, ((0, height - image.shape[0]), (0, width - image.shape[1]), (0, 0)), mode="edge")
    return av.VideoFrame.from_ndarray(image, format="rgb24")


def _check_writable_dir(path: Path) -> None:
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise OutputError(f"{path}: output folder {folder} does not exist")
    if not os.access(folder, os.W_OK):
        raise OutputError(f"{path}: output folder {folder} is not writable")


def _frames_in(path: Path) -> int:
    """Video frames a (possibly cut short) file holds; 0 when none decodes."""
    try:
        with av.open(str(path)) as c:
            if next(c.decode(video=0), None) is None:
                return 0
    except (av.error.FFmpegError, OSError, IndexError):
        return 0
    count = 0
    try:
        with av.open(str(path)) as c:
            for packet in c.demux(video=0):
                count += bool(packet.size)
    except (av.error.FFmpegError, OSError):
        pass  # cut short: what came before counts
    return count


class Sink:
    frames_written: int = 0
    error: CamstreamError | None = None  # set by close() when finishing the output failed
    streams: list[dict] | None = None  # what became of each source stream (video files)

    def write(self, frame: Frame) -> None:
        raise NotImplementedError

    def close(self, success: bool = True) -> Path | str | None:
        """Finish the output; returns where it ended up. Never raises: a failure to finish
        is left in :attr:`error`."""
        raise NotImplementedError


class VideoFileSink(Sink):
    """H.264 (mp4/mov/mkv/avi) or VP9 (webm), timestamps passed through, audio carried over.

    MP4 and MOV are written fragmented and Matroska in one-second clusters, so a file
    cut short (crash, SIGKILL, full disk) plays up to its last second. The other
    streams are decided by :mod:`streamer.muxing` and the header is written here, so a
    container that refuses a stream fails before the first frame. Container metadata
    (GPS, creation time, device) is dropped unless ``keep_metadata``. With
    ``keep_rotation`` the (upright, anonymized) frames are turned back as the source
    stored them and the source's display matrix is written.
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
        audio_streams: str = "all",
        keep_rotation: bool = False,
        overwrite: bool = False,
    ) -> None:
        self.path = Path(path)
        self.info = info
        self.overwrite = overwrite  # the final rename may replace a file (else only a free name)
        suffix = self.path.suffix.lower()
        if suffix not in CONTAINERS:
            raise OutputError(f"{self.path}: unsupported output type {suffix or '(none)'}; use {SUFFIXES}")
        spec = CONTAINERS[suffix]
        codec = codec or spec.video
        check_encoder_options(codec, crf, preset)
        if audio_streams not in ("all", "first", "none"):
            raise ConfigError(f"output.audio_streams: {audio_streams!r} is not all, first or none")
        _check_writable_dir(self.path)
        if self.path.is_dir():
            raise OutputError(f"{self.path}: is a folder")
        self.start = start or 0.0
        self.end = end
        self.frames_written = 0
        self.frames_muxed = 0  # video packets in the file: what a player will show
        self.error = None
        self.audio: StreamCarrier | None = None
        self.tmp_path = claim_partial(self.path)
        try:
            self.container = av.open(str(self.tmp_path), "w", options={**spec.options, "flush_packets": "1"})
        except (av.error.FFmpegError, OSError) as exc:
            self.tmp_path.unlink(missing_ok=True)
            raise OutputError(f"{self.path}: cannot create ({getattr(exc, 'strerror', None) or exc})") from None
        try:
            self._setup(info, spec, suffix, codec, crf, preset, encoder_options, keep_audio, keep_metadata, audio_streams, keep_rotation)
        except BaseException as exc:
            self._discard()
            if isinstance(exc, CamstreamError) or not isinstance(exc, av.error.FFmpegError | OSError | ValueError):
                raise
            raise refuse(self.path, exc) from None

    def _setup(self, info: SourceInfo, spec: ContainerSpec, suffix: str, codec: str, crf: int, preset: str,
               encoder_options: dict[str, str] | None, keep_audio: bool, keep_metadata: bool, audio_streams: str,
               keep_rotation: bool) -> None:
        if keep_metadata:
            self.container.metadata.update(info.metadata)
        # Detection always sees upright frames (a sideways face is missed); with
        # keep_rotation they are turned back as stored just before encoding.
        self.turns = (round(info.rotation / 90) % 4) if keep_rotation else 0
        width, height = (info.height, info.width) if self.turns % 2 else (info.width, info.height)
        self.width = width + (width % 2)  # 4:2:0 needs even sizes: pad by one
        self.height = height + (height % 2)
        rate = Fraction(info.fps).limit_denominator(100000) if info.fps else Fraction(25)
        self.stream = self.container.add_stream(codec, rate=rate)
        self.stream.width, self.stream.height = self.width, self.height
        self.stream.pix_fmt = "yuv420p"
        options = {"crf": str(crf)}
        if self.stream.codec_context.name == "libx264":
            options["preset"] = preset
        if spec.cfr:
            options["bf"] = "0"  # AVI has no presentation times: B-frames would shift the video
        options.update(encoder_options or {})
        self.stream.options = options
        if self.turns:
            self.stream.set_display_rotation(info.rotation)
        # Timestamps pass through in the source's time base: VFR and sync survive. AVI
        # counts frames: its time base is the frame duration.
        self.time_base = (1 / rate) if spec.cfr else (info.time_base or 1 / rate)
        self.stream.codec_context.time_base = self.time_base
        self.start_pts = int(round(self.start / self.time_base)) if self.start else 0
        self.last_pts: int | None = None
        self.last_time = 0.0
        if info.has_audio and info.kind == "file":
            which = audio_streams if keep_audio else "none"
            self.audio = StreamCarrier(info.uri, self.container, spec, suffix, which=which, start=self.start,
                                       end=self.end, keep_metadata=keep_metadata, video_index=info.video_index)
            self.streams = self.audio.notes
        log.debug("output %s: %s %dx%d at %s fps, time base %s, options %s, muxer %s", self.tmp_path, codec,
                  self.width, self.height, rate, self.time_base, options, spec.options)
        self.container.start_encoding()  # the header now: a refused stream fails before any frame

    def _discard(self) -> None:
        for closing in (self.audio.close if self.audio else None, self.container.close):
            try:
                if closing is not None:
                    closing()
            except (av.error.FFmpegError, OSError):
                pass
        self.tmp_path.unlink(missing_ok=True)

    def _mux_video(self, packets: list[av.Packet]) -> None:
        for packet in packets:
            self.container.mux(packet)
            if packet.size:
                self.frames_muxed += 1

    def write(self, frame: Frame) -> None:
        image = np.ascontiguousarray(np.rot90(frame.image, k=-self.turns)) if self.turns else frame.image
        vframe = _video_frame(image, self.width, self.height)
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
            self._mux_video(self.stream.encode(vframe))
            if self.audio is not None:
                self.audio.pump(until=self.last_time)
        except av.error.FFmpegError as exc:
            raise OutputError(f"{self.path}: writing failed ({exc.strerror or exc})") from None
        except OSError as exc:
            raise OutputError(f"{self.path}: write failed ({exc.strerror or exc})") from None
        self.frames_written += 1

    def close(self, success: bool = True) -> Path | None:
        failure: BaseException | None = None
        try:
            self._mux_video(self.stream.encode(None))
            if self.audio is not None:
                frame_duration = float(1 / self.info.fps) if self.info.fps else 0.0
                self.audio.pump(until=None if success else self.last_time + frame_duration)
        except (av.error.FFmpegError, OSError) as exc:
            failure = exc
        for closing in (self.audio.close if self.audio else None, self.container.close):
            try:
                if closing is not None:
                    closing()
            except (av.error.FFmpegError, OSError) as exc:
                failure = failure or exc
        if failure is not None:
            reason = getattr(failure, "strerror", None) or str(failure)
            if self.frames_muxed and self.path.suffix.lower() in (".mp4", ".mov"):
                try:
                    trim_fragments(self.tmp_path)
                except OSError:
                    pass
            self.frames_muxed = _frames_in(self.tmp_path) if self.frames_muxed else 0
            kept = self.frames_muxed > 0
            where = f"{self.tmp_path} holds what was written" if kept else "nothing playable was left; removed"
            self.error = OutputError(f"{self.path}: finishing the file failed ({reason}); {where}")
            log.debug("closing %s: %r", self.tmp_path, failure)
            if not kept:
                self.tmp_path.unlink(missing_ok=True)
                return None
            return self.tmp_path
        if self.frames_muxed == 0:
            self.tmp_path.unlink(missing_ok=True)
            return None
        if success:
            try:
                publish(self.tmp_path, self.path, self.overwrite)
            except OutputError as exc:
                self.error = exc
                return self.tmp_path
            except OSError as exc:
                self.error = OutputError(f"{self.path}: cannot rename {self.tmp_path.name} to it ({exc.strerror}); the video is in {self.tmp_path}")
                return self.tmp_path
            return self.path
        return self.tmp_path


class ImageSink(Sink):
    """One image file, or a folder with one image per frame (named after the inputs)."""

    def __init__(self, path: str | Path, names: list[str] | None = None, quality: int = 95, overwrite: bool = False) -> None:
        self.path = Path(path)
        self.overwrite = overwrite
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
        tmp = claim_partial(target)  # never an existing file (an input may have that name)
        params = [cv2.IMWRITE_JPEG_QUALITY, self.quality] if target.suffix.lower() in (".jpg", ".jpeg") else []
        ok = cv2.imwrite(str(tmp), cv2.cvtColor(frame.image, cv2.COLOR_RGB2BGR), params)
        if not ok:
            tmp.unlink(missing_ok=True)
            raise OutputError(f"{target}: cannot write image")
        try:
            publish(tmp, target, self.overwrite)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
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
    if path.suffix.lower() in IMAGE_SUFFIXES or (info.kind == "images" and path.suffix.lower() not in CONTAINERS):
        if path.suffix.lower() in READ_ONLY_IMAGE_SUFFIXES:
            raise OutputError(f"{path}: HEIC/HEIF images are read, not written; name a .jpg or .png output")
        if info.kind not in ("image", "images") and path.suffix.lower() in IMAGE_SUFFIXES:
            raise ConfigError(f"{path}: an image cannot hold a video; use a video name ({SUFFIXES}) or a folder")
        return ImageSink(path, names=names, overwrite=bool(options.get("overwrite", False)))
    return VideoFileSink(path, info, **options)  # type: ignore[arg-type]
