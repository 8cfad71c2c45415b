"""Where frames come from: video files, images, folders of images, RTSP cameras, webcams.

Every source yields upright RGB :class:`~streamer.frame.Frame` objects with the
source's own timestamps and exposes :class:`SourceInfo` (size, rate, audio, ...) and
:class:`SourceStats` (decode errors, frames lost, reconnects) for the report.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .errors import ConfigError, InputError, StreamError
from .frame import Frame

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".heic", ".heif"}
READ_ONLY_IMAGE_SUFFIXES = {".heic", ".heif"}  # decoded with pillow-heif (libheif); outputs are JPEG
TIFF_SUFFIXES = {".tif", ".tiff"}
STILL_CODECS = {"mjpeg", "png", "bmp", "gif", "webp", "tiff", "jpegls"}  # a cover picture, not the video
DISCONTINUITY = 1.0  # seconds a timestamp may go back before it counts as a restart (concatenated MPEG-TS)
JUMP_FORMATS = ("mpegts", "mpeg")  # formats whose clock may also jump forward (ffmpeg's AVFMT_TS_DISCONT)
FORWARD_JUMP = 30.0  # seconds: such a forward jump is a restart too
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
    video_index: int = 0  # the container's stream that is anonymized (not a cover picture)


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


def _stream_rotation(path: Path, index: int = 0) -> int:
    """The display-matrix rotation of the video stream ``index``. PyAV shows it on frames
    only, so one frame is decoded from a second, short-lived demuxer."""
    try:
        with av.open(str(path), metadata_errors="replace") as c:
            for vframe in c.decode(c.streams[index]):
                return int(getattr(vframe, "rotation", 0) or 0)
    except (av.error.FFmpegError, IndexError):
        pass  # the real read reports the damage
    return 0


def main_video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream | None:
    """The stream to anonymize: the first moving-picture video stream. An MP4's cover art
    (``attached_pic``) or a one-picture MJPEG/PNG track may come first: taking it
    anonymized the 1-frame cover and dropped the video."""
    videos = list(container.streams.video)
    if not videos:
        return None

    def rank(s: av.video.stream.VideoStream) -> tuple[bool, bool]:
        attached = bool(s.disposition & av.stream.Disposition.attached_pic)
        still = s.codec_context is not None and s.codec_context.name in STILL_CODECS
        return (not attached, not still)

    best = max(rank(s) for s in videos)
    return next(s for s in videos if rank(s) == best)


def _orient(image: np.ndarray, orientation: int) -> np.ndarray:
    """Turn a stored picture upright by its EXIF orientation (1-8): 2 mirrored, 3 turned
    180, 4 flipped, 5 transposed, 6 turned 90 clockwise, 7 transversed, 8 turned 90 counter-clockwise."""
    if orientation == 2:
        image = image[:, ::-1]
    elif orientation == 3:
        image = image[::-1, ::-1]
    elif orientation == 4:
        image = image[::-1]
    elif orientation == 5:
        image = image.transpose(1, 0, 2)
    elif orientation == 6:
        image = np.rot90(image, k=-1)
    elif orientation == 7:
        image = image.transpose(1, 0, 2)[::-1, ::-1]
    elif orientation == 8:
        image = np.rot90(image, k=1)
    return np.ascontiguousarray(image)


def exif_orientation(path: Path) -> int:
    """The EXIF orientation tag (1-8) of an image file, read with Pillow (headers only for
    JPEG, WebP and TIFF); 1 when there is none or it cannot be read."""
    try:
        from PIL import Image

        with Image.open(path) as im:
            value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - no EXIF, or a file Pillow does not read: stored as shown
        return 1
    return value if isinstance(value, int) and 1 <= value <= 8 else 1


def image_output_name(name: str) -> str:
    """The output file name for an image of a folder: the same, but JPEG for HEIC/HEIF
    (``IMG_1.heic.jpg``: never the name of another input of the folder; shortened when
    ``.jpg`` would take it past the file system's limit)."""
    from .paths import fit_name

    return fit_name(name, ".jpg") if Path(name).suffix.lower() in READ_ONLY_IMAGE_SUFFIXES else name


def _pillow_rgb(image) -> np.ndarray:  # noqa: ANN001 - a PIL.Image
    """A Pillow image as 8-bit RGB (16-bit and float TIFFs scaled, not clipped to white)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") or values.max() > 255 else 255.0
        grey = np.clip(values / top * 255.0, 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    return np.ascontiguousarray(np.asarray(image.convert("RGB")))


class _Timeline:
    """Output timestamps that only go forward. A file whose clock restarts (concatenated
    MPEG-TS: each part from 0; a wrapped 33-bit clock) continues one frame after the last
    timestamp instead of going back: backwards, the muxer refused the frames ("Operation not
    permitted", 3 of 37 written) and the audio with them."""

    def __init__(self, time_base: Fraction | None, forward_jumps: bool = False) -> None:
        tb = float(time_base) if time_base else 1 / 90000
        self.back = max(1, round(DISCONTINUITY / tb))
        self.forward = round(FORWARD_JUMP / tb) if forward_jumps else None
        self.offset = 0
        self.last: int | None = None  # the last timestamp out
        self.step: int | None = None
        self.restarts = 0

    def __call__(self, value: int | None) -> int | None:
        if value is None:
            return None
        out = value + self.offset
        if self.last is not None and (out < self.last - self.back or (self.forward is not None and out > self.last + self.forward)):
            self.offset += self.last + (self.step or 1) - out
            self.restarts += 1
            out = self.last + (self.step or 1)
        if self.last is not None and out > self.last:
            self.step = out - self.last if self.step is None else min(self.step, out - self.last)
        self.last = out if self.last is None else max(self.last, out)
        return out


class _TimestampGuesser:
    """libavcodec's best-effort timestamp: trust pts unless it goes backwards more often
    than dts does. AVI files with packed B-frames carry decode-order pts on frames that
    come out in display order; their dts is right."""

    def __init__(self, prefer_dts: bool = False) -> None:
        # AVI stores no presentation times at all: start with dts rather than learning it
        # one wrong frame late.
        self.pts_faults, self.dts_faults = (1, 0) if prefer_dts else (0, 0)
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
        value = pts if pts is not None and (self.pts_faults <= self.dts_faults or dts is None) else dts
        if value is not None and self.last_out is not None and value <= self.last_out:
            # e.g. the decoder's last frame of a packed-B-frame AVI has no dts and the
            # wrong pts: continue the timeline at the usual step instead.
            value = self.last_out + (self.step or 1)
        if value is not None and self.last_out is not None:
            self.step = value - self.last_out if self.step is None else min(self.step, value - self.last_out)
        self.last_out = value if value is not None else self.last_out
        return value

    last_out: int | None = None
    step: int | None = None


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
        except av.error.InvalidDataError as exc:
            raise InputError(f"{self.path}: not a video or image FFmpeg can read ({exc.strerror or exc})") from None
        except av.error.FFmpegError as exc:
            raise InputError(f"{self.path}: cannot open ({exc.strerror or exc})") from None
        stream = main_video_stream(self.container)
        if stream is None:
            what = "an audio-only file" if self.container.streams.audio else "no video stream"
            self.container.close()
            raise InputError(f"{self.path}: {what}; nothing to anonymize")
        self.stream = stream
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
            video_index=self.stream.index,
        )
        if cc.width <= 0 or cc.height <= 0:
            raise InputError(f"{self.path}: video stream has no picture size (damaged header?)")
        self.stored_size = (cc.width, cc.height)  # a frame of another size is scaled to this (the sink's)
        # The sink is sized before the first frame is read: the rotation must be known now.
        self.info.rotation = _stream_rotation(self.path, self.stream.index)
        if self.info.rotation % 180:
            self.info.width, self.info.height = self.info.height, self.info.width
        log.debug("input %s: %s %dx%d, %s fps, time base %s, rotation %d, %s frames", self.path, cc.name,
                  cc.width, cc.height, self.info.fps, self.info.time_base, self.info.rotation, self.info.frame_count)
        if start:
            # Seek to the keyframe before start; frames before start are dropped below.
            try:
                self.container.seek(int(start / float(self.stream.time_base)), stream=self.stream, backward=True)
            except av.error.FFmpegError:
                pass  # not seekable: decode from the beginning and drop

    def __iter__(self) -> Iterator[Frame]:
        index = 0
        decoded = 0  # frames out of the decoder, before --start/--end: the file's own count
        guess = _TimestampGuesser(prefer_dts="avi" in self.container.format.name)
        timeline = _Timeline(self.stream.time_base, forward_jumps=self.container.format.name.split(",")[0] in JUMP_FORMATS)
        resized = False
        packets = self.container.demux(self.stream)
        while True:
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.error.FFmpegError as exc:  # damaged container: stop where it breaks
                self.stats.decode_errors += 1
                self.stats.note_error(f"demux: {exc}")
                log.warning("%s: the file breaks off (%s); what came before is kept", self.path, exc.strerror or exc)
                break
            try:
                frames = packet.decode()  # the final empty packet flushes the decoder
            except av.error.FFmpegError as exc:
                self.stats.decode_errors += 1
                self.stats.note_error(f"packet at pts={packet.pts}: {exc}")
                continue
            for vframe in frames:
                decoded += 1
                pts = timeline(guess(vframe.pts, vframe.dts))
                t = float(pts * vframe.time_base) if pts is not None and vframe.time_base else None
                if vframe.is_corrupt:  # concealed by the decoder: shown, but not what was recorded
                    self.stats.decode_errors += 1
                    self.stats.note_error(f"frame {decoded - 1} (pts={vframe.pts}) decoded with errors (concealed)")
                if self.start is not None and t is not None and t < self.start - 1e-6:
                    continue
                if self.end is not None and t is not None and t >= self.end - 1e-6:
                    self._note_restarts(timeline)
                    return
                if (vframe.width, vframe.height) != self.stored_size:
                    if not resized:
                        resized = True
                        log.warning("%s: the picture size changes mid-file (%dx%d, was %dx%d): frames scaled to the first size",
                                    self.path, vframe.width, vframe.height, *self.stored_size)
                    vframe = vframe.reformat(width=self.stored_size[0], height=self.stored_size[1])
                image = _upright(vframe.to_ndarray(format="rgb24"), self.info.rotation)
                self.stats.frames += 1
                yield Frame(index=index, image=image, pts=pts, time_base=vframe.time_base)
                index += 1
        self._note_restarts(timeline)
        self._check_complete(decoded)

    def _note_restarts(self, timeline: _Timeline) -> None:
        if timeline.restarts:
            log.warning("%s: the timestamps restart %d time(s) (joined recordings?); the output continues them",
                        self.path, timeline.restarts)

    def _check_complete(self, decoded: int) -> None:
        """A file that ends before its own index or header says (a truncated MP4 or MKV:
        FFmpeg stops quietly at the end of what is there) is damaged: counted, so the run
        says ``partial`` with a warning, never ``ok``."""
        cut = truncated(self.path)
        if cut is not None:
            self.stats.decode_errors += 1
            self.stats.note_error(f"the file is cut short: {cut}")
            log.warning("%s: the file is cut short (%s); what it holds was anonymized", self.path, cut)
            return
        if self.start is not None or self.end is not None:
            return  # a range: the count covers part of the file
        expected = self.stream.frames or 0
        if expected and decoded < expected - max(1, expected // 100):
            self.stats.decode_errors += 1
            self.stats.note_error(f"the file ends early: {decoded} of {expected} frames decoded (truncated?)")
            log.warning("%s: the file ends early: %d of %d frames decoded (truncated?)", self.path, decoded, expected)

    def close(self) -> None:
        self.container.close()


def _vint(data: bytes, at: int) -> tuple[int, int] | None:
    """An EBML variable-length integer at ``at``: (value, length); None past the end. An
    all-ones value (unknown size, a live recording) comes back as -1."""
    if at >= len(data) or data[at] == 0:
        return None
    length = 9 - data[at].bit_length()
    if at + length > len(data):
        return None
    value = data[at] & (0xFF >> length)
    for byte in data[at + 1:at + length]:
        value = (value << 8) | byte
    return (-1 if value == (1 << (7 * length)) - 1 else value), length


def _ts_packet(head: bytes) -> int | None:
    """The packet size of an MPEG transport stream (188; 192 for M2TS/AVCHD, a 4-byte
    timestamp before each packet; 204 with Reed-Solomon bytes), from its sync bytes (0x47)."""
    for size, offset in ((188, 0), (192, 4), (204, 0)):
        if all(len(head) > offset + k * size and head[offset + k * size] == 0x47 for k in range(3)):
            return size
    return None


def truncated(path: Path) -> str | None:
    """Whether an MP4/MOV or Matroska/WebM file ends before its own structure says: a
    top-level box or the Segment declares more bytes than the file holds; or an MPEG
    transport stream ends inside a packet (it has no index: FFmpeg drops the cut frame
    quietly). None when whole (or not one of these formats, or of unknown size: a
    recording still being written)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(640)
            packet = _ts_packet(head)
            if packet is not None:
                return f"{size} bytes, {size % packet} into a {packet}-byte packet" if size % packet else None
            if head[:4] == b"\x1a\x45\xdf\xa3":  # EBML: the header element, then the Segment
                header = _vint(head, 4)
                if header is None or header[0] < 0:
                    return None
                at = 4 + header[1] + header[0]
                f.seek(at)
                seg = f.read(12)
                if seg[:4] != b"\x18\x53\x80\x67":
                    return None
                body = _vint(seg, 4)
                if body is None or body[0] < 0:
                    return None
                declared = at + 4 + body[1] + body[0]
                return f"{size} of {declared} bytes" if declared > size else None
            if head[4:8] not in (b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip"):
                return None
            at = 0
            while at + 8 <= size:
                f.seek(at)
                box = f.read(16)
                length = int.from_bytes(box[:4], "big")
                if length == 1 and len(box) == 16:
                    length = int.from_bytes(box[8:16], "big")
                elif length == 0:  # to the end of the file
                    return None
                if length < 8:
                    return None  # not a box structure after all: leave it to FFmpeg
                if at + length > size:
                    return f"{size} of {at + length} bytes ('{box[4:8].decode('latin-1')}' box cut)"
                at += length
    except OSError:
        return None
    return None


class ImageSource(Source):
    """A single still image, or a folder of them (sorted by name).

    An image decoded with errors (a truncated JPEG decodes, mostly grey or green, without
    a word from a lenient decoder) is never passed on half-decoded: it comes out covered
    whole, counted in ``stats.decode_errors`` with a warning. A file that does not decode
    at all is left out (counted the same way). Entries of a folder that are not images
    (other files, subfolders) are listed in ``skipped``.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.stats = SourceStats()
        self.skipped: list[str] = []
        if self.path.is_dir():
            entries = sorted(self.path.iterdir())
            self.files = [p for p in entries if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            self.skipped = [p.name + ("/" if p.is_dir() else "") for p in entries if p not in self.files]
            if not self.files:
                raise InputError(f"{self.path}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            kind = "images"
        else:
            self.files = [self.path]
            kind = "image"
        self._first: tuple[int, np.ndarray] | None = None
        for index, file in enumerate(self.files):  # the first image that decodes gives the size
            try:
                self._first = (index, self._read(file))
                break
            except InputError as exc:
                if kind == "image" or index == len(self.files) - 1:
                    raise
                self.stats.decode_errors += 1
                self.stats.note_error(str(exc))
                log.warning("skipping %s", exc)
        first = self._first[1]
        self.info = SourceInfo(
            uri=str(self.path), kind=kind, width=first.shape[1], height=first.shape[0], frame_count=len(self.files)
        )

    def _read(self, path: Path) -> np.ndarray:
        """The image, upright; all black (with the error counted) when it decodes only with errors."""
        try:
            return self._decode(path, strict=True)
        except (av.error.FFmpegError, StopIteration, OSError, ValueError, SyntaxError) as exc:
            strict_error = exc
        if path.suffix.lower() in READ_ONLY_IMAGE_SUFFIXES:
            raise InputError(f"{path}: not an image that can be read ({strict_error})") from None
        try:
            image = self._decode(path, strict=False)
        except (av.error.FFmpegError, StopIteration, OSError, ValueError) as exc:
            if _animated_webp(path):
                raise InputError(f"{path}: an animated WebP, whose frames FFmpeg cannot decode; "
                                 "convert it to a video (.mp4, .webm) or a GIF first") from None
            raise InputError(f"{path}: not an image FFmpeg can read ({exc})") from None
        message = f"{path}: damaged image ({getattr(strict_error, 'strerror', None) or strict_error}); covered whole"
        self.stats.decode_errors += 1
        self.stats.note_error(message)
        log.warning("%s", message)
        return np.zeros_like(image)

    @staticmethod
    def _decode(path: Path, strict: bool) -> np.ndarray:
        """Strict: any damage is an error. FFmpeg conceals a damaged JPEG and says nothing
        ('explode' makes it an error), but the same flag fails every TIFF that OpenCV,
        FFmpeg or ImageMagick writes (a tag it does not know): TIFFs are read strictly by
        libtiff (Pillow), HEIC/HEIF by libheif (pillow-heif, which applies their rotation and
        mirror). The EXIF orientation (1-8, mirrors included) is applied here."""
        suffix = path.suffix.lower()
        if suffix in READ_ONLY_IMAGE_SUFFIXES:
            return _read_heif(path)
        if strict and suffix in TIFF_SUFFIXES:
            from PIL import Image, ImageOps

            with Image.open(path) as im:
                im.load()  # libtiff: a truncated strip or a bad tile raises
                return _pillow_rgb(ImageOps.exif_transpose(im))
        with av.open(str(path)) as container:
            if strict:
                container.streams.video[0].codec_context.options = {"err_detect": "explode"}
            vframe = next(container.decode(video=0))
            image = vframe.to_ndarray(format="rgb24")
        return _orient(image, exif_orientation(path))

    def __iter__(self) -> Iterator[Frame]:
        assert self._first is not None
        for index, path in enumerate(self.files):
            if index < self._first[0]:
                continue  # did not decode at all: counted when it was tried
            try:
                image = self._first[1] if index == self._first[0] else self._read(path)
            except InputError as exc:
                self.stats.decode_errors += 1
                self.stats.note_error(str(exc))
                log.warning("skipping %s", exc)
                continue
            self.stats.frames += 1
            yield Frame(index=index, image=image)


def _animated_webp(path: Path) -> bool:
    """A WebP whose extended header (VP8X) sets the animation flag: FFmpeg's decoder takes
    its first chunk for damage, which told the user "not an image" about a real picture."""
    try:
        with open(path, "rb") as f:
            head = f.read(21)
    except OSError:
        return False
    return len(head) == 21 and head[:4] == b"RIFF" and head[8:16] == b"WEBPVP8X" and bool(head[20] & 0x02)


def _read_heif(path: Path) -> np.ndarray:
    """A HEIC/HEIF picture, upright (libheif applies its 'irot' and 'imir'), whole (a grid of
    tiles assembled: FFmpeg gives the first tile only)."""
    try:
        import pillow_heif
    except ModuleNotFoundError:
        raise InputError(f"{path}: HEIC/HEIF needs pillow-heif: pip install pillow-heif") from None
    from PIL import Image

    pillow_heif.register_heif_opener()
    with Image.open(path) as im:
        im.load()
        return _pillow_rgb(im)


class LiveSource(Source):
    """An RTSP (or other network) camera, or a local webcam, read with reconnects.

    RTSP is read over TCP with open/read timeouts. When the stream drops (error, end of
    stream, or no data for ``read_timeout`` seconds), the source reconnects with
    exponential backoff (``reconnect_backoff`` seconds, doubling, up to
    ``reconnect_max_backoff``), and gives up with a :class:`StreamError` after
    ``reconnect_attempts`` failures in a row (``-1`` retries for ever).

    Output timestamps start at 0 and keep increasing across reconnects: the gap is
    measured on the wall clock, counted as ``frames_lost`` (gap x nominal rate) and left
    in the timeline, so the output keeps real time. ``start``/``end`` (seconds on that
    timeline) skip the beginning / stop the run, like ``--start``/``--end`` on files;
    ``max_frames`` stops after that many frames.
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
        start: float | None = None,
        end: float | None = None,
    ) -> None:
        self.uri = uri
        self.open_timeout, self.read_timeout = open_timeout, read_timeout
        self.reconnect_attempts = reconnect_attempts
        self.reconnect_backoff, self.reconnect_max_backoff = reconnect_backoff, reconnect_max_backoff
        self.max_frames = max_frames
        self.start, self.end = start, end
        self.stats = SourceStats()
        self.webcam = uri.startswith("webcam:")
        self.info = SourceInfo(uri=uri, kind="webcam" if self.webcam else "stream", live=True)
        self._closing = threading.Event()
        self._lock = threading.Lock()  # held while FFmpeg reads: close() must not free the context under it
        self.container: av.container.InputContainer | None = self._open()  # the first connection must work
        try:
            self._describe(first=True)
        except BaseException:
            self.container.close()
            raise

    def _open(self) -> av.container.InputContainer:
        if self.webcam:
            device = self.uri.split(":", 1)[1] or "0"
            path = f"/dev/video{device}" if device.isdigit() else device
            kwargs: dict = {"format": "v4l2"}
        else:
            path = self.uri
            kwargs = {"options": {"rtsp_transport": "tcp"}} if self.uri.startswith(("rtsp://", "rtsps://")) else {}
        started = time.monotonic()
        try:
            return av.open(path, timeout=(self.open_timeout, self.read_timeout), **kwargs)
        except av.error.FFmpegError as exc:
            reason = exc.strerror or str(exc)
            # PyAV's timeout interrupts FFmpeg, which then reports whatever it was doing.
            if isinstance(exc, av.error.ExitError) or time.monotonic() - started >= 0.9 * self.open_timeout:
                reason = f"timed out after {self.open_timeout:g} s"
            elif self.webcam and isinstance(exc, av.error.FileNotFoundError):
                reason = f"no such device {path}"
            raise StreamError(f"{self.uri}: cannot connect ({reason})") from None
        except OSError as exc:
            raise StreamError(f"{self.uri}: cannot connect ({exc})") from None

    def _describe(self, first: bool = False) -> None:
        assert self.container is not None
        stream = main_video_stream(self.container)
        if stream is None:
            raise StreamError(f"{self.uri}: the stream carries no video")
        self.video_index = stream.index
        width, height = stream.codec_context.width, stream.codec_context.height
        if width <= 0 or height <= 0:
            raise StreamError(f"{self.uri}: the video stream has no picture size")
        if first:  # the sink is built for these; later connections are scaled to them
            self.info.width, self.info.height = width, height
            rate = stream.average_rate or stream.guessed_rate
            self.info.fps = Fraction(rate) if rate else None
            self.info.time_base = stream.time_base or Fraction(1, 90000)
            if self.end is not None:
                self.info.duration = self.end - (self.start or 0.0)
                if self.info.fps:
                    self.info.frame_count = round(self.info.duration * float(self.info.fps))

    def __iter__(self) -> Iterator[Frame]:
        out_tb = self.info.time_base or Fraction(1, 90000)
        fps = float(self.info.fps) if self.info.fps else 25.0
        step = max(1, round(1 / (fps * out_tb)))  # one frame in out_tb units
        index = 0
        last_out: int | None = None  # last output pts (out_tb)
        segment_start = 0  # output pts where the current connection's first frame lands
        base: int | None = None  # first pts of the current connection (its own time base)
        last_wall = time.monotonic()
        try:
            while not self._closing.is_set():
                assert self.container is not None
                stream = self.container.streams[self.video_index]
                tb = stream.time_base or out_tb
                codec = stream.codec_context
                read_at = time.monotonic()
                packets = _whole_pictures(self.container.demux(stream), codec.name)
                try:
                    while True:
                        with self._lock:
                            if self._closing.is_set():
                                return
                            read_at = time.monotonic()
                            packet = next(packets, None)
                            decoded = codec.decode(packet)  # None flushes the decoder at the end
                        for vframe in decoded:
                            if vframe.pts is None:
                                started = last_out is not None and last_out >= segment_start
                                pts = last_out + step if started else segment_start
                            else:
                                if base is None:
                                    base = vframe.pts
                                    if last_out is not None and segment_start <= last_out:
                                        segment_start = last_out + step  # after frames without pts
                                pts = segment_start + round((vframe.pts - base) * tb / out_tb)
                            if last_out is not None and pts <= last_out:
                                pts = last_out + 1
                            last_out = pts
                            last_wall = time.monotonic()
                            t = float(pts * out_tb)
                            if self.end is not None and t >= self.end - 1e-6:
                                return
                            if self.start is not None and t < self.start - 1e-6:
                                continue
                            if vframe.width != self.info.width or vframe.height != self.info.height:
                                vframe = vframe.reformat(width=self.info.width, height=self.info.height)
                            self.stats.frames += 1
                            yield Frame(index=index, image=vframe.to_ndarray(format="rgb24"), pts=pts, time_base=out_tb)
                            index += 1
                            if self.max_frames is not None and index >= self.max_frames:
                                return
                        if packet is None:
                            break
                    log.warning("%s: stream ended", self.uri)
                    self.stats.note_error("stream ended")
                except av.error.FFmpegError as exc:
                    reason = exc.strerror or str(exc)
                    if isinstance(exc, av.error.ExitError) or time.monotonic() - read_at >= 0.9 * self.read_timeout:
                        reason = f"no data for {self.read_timeout:g} s"  # PyAV's timeout interrupted FFmpeg
                    self.stats.note_error(f"stream dropped: {reason}")
                    log.warning("%s: stream dropped (%s)", self.uri, reason)
                if self._closing.is_set():
                    return
                resumed_at = self._reconnect()
                # Continue the timeline: the wall-clock gap from the last frame to the new
                # PLAY stays in it, and the frames that fell into it are counted as lost
                # (the frames the new connection buffered while probing are not lost).
                lost = max(0, round((resumed_at - last_wall) * fps) - 1)
                self.stats.frames_lost += lost
                segment_start = (last_out + step * (lost + 1)) if last_out is not None else 0
                base = None
        finally:
            self._close_container()

    def _reconnect(self) -> float:
        """Reconnects (or raises :class:`StreamError`); returns when the working attempt began."""
        self._close_container()
        delay = self.reconnect_backoff
        attempt = 0
        while True:
            attempt += 1
            if self._closing.wait(delay):
                return time.monotonic()
            started = time.monotonic()
            try:
                container = self._open()
            except StreamError as exc:
                self.stats.note_error(str(exc))
                log.warning("%s: reconnect attempt %d failed (%s)", self.uri, attempt, str(exc).rsplit("(", 1)[-1].rstrip(")"))
                if 0 <= self.reconnect_attempts <= attempt:
                    raise StreamError(f"{self.uri}: stream lost, {attempt} reconnect attempts failed") from None
                delay = min(delay * 2, self.reconnect_max_backoff)
                continue
            with self._lock:
                self.container = container
            try:
                self._describe()
            except StreamError as exc:
                self._close_container()
                raise StreamError(f"{exc} (after reconnecting)") from None
            self.stats.reconnects += 1
            log.warning("%s: reconnected after %d attempt(s)", self.uri, attempt)
            return started

    def _close_container(self) -> None:
        with self._lock:
            container, self.container = self.container, None
        if container is not None:
            try:
                container.close()
            except Exception:  # noqa: BLE001 - closing a dead connection must not raise
                pass

    def close(self) -> None:
        """Safe from any thread: a read in progress finishes (at most ``read_timeout``)
        and the reading thread closes the connection then."""
        self._closing.set()
        if self._lock.acquire(timeout=0.1):
            try:
                container, self.container = self.container, None
            finally:
                self._lock.release()
            if container is not None:
                try:
                    container.close()
                except Exception:  # noqa: BLE001
                    pass


def _starts_picture(data: bytes, hevc: bool) -> bool | None:
    """Whether the first slice in an Annex B packet starts a new picture (H.264
    ``first_mb_in_slice == 0``, HEVC ``first_slice_segment_in_pic_flag``); None when the
    packet holds no slice."""
    i = 0
    while True:
        i = data.find(b"\x00\x00\x01", i)
        if i < 0 or i + 5 >= len(data):
            return None
        header = data[i + 3]
        if hevc and ((header >> 1) & 0x3F) < 32:
            return bool(data[i + 5] & 0x80)
        if not hevc and 1 <= (header & 0x1F) <= 5:
            return bool(data[i + 4] & 0x80)
        i += 3


def _whole_pictures(packets: Iterator[av.Packet], codec: str) -> Iterator[av.Packet]:
    """Joins the slices of one picture that an RTP depacketizer hands out as separate
    packets (cameras and x264 write several slices per frame). Decoded one by one, each
    slice comes out as its own frame with the same timestamp, the rest of the picture
    concealed: a keyframe would be written twice, half broken."""
    if codec not in ("h264", "hevc"):
        yield from (p for p in packets if p.size)
        return
    pending: av.Packet | None = None
    for packet in packets:
        if not packet.size:
            continue  # demux's final empty packet; the caller flushes the decoder
        data = bytes(packet)
        if pending is not None and _starts_picture(data, codec == "hevc") is False:
            joined = av.Packet(bytes(pending) + data)
            joined.pts = pending.pts if pending.pts is not None else packet.pts
            joined.dts = pending.dts if pending.dts is not None else packet.dts
            joined.time_base = packet.time_base
            pending = joined
            continue
        if pending is not None:
            yield pending
        pending = packet
    if pending is not None:
        yield pending


def open_source(uri: str, start: float | None = None, end: float | None = None, **live_options: object) -> Source:
    """Open a file, image, folder of images, ``rtsp://...`` URL or ``webcam:N``."""
    if uri.startswith("webcam:"):
        device = uri.split(":", 1)[1]
        if device and not device.isdigit() and not device.startswith("/dev/"):
            raise ConfigError(f"{uri}: expected webcam:N (a number) or webcam:/dev/videoN")
    if uri.startswith(STREAM_SCHEMES) or uri.startswith("webcam:"):
        return LiveSource(uri, start=start, end=end, **live_options)  # type: ignore[arg-type]
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
