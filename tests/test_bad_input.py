"""Bad input: a clear one-line error and a documented exit code, never a traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from conftest import camstream, full_tier_except, read_frames, write_video


def _assert_one_line_error(r, code: int, needle: str) -> None:  # noqa: ANN001
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("camstream: error:") and needle in lines[0], lines[0]
    assert "Traceback" not in r.stderr


def _audio_only(path: Path) -> Path:
    import av
    import numpy as np

    with av.open(str(path), "w") as out:
        a = out.add_stream("aac", rate=48000)
        for start in range(0, 48000, 1024):
            f = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="flt", layout="mono")
            f.sample_rate, f.pts = 48000, start
            for p in a.encode(f):
                out.mux(p)
        for p in a.encode(None):
            out.mux(p)
    return path


@pytest.mark.parametrize(
    "make, code, needle",
    [
        (lambda d, tmp: tmp / "missing.mp4", 3, "no such file"),
        (lambda d, tmp: _write(tmp / "zero.mp4", b""), 3, "empty"),
        (lambda d, tmp: _write(tmp / "text.mp4", b"not a video\n"), 3, "not a video"),
        (lambda d, tmp: _truncated(d, tmp), 3, "not a video"),
        (lambda d, tmp: _audio_only(tmp / "audio.m4a"), 3, "audio-only"),
    ],
    ids=["missing", "zero-byte", "text-as-mp4", "truncated-mp4", "audio-only"],
)
def test_bad_inputs(make, code: int, needle: str, data: Path, tmp_path: Path) -> None:  # noqa: ANN001
    src = make(data, tmp_path)
    r = camstream("run", "--method", "solid", src, "-o", tmp_path / "out.mp4")
    _assert_one_line_error(r, code, needle)
    assert not (tmp_path / "out.mp4").exists() and not (tmp_path / "out.partial.mp4").exists()


def _write(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path


def _truncated(data: Path, tmp: Path) -> Path:
    full = write_video(tmp / "full.mp4", read_frames(data / "Megamind.avi", limit=20))
    cut = tmp / "truncated.mp4"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 2])  # moov atom lost
    return cut


def test_output_in_missing_folder(data: Path, tmp_path: Path) -> None:
    r = camstream("run", "--method", "solid", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "nope" / "out.jpg")
    _assert_one_line_error(r, 4, "does not exist")


def test_output_in_read_only_folder(data: Path, tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    if os.geteuid() == 0:  # root ignores mode bits: use a read-only file system instead
        subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=1m", "tmpfs", str(ro)], check=True)
    else:
        ro.chmod(0o555)
    try:
        r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", ro / "out.mp4")
        _assert_one_line_error(r, 4, "not writable")
        assert list(ro.iterdir()) == []
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(ro)], check=True)


def test_output_under_a_file(data: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", blocker / "out.mp4")
    _assert_one_line_error(r, 4, "does not exist")


def test_output_would_overwrite_input(data: Path, tmp_path: Path) -> None:
    src = write_video(tmp_path / "same.mp4", read_frames(data / "Megamind.avi", limit=4))
    r = camstream("run", "--method", "solid", src, "-o", src)
    _assert_one_line_error(r, 4, "overwrite the input")


def test_unsupported_output_type(data: Path, tmp_path: Path) -> None:
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", tmp_path / "out.xyz")
    _assert_one_line_error(r, 4, "unsupported output type")


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--set", "detection.nonsense=1"], "unknown setting"),
        (["--set", "detection.threshold=high"], "expected float"),
        (["--config", "/nonexistent.yaml"], "cannot read config"),
        (["--start", "5", "--end", "2"], "--end must be after --start"),
    ],
)
def test_bad_config(args: list[str], needle: str, data: Path, tmp_path: Path) -> None:
    r = camstream("run", "--method", "solid", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "o.jpg", *args)
    _assert_one_line_error(r, 2, needle)


def test_input_named_like_the_temp_file_is_never_touched(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    src = write_video(out / "clip.partial.mp4", read_frames(data / "Megamind.avi", limit=30))
    before = src.read_bytes()
    r = camstream("run", "--method", "solid", src, "-o", out / "clip.mp4", "-q")
    assert r.returncode == 0, r.stderr
    assert src.read_bytes() == before  # the input is still there, unchanged
    assert len(read_frames(out / "clip.mp4")) == 30
    assert sorted(p.name for p in out.iterdir()) == ["clip.mp4", "clip.partial.mp4"]


def test_an_earlier_partial_file_is_not_written_over(data: Path, tmp_path: Path) -> None:
    src = write_video(tmp_path / "clip.mp4", read_frames(data / "Megamind.avi", limit=6))
    earlier = tmp_path / "out.partial.mp4"
    earlier.write_bytes(b"an earlier run's partial output")
    r = camstream("run", "--method", "solid", src, "-o", tmp_path / "out.mp4", "-q")
    assert r.returncode == 0, r.stderr
    assert earlier.read_bytes() == b"an earlier run's partial output"
    assert len(read_frames(tmp_path / "out.mp4")) == 6


def test_output_through_a_symlink_to_the_input(data: Path, tmp_path: Path) -> None:
    src = write_video(tmp_path / "clip.mp4", read_frames(data / "Megamind.avi", limit=4))
    (tmp_path / "link.mp4").symlink_to(src)
    r = camstream("run", "--method", "solid", src, "-o", tmp_path / "link.mp4")
    _assert_one_line_error(r, 4, "overwrite the input")


@pytest.mark.parametrize("report, needle", [("folder", "is a folder"), ("input", "overwrite the input"),
                                            ("output", "same file"), ("partial", "same file")])
def test_bad_report_path_fails_before_any_work(report: str, needle: str, data: Path, tmp_path: Path) -> None:
    src = write_video(tmp_path / "clip.mp4", read_frames(data / "Megamind.avi", limit=4))
    before = src.read_bytes()
    target = {"folder": tmp_path, "input": src, "output": tmp_path / "out.mp4", "partial": tmp_path / "out.partial.mp4"}[report]
    r = camstream("run", "--method", "solid", src, "-o", tmp_path / "out.mp4", "--report", target)
    _assert_one_line_error(r, 4, needle)
    assert src.read_bytes() == before
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


@pytest.fixture
def small_disk(tmp_path: Path):  # noqa: ANN201
    """A folder on a tiny file system of its own (root: tmpfs), to fill it up."""
    if os.geteuid() != 0:
        pytest.skip("filling a disk needs a tmpfs mount (root)")
    mounted: list[Path] = []

    def make(size: str) -> Path:
        folder = tmp_path / f"disk{len(mounted)}"
        folder.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)], check=True)
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


# The disk that fills at once in the default tier; filling midway takes 15 s a container.
@pytest.mark.parametrize("size, suffix", full_tier_except([("8k", ".mp4")], [("400k", ".mp4"), ("8k", ".mp4"), ("400k", ".mkv")]))
def test_disk_full_is_exit_4_and_leaves_a_playable_file_or_none(size: str, suffix: str, small_disk, data: Path,  # noqa: ANN001
                                                                tmp_path: Path) -> None:
    import json

    import av

    disk = small_disk(size)
    report = tmp_path / "report.json"
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", disk / f"out{suffix}", "--report", report, "-q")
    assert r.returncode == 4, r.stderr
    assert r.stderr.splitlines()[-1].startswith("camstream: error:") and "No space left" in r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    rep = json.loads(report.read_text())
    assert rep["status"] == "error" and "No space left" in rep["error"]
    assert not (disk / f"out{suffix}").exists()
    left = list(disk.iterdir())
    if rep["output"] is None:
        assert left == [] and rep["frames_out"] == 0
    else:
        assert left == [disk / f"out.partial{suffix}"] and rep["output"] == str(left[0])
        with av.open(str(left[0])) as c:  # every frame decodes: no half-written fragment at the end
            assert sum(1 for _ in c.decode(video=0)) == rep["frames_out"] > 0
    if size == "400k":
        assert rep["output"] is not None


def _no_frames(data: Path, path: Path) -> Path:
    import av

    with av.open(str(data / "Megamind.avi")) as src, av.open(str(path), "w") as out:
        s = out.add_stream_from_template(src.streams.video[0])
        for i in range(10):  # packets that decode to nothing: a video stream without a frame
            p = av.Packet(b"\xff" * 200)
            p.pts = p.dts = i
            p.time_base, p.stream = src.streams.video[0].time_base, s
            out.mux(p)
    return path


@pytest.mark.parametrize("case", ["no-frames", "start-past-end"])
def test_empty_results_are_exit_3(case: str, data: Path, tmp_path: Path) -> None:
    if case == "no-frames":
        src, extra, needle = _no_frames(data, tmp_path / "empty.mkv"), [], "no video frames"
    else:
        src, extra, needle = data / "Megamind.avi", ["--start", "100"], "no video frames after --start 100"
    r = camstream("run", "--method", "solid", src, "-o", tmp_path / "out.mp4", *extra)
    _assert_one_line_error(r, 3, needle)
    assert not any(p.name.startswith("out") for p in tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--crf", "-5"], "output.crf"),
        (["--set", "output.preset=warp"], "output.preset"),
        (["--audio-streams", "some"], "invalid choice"),
    ],
    ids=["crf", "preset", "audio-streams"],
)
def test_bad_output_options_are_usage_errors(args: list[str], needle: str, data: Path, tmp_path: Path) -> None:
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", tmp_path / "out.mp4", *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_unknown_model_name_is_a_usage_error() -> None:
    _assert_one_line_error(camstream("models", "fetch", "no-such-model"), 2, "no-such-model")


def test_webcam_name_must_be_a_number(tmp_path: Path) -> None:
    r = camstream("run", "--method", "solid", "webcam:abc", "-o", tmp_path / "out.mkv")
    _assert_one_line_error(r, 2, "webcam:N")


def test_preview_without_a_display_is_one_line_before_any_work(data: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", tmp_path / "out.mp4", "--preview", env=env)
    _assert_one_line_error(r, 2, "--preview needs a display")  # no progress bar around it
    assert list(tmp_path.iterdir()) == []


@pytest.mark.full  # 12 s
def test_debug_shows_debug_logs(data: Path, tmp_path: Path) -> None:
    src = write_video(tmp_path / "clip.mp4", read_frames(data / "Megamind.avi", limit=4))
    quiet = camstream("run", "--method", "solid", src, "-o", tmp_path / "a.mp4", "-q")
    loud = camstream("run", "--method", "solid", src, "-o", tmp_path / "b.mp4", "-q", "--debug")
    assert quiet.returncode == loud.returncode == 0, loud.stderr
    assert "camstream: input " not in quiet.stderr
    assert "camstream: input " in loud.stderr and "camstream: output " in loud.stderr


def test_output_that_is_a_folder_gets_the_output_inside(data: Path, tmp_path: Path) -> None:
    # -o naming an existing folder (even one called out.mp4) is a folder to write into, as
    # `-o out/` is: the folder is never replaced by a file.
    (tmp_path / "out.mp4").mkdir()
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", tmp_path / "out.mp4", "--end", "0.3", "-q")
    assert r.returncode == 0, r.stderr
    assert [p.name for p in (tmp_path / "out.mp4").iterdir()] == ["Megamind.anonymized.mp4"]


def test_report_on_a_full_disk_is_exit_4(small_disk, data: Path, tmp_path: Path) -> None:  # noqa: ANN001
    disk = small_disk("4k")
    (disk / "filler").write_bytes(b"x" * 4096)  # the report's disk is full; the video's is not
    src = write_video(tmp_path / "clip.mp4", read_frames(data / "Megamind.avi", limit=4))
    r = camstream("run", "--method", "solid", src, "-o", tmp_path / "out.mp4", "--report", disk / "r.json", "-q")
    assert r.returncode == 4, r.stderr
    assert r.stderr.splitlines()[-1].startswith("camstream: error:") and "cannot write the report" in r.stderr
    assert len(read_frames(tmp_path / "out.mp4")) == 4  # the video itself was finished


def _file_size_limit(limit: int):  # noqa: ANN202
    """For the child: writes past ``limit`` bytes fail (EFBIG), like a disk that fills up;
    no root needed."""
    import resource
    import signal

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write instead of killing the process
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.full  # 19 s; a full disk: test_disk_full_is_exit_4_and_leaves_a_playable_file_or_none[8k-.mp4]
def test_write_failure_midway_without_root_is_exit_4_with_a_playable_partial(data: Path, tmp_path: Path) -> None:
    import json

    import av

    report = tmp_path / "report.json"
    r = camstream("run", "--method", "solid", data / "Megamind.avi", "-o", tmp_path / "out.mp4", "--report", report, "-q",
                  preexec_fn=_file_size_limit(400_000))
    assert r.returncode == 4, r.stderr
    assert r.stderr.splitlines()[-1].startswith("camstream: error:") and "File too large" in r.stderr
    rep = json.loads(report.read_text())
    assert rep["status"] == "error" and rep["output"] == str(tmp_path / "out.partial.mp4")
    with av.open(rep["output"]) as c:
        assert sum(1 for _ in c.decode(video=0)) == rep["frames_out"] > 0
    assert not (tmp_path / "out.mp4").exists()
