"""``camstream run INPUTS... -o OUTDIR --ray``: many files on a REAL local Ray cluster.

Short clips (``--end``) of the shared footage and a classical method keep these light;
no test measures time. The CLI runs start their own local cluster; the kill test runs
the batch in this process on ``ray.init(num_cpus=2)`` so that it can find the worker
that has a file in hand and kill its process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import CAMSTREAM, REPO, camstream, probe, read_frames
from privacy import leaks

ray = pytest.importorskip("ray", reason="camstream[ray] is not installed")

END = "2"  # seconds of each clip
METHOD = ["--method", "pixelate", "-q"]


def _clips(data: Path, tmp_path: Path) -> list[Path]:
    """Four inputs: the three shared videos (one with audio, one damaged) and a second
    name for vtest.avi (inputs are never modified: a link, not a copy)."""
    twin = tmp_path / "inputs" / "vtest-twin.avi"
    twin.parent.mkdir()
    twin.symlink_to(data / "vtest.avi")
    return [data / "vtest.avi", data / "Megamind.avi", data / "Megamind_bugy.avi", twin]


def test_plain_run_never_imports_ray(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "one.mp4"
    code = ("import sys\nfrom streamer.cli import main\ntry:\n    main(['run', '--help'])\nexcept SystemExit:\n    pass\n"
            f"assert main(['run', {str(data / 'vtest.avi')!r}, '-o', {str(out)!r}, '--method', 'solid', '--end', '0.5', '-q']) == 0\n"
            "assert 'ray' not in sys.modules and 'prometheus_client' not in sys.modules, 'imported'\n"
            "main(['serve', '--help'])\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert "imported" not in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert "--ray" in r.stdout and "--skip-existing" in r.stdout and "--metrics-port" in r.stdout, r.stdout
    assert probe(out)["frames"] == 5


@pytest.mark.full  # 90 s: a Ray cluster; a batch: test_sigterm_mid_batch_exits_143_and_leaves_nothing_half_written
def test_batch_outputs_match_single_process_runs_then_a_rerun_skips_all(data: Path, tmp_path: Path) -> None:
    clips = _clips(data, tmp_path)
    single = tmp_path / "single"
    single.mkdir()
    for clip in clips:
        r = camstream("run", clip, "-o", single / f"{clip.stem}.anonymized.mp4", "--end", END, *METHOD)
        assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    r = camstream("run", *clips, "-o", out, "--ray", "auto", "--end", END, *METHOD, timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "camstream-summary.json").read_text())
    assert summary["totals"]["done"] == 4 and summary["totals"]["failed"] == 0, summary
    assert {Path(f["input"]).name for f in summary["files"]} == {c.name for c in clips}
    for clip in clips:
        name = f"{clip.stem}.anonymized.mp4"
        ours, theirs = probe(out / name), probe(single / name)
        assert ours["frames"] == theirs["frames"] > 0, clip
        assert ours["pts"] == theirs["pts"] and ours["time_base"] == theirs["time_base"], clip
        assert ours["audio"] == theirs["audio"], clip  # Megamind's AC3 carried over, the same way
        assert all((a == b).all() for a, b in zip(read_frames(out / name), read_frames(single / name), strict=True)), clip
        report = json.loads((out / f"{clip.stem}.anonymized.json").read_text())
        assert report["status"] in ("ok", "partial") and report["output"] == str(out / name)
        row = next(f for f in summary["files"] if f["input"] == str(clip))
        assert row["frames_out"] == ours["frames"] and row["attempts"] == 1
        assert row["regions_covered"] == report["regions_covered"] and "regions_held" in row and "fallback_regions" in row
    assert probe(out / "Megamind.anonymized.mp4")["audio"]["codec"] == "ac3"
    for clip in (data / "vtest.avi", data / "Megamind.avi"):
        outputs = read_frames(out / f"{clip.stem}.anonymized.mp4")
        found, leaked = leaks(read_frames(clip, limit=len(outputs)), outputs)
        assert found > 0 and leaked == [], clip
    assert not [p for p in out.rglob("*") if ".partial" in p.name or p.name.startswith(".camstream")]

    before = {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".mp4"}
    r = camstream("run", *clips, "-o", out, "--ray", "auto", "--end", END, *METHOD, timeout=300)
    assert r.returncode == 0, r.stderr
    again = json.loads((out / "camstream-summary.json").read_text())
    assert [f["status"] for f in again["files"]] == ["skipped"] * 4
    assert again["totals"]["skipped"] == 4 and again["workers"] == 0  # nothing was started
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir() if p.suffix == ".mp4"} == before


@pytest.fixture(scope="module")
def cluster():  # noqa: ANN201
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


def _wait(condition, timeout: float, what: str) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.05)


@pytest.mark.full  # 25 s: a Ray cluster
def test_worker_killed_mid_file_is_retried_and_a_bad_input_is_reported(cluster, data: Path, tmp_path: Path) -> None:
    from streamer.config import Config
    from streamer.scale.batch import run_batch
    from streamer.scale.worker import STAGING

    config = Config()
    config.anonymize.method = "solid"
    bad = tmp_path / "broken.mp4"
    bad.write_text("not a video")
    out = tmp_path / "out"
    result: dict = {}

    def batch() -> None:
        try:
            result["summary"] = run_batch([str(data / "vtest.avi"), str(bad)], out, config, workers=1, retries=2,
                                          end=20.0, progress=False)
        except BaseException as exc:  # noqa: BLE001 - seen by the test
            result["error"] = exc

    thread = threading.Thread(target=batch)
    thread.start()
    try:
        staging = out / STAGING

        def writing() -> list[Path]:
            partials = [p for p in staging.glob("00000.*/*") if ".partial" in p.name and p.stat().st_size > 0] \
                if staging.is_dir() else []
            return partials

        _wait(lambda: writing() or not thread.is_alive(), 300, "the worker to write its first frames")
        assert thread.is_alive(), result
        partial = writing()[0]
        pid = int((partial.parent / "pid").read_text())
        assert (out / "vtest.anonymized.mp4").exists() is False
        os.kill(pid, signal.SIGKILL)  # the worker's process dies mid-file
        thread.join(timeout=600)
        assert not thread.is_alive()
    finally:
        thread.join(timeout=600)
    assert "error" not in result, result
    summary = result["summary"]
    good, broken = summary.files
    assert good["status"] == "ok" and good["attempts"] == 2, good
    assert broken["status"] == "error" and broken["exit_code"] == 3 and broken["attempts"] == 1, broken
    frames = probe(out / "vtest.anonymized.mp4")
    assert frames["frames"] == good["frames_out"] == 200  # 20 s at 10 fps, complete
    assert not (out / "broken.anonymized.mp4").exists() and not (out / "broken.anonymized.json").exists()
    assert sorted(p.name for p in out.iterdir()) == ["vtest.anonymized.json", "vtest.anonymized.mp4"]
    assert json.loads((out / "vtest.anonymized.json").read_text())["attempts"] == 2


@pytest.mark.full  # 16 s: a Ray cluster
def test_sigterm_mid_batch_exits_143_and_leaves_nothing_half_written(data: Path, tmp_path: Path) -> None:
    from streamer.scale.worker import STAGING

    out = tmp_path / "out"
    proc = subprocess.Popen([*CAMSTREAM, "run", data / "vtest.avi", "-o", out, "--ray", "auto", "--method", "solid", "-q"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _wait(lambda: proc.poll() is not None or any(".partial" in p.name for p in (out / STAGING).glob("*/*")), 300,
              "the worker to start writing")
        assert proc.poll() is None, proc.stderr.read()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 143, err
    assert err.strip().splitlines()[-1] == "camstream: error: interrupted by SIGTERM", err
    assert list(out.iterdir()) == []  # no output, no report, no staging
