"""Shared fixtures: the real footage in ../shared/data and small generated media."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("YOLO_OFFLINE", "1")
# camstream eval caches what it finds in an original: the tests keep theirs apart from the user's.
os.environ.setdefault("CAMSTREAM_CACHE_DIR", tempfile.mkdtemp(prefix="camstream-test-cache-"))

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CAMSTREAM_TEST_DATA", REPO.parent / "shared" / "data"))
CAMSTREAM = [sys.executable, "-m", "streamer"]


@pytest.fixture(scope="session")
def data() -> Path:
    if not (DATA / "Megamind.avi").exists():
        pytest.fail(f"test footage missing: {DATA} (set CAMSTREAM_TEST_DATA)")
    return DATA


def camstream(*args: str, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """Run the real CLI in a subprocess (real exit codes, real signals)."""
    return subprocess.run([*CAMSTREAM, *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO, **kwargs)


def full_tier_except(keep: list, values: list) -> list:
    """``parametrize`` values where only those in ``keep`` run in the default tier and the
    rest carry ``pytest.mark.full``: one case keeps each behaviour guarded on every run
    (the default tier stays under 10 minutes on 2 cores), the others run in the full tier."""

    def param(value: object) -> object:
        if value in keep:
            return value
        return pytest.param(*(value if isinstance(value, tuple) else (value,)), marks=pytest.mark.full)

    return [param(value) for value in values]


def sigint_default() -> None:
    """``preexec_fn`` for a child that a test sends SIGINT: its default disposition back.
    A shell that starts a job in the background without job control (``nohup ... &``,
    CI runners) starts it with SIGINT ignored, and a child inherits that: the test's
    Ctrl-C would then depend on how the suite was started."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for_output(path: Path, min_bytes: int, proc: subprocess.Popen, timeout: float = 600) -> None:
    """Until ``path`` holds ``min_bytes`` (the run is under way): however loaded the machine,
    the test then signals a run that is writing, never one still starting."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        if path.exists() and path.stat().st_size >= min_bytes:
            return
        time.sleep(0.05)
    assert proc.poll() is None, f"the run ended before writing {min_bytes} bytes to {path} (exit {proc.returncode})"
    raise AssertionError(f"{path}: not {min_bytes} bytes after {timeout:g} s")


def read_image(path: Path) -> np.ndarray:
    with av.open(str(path)) as c:
        return next(c.decode(video=0)).to_ndarray(format="rgb24")


def read_frames(path: Path, limit: int | None = None) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as c:
        for f in c.decode(video=0):
            frames.append(f.to_ndarray(format="rgb24"))
            if limit and len(frames) >= limit:
                break
    return frames


def probe(path: Path) -> dict:
    """Frame count, rate, durations and audio of a media file, by decoding it."""
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        pts = [f.pts for f in c.decode(v)]
        out = {
            "frames": len(pts),
            # from the timestamps: containers differ in what they call the average rate
            "fps": (len(pts) - 1) / float((max(pts) - min(pts)) * v.time_base) if len(pts) > 1 else None,
            "time_base": v.time_base,
            "pts": pts,
            "video_duration": float((max(pts) - min(pts)) * v.time_base) if pts else 0.0,
            "width": v.codec_context.width,
            "height": v.codec_context.height,
            "metadata": dict(c.metadata),
            "audio": None,
        }
    with av.open(str(path)) as c:
        if c.streams.audio:
            a = c.streams.audio[0]
            last = 0.0
            first = None
            for p in c.demux(a):
                if p.pts is None:
                    continue
                t = float(p.pts * a.time_base)
                first = t if first is None else first
                last = max(last, t + float((p.duration or 0) * a.time_base))
            out["audio"] = {"codec": a.codec_context.name, "duration": last - (first or 0.0)}
    return out


def write_video(path: Path, frames: list[np.ndarray], rate: int = 25, pts: list[int] | None = None,
                time_base: Fraction | None = None, rotation: int = 0, metadata: dict | None = None,
                audio_seconds: float = 0.0) -> Path:
    """Write RGB frames as H.264 (optionally VFR timestamps, display rotation, metadata, a tone)."""
    with av.open(str(path), "w") as out:
        if metadata:
            out.metadata.update(metadata)
        s = out.add_stream("libx264", rate=rate)
        s.height, s.width = frames[0].shape[:2]
        s.pix_fmt = "yuv420p" if s.width % 2 == 0 and s.height % 2 == 0 else "yuv444p"
        if time_base:
            s.codec_context.time_base = time_base
        if rotation:
            s.set_display_rotation(rotation)
        a = out.add_stream("aac", rate=48000) if audio_seconds else None
        for i, img in enumerate(frames):
            f = av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")
            f.pts = pts[i] if pts else i
            if time_base:
                f.time_base = time_base
            for p in s.encode(f):
                out.mux(p)
        for p in s.encode(None):
            out.mux(p)
        if a is not None:
            n = int(audio_seconds * 48000)
            t = np.arange(n) / 48000
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            for start in range(0, n, 1024):
                af = av.AudioFrame.from_ndarray(tone[:, start:start + 1024], format="flt", layout="mono")
                af.sample_rate = 48000
                af.pts = start
                for p in a.encode(af):
                    out.mux(p)
            for p in a.encode(None):
                out.mux(p)
    return path
