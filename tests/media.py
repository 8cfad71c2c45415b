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
