"""Every container/codec pair either works or is refused up front; audio and subtitle
streams are copied, transcoded or dropped with the reason in the report."""

from __future__ import annotations

import json
from pathlib import Path

import av
import pytest
from conftest import camstream, full_tier_except, probe, read_frames
from media import make_media, packet_times, streams


@pytest.fixture(scope="module")
def inputs(data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """60 frames (2.4 s at 25 fps) of real footage in several containers."""
    folder = tmp_path_factory.mktemp("inputs")
    frames = [f[:240, :320] for f in read_frames(data / "Megamind.avi", limit=60)]
    return {
        "pcm.avi": make_media(folder / "pcm.avi", frames, video="mpeg4", audio=(("pcm_s16le", 44100, "stereo"),)),
        "opus.webm": make_media(folder / "opus.webm", frames, video="libvpx-vp9", audio=(("libopus", 48000, "stereo"),)),
        "aac.mp4": make_media(folder / "aac.mp4", frames, audio=(("aac", 48000, "stereo"),)),
        "multi.mkv": make_media(folder / "multi.mkv", frames, audio=(("aac", 48000, "stereo"), ("libopus", 48000, "mono")),
                                subtitles=("subrip",)),
    }


def _run(src: Path, out: Path, *extra: str) -> dict:
    report = out.with_name(out.name + ".json")
    r = camstream("run", "--method", "solid", src, "-o", out, "--report", report, "-q", *extra)
    assert r.returncode == 0, r.stderr
    assert not list(out.parent.glob("*.partial*"))
    return json.loads(report.read_text())


def _audio_seconds(path: Path) -> float:
    return probe(path)["audio"]["duration"]


# A transcode and a copy in the default tier (15-20 s each on 2 cores), the rest in the full tier.
@pytest.mark.parametrize("src, suffix, codec, action", full_tier_except([
    ("pcm.avi", ".mp4", "aac", "transcoded to aac"),
    ("opus.webm", ".mp4", "opus", "copied"),
], [
    ("pcm.avi", ".mp4", "aac", "transcoded to aac"),  # whole file processed, then exit 1 before
    ("pcm.avi", ".mov", "pcm_s16le", "copied"),
    ("pcm.avi", ".webm", "opus", "transcoded to libopus"),
    ("opus.webm", ".mov", "aac", "transcoded to aac"),  # exit 1 at the header before
    ("opus.webm", ".mp4", "opus", "copied"),
    ("aac.mp4", ".avi", "ac3", "transcoded to ac3"),
]))
def test_audio_is_copied_or_transcoded_to_what_the_container_holds(src: str, suffix: str, codec: str, action: str,
                                                                   inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / f"out{suffix}"
    rep = _run(inputs[src], out)
    p = probe(out)
    assert p["frames"] == 60 == rep["frames_out"]
    assert p["audio"]["codec"] == codec
    assert _audio_seconds(out) == pytest.approx(2.4, abs=0.1)
    audio = [s for s in rep["streams"] if s["type"] == "audio"]
    assert [s["action"] for s in audio] == [action]


def test_avi_output_keeps_rate_count_and_start(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.avi"
    _run(inputs["aac.mp4"], out)
    with av.open(str(out)) as c:
        v = c.streams.video[0]
        assert v.average_rate == 25 and v.frames == 60  # not 600 fps / 1440 frames
        first_video = next(float(p.dts * v.time_base) for p in c.demux(v) if p.dts is not None)
    assert first_video == pytest.approx(0.0, abs=1e-6)  # no B-frame delay: video starts with the audio
    assert packet_times(out, 1)[0] == pytest.approx(0.0, abs=0.03)
    assert probe(out)["frames"] == 60


@pytest.mark.full  # 20 s
def test_ac3_into_avi(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "mm.avi"
    _run(data / "Megamind.avi", out, "--end", "2")
    p = probe(out)
    assert abs(p["frames"] - 48) <= 1 and p["fps"] == pytest.approx(23.976, rel=1e-3)
    assert p["audio"]["codec"] == "ac3" and p["audio"]["duration"] == pytest.approx(2.0, abs=0.1)  # re-encoded: a copy would be mistimed


@pytest.mark.full  # 83 s; audio kept: test_audio_is_copied_or_transcoded_to_what_the_container_holds
def test_every_audio_and_subtitle_stream_the_container_holds(inputs: dict[str, Path], tmp_path: Path) -> None:
    mkv = tmp_path / "all.mkv"
    rep = _run(inputs["multi.mkv"], mkv)
    assert [t for t, _ in streams(mkv)] == ["video", "audio", "audio", "subtitle"]
    assert [s["action"] for s in rep["streams"]] == ["anonymized", "copied", "copied", "copied"]
    mp4 = tmp_path / "all.mp4"
    rep = _run(inputs["multi.mkv"], mp4)
    assert streams(mp4) == [("video", "h264"), ("audio", "aac"), ("audio", "opus")]
    dropped = rep["streams"][3]
    assert dropped["action"] == "dropped" and dropped["reason"] == ".mp4 cannot hold subrip subtitles"
    first = tmp_path / "first.mkv"
    rep = _run(inputs["multi.mkv"], first, "--audio-streams", "first")
    assert streams(first) == [("video", "h264"), ("audio", "aac")]
    assert {s["reason"] for s in rep["streams"] if s["action"] == "dropped"} == {"--audio-streams first"}
    none = tmp_path / "none.mkv"
    _run(inputs["multi.mkv"], none, "--audio-streams", "none")
    assert streams(none) == [("video", "h264")]


@pytest.mark.full  # 21 s
def test_priming_packets_with_negative_times_are_kept(inputs: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    _run(inputs["aac.mp4"], out)
    src, dst = packet_times(inputs["aac.mp4"], 1), packet_times(out, 1)
    assert src[0] < 0  # AAC priming
    assert dst == pytest.approx(src, abs=1e-3)


def test_a_refused_stream_fails_before_the_first_frame_and_leaves_nothing(tmp_path: Path) -> None:
    from fractions import Fraction

    from streamer.errors import OutputError
    from streamer.sinks import VideoFileSink
    from streamer.sources import SourceInfo

    info = SourceInfo(uri="camera", kind="stream", width=64, height=48, fps=Fraction(25), time_base=Fraction(1, 25))
    with pytest.raises(OutputError, match="refused its streams"):
        VideoFileSink(tmp_path / "out.mp4", info, encoder_options={"profile": "no-such-profile"})
    assert list(tmp_path.iterdir()) == []  # no 0-byte partial left behind
