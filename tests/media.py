"""Small test inputs made with PyAV: any container, audio tracks of any codec, subtitles."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_media(path: Path, frames: list[np.ndarray], *, rate: int = 25, video: str = "libx264",
               audio: tuple[tuple[str, int, str], ...] = (), subtitles: tuple[str, ...] = (),
               seconds: float | None = None) -> Path:
    """Frames as ``video`` at ``rate`` fps, plus a tone per ``audio`` entry (codec, sample
    rate, layout) and one cue per second per ``subtitles`` entry (codec, e.g. subrip)."""
    seconds = seconds if seconds is not None else len(frames) / rate
    with av.open(str(path), "w") as out:
        v = out.add_stream(video, rate=rate)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt = "yuv420p"
        if video == "libx264":
            v.options = {"preset": "ultrafast"}
        tracks = []
        for codec, sample_rate, layout in audio:
            a = out.add_stream(codec, rate=sample_rate)
            a.layout = layout
            tracks.append(a)
        subs = [out.add_mux_stream(codec) for codec in subtitles]
        for s in subs:
            s.time_base = Fraction(1, 1000)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            f.time_base = Fraction(1, rate)
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
        for a in tracks:
            sr, channels = a.codec_context.sample_rate, a.codec_context.channels
            n = int(seconds * sr)
            tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / sr)).astype(np.float32)
            block = 1024
            for start in range(0, n, block):
                chunk = np.repeat(tone[None, start:start + block], channels, axis=0)
                af = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=a.layout.name)
                af.sample_rate, af.pts = sr, start
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
        for s in subs:
            for k in range(int(seconds)):
                p = av.Packet(f"cue {k}".encode())
                p.pts = p.dts = k * 1000
                p.duration = 500
                p.time_base, p.stream = Fraction(1, 1000), s
                out.mux(p)
    return path


def streams(path: Path) -> list[tuple[str, str]]:
    """(type, codec) of every stream in a file."""
    with av.open(str(path)) as c:
        return [(s.type, s.codec_context.name if s.codec_context else "?") for s in c.streams]


def packet_times(path: Path, index: int) -> list[float]:
    with av.open(str(path)) as c:
        s = c.streams[index]
        return [float(p.pts * s.time_base) for p in c.demux(s) if p.pts is not None]


def camera_clip(source: Path, path: Path, size: tuple[int, int], seconds: float, fps: int = 25) -> Path:
    """The first ``seconds`` of ``source`` as what a camera sends: H.264 in MP4 at ``size``,
    ``fps`` frames a second, a keyframe a second, no B-frames."""
    with av.open(str(source)) as src, av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        stream.options = {"preset": "ultrafast", "g": str(fps), "bf": "0"}
        for n, frame in enumerate(src.decode(video=0)):
            if n == seconds * fps:
                break
            frame = frame.reformat(*size, "yuv420p")
            frame.pts, frame.time_base = n, Fraction(1, fps)
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return path


# -- odd media (tests/test_odd_media.py) -----------------------------------------------


def _boxes(data: bytes, start: int, end: int) -> list[tuple[bytes, bytes]]:
    """The ISO-BMFF boxes between two offsets: (type, the whole box)."""
    import struct

    found = []
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start:start + 8])
        found.append((kind, data[start:start + size]))
        start += size
    return found


def cover_art_first(path: Path, frames: list[np.ndarray], rate: int = 25) -> Path:
    """An MP4 whose first stream, as FFmpeg lists them, is its cover picture: the video,
    then an MJPEG ``attached_pic`` (stored as the 'covr' tag), then the movie box's 'udta'
    moved in front of its tracks (a valid order other taggers write)."""
    import struct

    with av.open(str(path), "w", format="mp4") as out:
        v = out.add_stream("libx264", rate=rate)
        v.height, v.width = frames[0].shape[:2]
        v.pix_fmt, v.options = "yuv420p", {"preset": "ultrafast"}
        pic = out.add_stream("mjpeg", rate=1)
        pic.width, pic.height, pic.pix_fmt = 64, 64, "yuvj420p"
        pic.disposition = av.stream.Disposition.attached_pic
        cover = av.VideoFrame.from_ndarray(np.full((64, 64, 3), 200, np.uint8), format="rgb24").reformat(format="yuvj420p")
        cover.pts = 0
        for p in [*pic.encode(cover), *pic.encode(None)]:
            out.mux(p)
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = i
            for p in v.encode(f):
                out.mux(p)
        for p in v.encode(None):
            out.mux(p)
    data = path.read_bytes()
    rebuilt = b""
    for kind, raw in _boxes(data, 0, len(data)):
        if kind == b"moov":  # the media data comes before the movie box: offsets do not move
            kids = _boxes(raw, 8, len(raw))
            kids.sort(key=lambda k: {b"mvhd": 0, b"udta": 1}.get(k[0], 2))
            body = b"".join(r for _, r in kids)
            raw = struct.pack(">I4s", 8 + len(body), b"moov") + body
        rebuilt += raw
    path.write_bytes(rebuilt)
    return path


def transport_stream(path: Path, parts: list[list[np.ndarray]], rate: int = 25, audio: bool = True) -> Path:
    """MPEG-TS parts written one after the other into one file, as ``cat a.ts b.ts`` joins
    recordings: each part an encoder of its own (its own picture size, in-band headers) and
    its own clock from 0. With ``audio``, a tone per part."""
    blob = b""
    for k, frames in enumerate(parts):
        part = path.with_name(f"{path.stem}.part{k}.ts")
        with av.open(str(part), "w", format="mpegts") as out:
            v = out.add_stream("libx264", rate=rate)
            v.height, v.width = frames[0].shape[:2]
            v.pix_fmt, v.options = "yuv420p", {"preset": "ultrafast", "bf": "0"}
            a = out.add_stream("aac", rate=48000) if audio else None
            if a is not None:
                a.layout = "mono"
            for i, img in enumerate(frames):
                f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
                f.pts, f.time_base = i, Fraction(1, rate)
                for p in v.encode(f):
                    out.mux(p)
            for p in v.encode(None):
                out.mux(p)
            if a is not None:
                n = int(len(frames) / rate * 48000)
                tone = (0.2 * np.sin(2 * np.pi * 440 * np.arange(n) / 48000)).astype(np.float32)[None, :]
                for start in range(0, n, 1024):
                    af = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="fltp", layout="mono")
                    af.sample_rate, af.pts = 48000, start
                    for p in a.encode(af):
                        out.mux(p)
                for p in a.encode(None):
                    out.mux(p)
        blob += part.read_bytes()
        part.unlink()
    path.write_bytes(blob)
    return path


def heic(path: Path, image: np.ndarray, rotation: int = 0, mirror: int | None = None) -> Path:
    """A HEIC still as phones write them: one HEVC picture (libx265, through PyAV) in a HEIF
    container with the 'irot' (counter-clockwise quarter turns) and 'imir' properties a
    viewer must apply, in that order. ``mirror`` as libheif (and so Apple's viewers) reads
    it: 0 flips top and bottom, 1 left and right."""
    import struct

    def box(kind: bytes, payload: bytes = b"") -> bytes:
        return struct.pack(">I4s", 8 + len(payload), kind) + payload

    def full(kind: bytes, version: int, payload: bytes) -> bytes:
        return box(kind, struct.pack(">I", version << 24) + payload)

    h, w = image.shape[:2]
    tmp = path.with_name(path.name + ".hevc.mp4")
    with av.open(str(tmp), "w", format="mp4") as out:
        s = out.add_stream("libx265", rate=1)
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        s.options = {"x265-params": "log-level=error"}
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
        frame.pts = 0
        for p in [*s.encode(frame), *s.encode(None)]:
            p.dts = p.pts  # libx265 leaves a lone frame's dts unset
            out.mux(p)
    data = tmp.read_bytes()
    tmp.unlink()

    def find(blob: bytes, path_: list[bytes]) -> bytes:
        skip = {b"stsd": 8, b"hvc1": 78, b"hev1": 78}
        for kind in path_:
            inside = dict((k if k != b"hev1" else b"hvc1", r) for k, r in _boxes(blob, 0, len(blob)))
            raw = inside[kind]
            blob = raw[8 + skip.get(kind, 0):]
        return blob

    sample = find(data, [b"mdat"])
    hvcc = find(data, [b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd", b"hvc1", b"hvcC"])
    props = [box(b"hvcC", hvcc), full(b"ispe", 0, struct.pack(">II", w, h))]
    if rotation:
        props.append(box(b"irot", bytes([rotation // 90 % 4])))
    if mirror is not None:
        props.append(box(b"imir", bytes([mirror])))
    ipma = full(b"ipma", 0, struct.pack(">IHB", 1, 1, len(props)) + bytes([0x81] + [i + 1 for i in range(1, len(props))]))
    infe = full(b"infe", 2, struct.pack(">HH", 1, 0) + b"hvc1\0")

    def meta(offset: int) -> bytes:
        iloc = full(b"iloc", 0, bytes([0x44, 0x00]) + struct.pack(">HHHHII", 1, 1, 0, 1, offset, len(sample)))
        return full(b"meta", 0, full(b"hdlr", 0, b"\0\0\0\0pict" + b"\0" * 13) + full(b"pitm", 0, struct.pack(">H", 1))
                    + iloc + full(b"iinf", 0, struct.pack(">H", 1) + infe) + box(b"iprp", box(b"ipco", b"".join(props)) + ipma))

    ftyp = box(b"ftyp", b"heic\0\0\0\0mif1heic")
    head = ftyp + meta(0)
    path.write_bytes(ftyp + meta(len(head) + 8) + box(b"mdat", sample))
    return path
