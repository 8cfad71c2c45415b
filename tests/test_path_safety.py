"""Nothing destroyed: one rule for every path a run writes, in single runs, batches and on Ray.

Once: ``--report precious.avi`` turned an 8 MB video into JSON (links followed, exit 0); a
batch with ``--overwrite`` replaced an input named like another input's output; two runs
writing one output both exited 0, one silently replacing the other; after Ctrl-C the
preview kept its final name; an input name of 246+ characters failed "File name too long".
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CAMSTREAM, REPO, camstream, probe, read_frames, write_video

from streamer.errors import OutputError
from streamer.paths import NAME_MAX, claim, fit_name, publish
from streamer.sources import image_output_name


def _clip(data: Path, path: Path, frames: int = 8) -> Path:
    return write_video(path, read_frames(data / "Megamind.avi", limit=frames))


def _last(r: subprocess.CompletedProcess) -> str:
    return [line for line in r.stderr.splitlines() if line.strip()][-1]


# -- the report, the preview -------------------------------------------------------------


def test_an_existing_report_is_never_replaced_without_overwrite(data: Path, tmp_path: Path) -> None:
    src = _clip(data, tmp_path / "clip.mp4")
    precious = _clip(data, tmp_path / "precious.avi".replace(".avi", ".mp4"))
    before = precious.read_bytes()
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", precious)
    assert r.returncode == 4 and "already exists; add --overwrite" in _last(r), r.stderr
    assert precious.read_bytes() == before and not (tmp_path / "out.mp4").exists()


def test_a_report_through_a_link_never_writes_the_file_behind_it(data: Path, tmp_path: Path) -> None:
    src = _clip(data, tmp_path / "clip.mp4")
    video = _clip(data, tmp_path / "holiday.mp4")
    before = video.read_bytes()
    link = tmp_path / "r.json"
    link.symlink_to(video)
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", link)
    assert r.returncode == 4 and "already exists" in _last(r), r.stderr
    # with --overwrite the link itself is replaced by the report: the video behind it is untouched
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--report", link, "--overwrite", "-q")
    assert r.returncode == 0, r.stderr
    assert video.read_bytes() == before and not link.is_symlink() and json.loads(link.read_text())["status"] == "ok"


def test_overwrite_never_reaches_an_input_through_a_link(data: Path, tmp_path: Path) -> None:
    src = _clip(data, tmp_path / "clip.mp4")
    before = src.read_bytes()
    (tmp_path / "r.json").symlink_to(src)
    for flag in ("--report", "--preview-file"):
        r = camstream("run", src, "--method", "solid", "-o", tmp_path / "out.mp4", flag, tmp_path / "r.json", "--overwrite")
        assert r.returncode == 4 and "overwrite the input" in _last(r), r.stderr
    hard = tmp_path / "hard.mp4"
    os.link(src, hard)  # a hard link is the same file too
    r = camstream("run", src, "--method", "solid", "-o", hard, "--overwrite")
    assert r.returncode == 4 and "overwrite the input" in _last(r), r.stderr
    assert src.read_bytes() == before


def test_an_existing_preview_is_refused_and_an_interrupted_preview_keeps_partial(data: Path, tmp_path: Path) -> None:
    src = data / "Megamind.avi"
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"keep me")
    r = camstream("run", src, "--method", "solid", "-o", tmp_path / "o.mp4", "--preview-file", taken)
    assert r.returncode == 4 and "already exists" in _last(r) and taken.read_bytes() == b"keep me", r.stderr
    preview = tmp_path / "preview.mp4"
    proc = subprocess.Popen(
        [*CAMSTREAM, "run", src, "--method", "solid", "-o", tmp_path / "out.mp4", "--preview-file", preview],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        partial = tmp_path / "preview.partial.mp4"
        while time.monotonic() < deadline and not (partial.exists() and partial.stat().st_size > 20_000):
            assert proc.poll() is None, proc.stderr.read()
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert not preview.exists() and partial.exists()  # its name says the run did not finish, as the output's does
    assert not (tmp_path / "out.mp4").exists() and (tmp_path / "out.partial.mp4").exists()


# -- batches -----------------------------------------------------------------------------


def test_a_batch_with_overwrite_never_replaces_another_input(data: Path, tmp_path: Path) -> None:
    first = _clip(data, tmp_path / "clip.mp4")
    second = _clip(data, tmp_path / "clip.anonymized.mp4", frames=5)  # named like first's output
    before = second.read_bytes()
    r = camstream("run", first, second, "-o", tmp_path, "--method", "solid", "--overwrite", "-q")
    assert r.returncode == 4, r.stderr
    assert "overwrite the input" in r.stderr
    assert second.read_bytes() == before
    assert probe(tmp_path / "clip.anonymized.anonymized.mp4")["frames"] == 5  # the other input still ran


def test_skip_existing_without_ray_is_a_usage_error(data: Path, tmp_path: Path) -> None:
    r = camstream("run", _clip(data, tmp_path / "c.mp4"), "--method", "solid", "--skip-existing")
    assert r.returncode == 2 and "--skip-existing goes with --ray" in _last(r), r.stderr


# -- one writer per output ---------------------------------------------------------------


def test_two_runs_writing_one_output_the_second_is_refused(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.mp4"
    first = subprocess.Popen(
        [*CAMSTREAM, "run", data / "Megamind.avi", "--method", "solid", "-o", out, "--end", "6", "-q"],
        cwd=REPO,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not (tmp_path / "out.partial.mp4").exists():
            assert first.poll() is None, first.stderr.read()
            time.sleep(0.05)
        r = camstream("run", data / "vtest.avi", "--method", "solid", "-o", out, "--overwrite", "--end", "1")
        assert r.returncode == 4 and "another camstream run is writing it" in _last(r), r.stderr
        _, err = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert probe(out)["width"] == 360 or probe(out)["frames"] > 0  # the first run's file, whole
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".camstream-lock")]  # released and removed


def test_the_lock_is_exclusive_and_released(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    with claim([target]):
        with pytest.raises(OutputError, match="another camstream run"):
            with claim([target]):
                pass
    with claim([target]):  # free again
        pass
    assert list(tmp_path.iterdir()) == []


def test_publish_never_replaces_a_file_that_appeared_meanwhile(tmp_path: Path) -> None:
    tmp, final = tmp_path / "o.partial.mp4", tmp_path / "o.mp4"
    tmp.write_bytes(b"new")
    final.write_bytes(b"someone else's")
    with pytest.raises(OutputError, match="appeared while this run was writing"):
        publish(tmp, final, overwrite=False)
    assert final.read_bytes() == b"someone else's" and tmp.read_bytes() == b"new"
    publish(tmp, final, overwrite=True)
    assert final.read_bytes() == b"new" and not tmp.exists()


# -- long names --------------------------------------------------------------------------


def test_long_input_names_are_shortened_safely(data: Path, tmp_path: Path) -> None:
    stem = "é" * 60 + "x" * 120  # 240 bytes (246 with "-a.mp4"): with ".anonymized.mp4" past the 255 a name may have
    a = _clip(data, tmp_path / f"{stem}-a.mp4", frames=4)
    b = _clip(data, tmp_path / f"{stem}-b.mp4", frames=4)
    out = tmp_path / "out"
    r = camstream("run", a, b, "-o", out, "--method", "solid", "--report", tmp_path / "reports", "-q")
    assert r.returncode == 0, r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert len(names) == 2 and len(set(names)) == 2  # two long names stay two names
    assert all(len(n.encode()) <= NAME_MAX and n.endswith(".anonymized.mp4") for n in names), names
    assert len(list((tmp_path / "reports").iterdir())) == 2
    r = camstream("run", a, "--method", "solid", "-q")  # beside the input, the default name
    assert r.returncode == 0, r.stderr


def test_a_folder_image_with_a_long_name_keeps_it(data: Path, tmp_path: Path) -> None:
    """An image of a folder keeps its name in the output folder: with ".partial" added, its
    temporary name passed the limit and the whole folder failed with "File name too long"."""
    folder = tmp_path / "photos"
    folder.mkdir()
    long = "é" * 60 + "x" * 126 + ".jpg"  # 250 bytes
    for name in (long, "b.jpg"):
        shutil.copy(data / "messi5.jpg", folder / name)
    r = camstream("run", folder, "-o", tmp_path / "out", "--method", "solid", "-q")
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == sorted([long, "b.jpg"])


def test_fit_name_keeps_short_names_and_whole_characters() -> None:
    assert image_output_name("IMG_1.heic") == "IMG_1.heic.jpg"
    heic = image_output_name("h" * 250 + ".heic")  # a HEIC of a folder, written as JPEG
    assert heic.endswith(".jpg") and len(heic.encode()) <= NAME_MAX
    assert fit_name("clip", ".anonymized.mp4") == "clip.anonymized.mp4"
    name = fit_name("ü" * 200, ".anonymized.mp4")
    assert len(name.encode()) <= NAME_MAX - 27 and name.endswith(".anonymized.mp4")
    name.encode().decode("utf-8")  # no character cut in half
    assert fit_name("ü" * 200 + "a", ".x") != fit_name("ü" * 200 + "b", ".x")


# -- Ray ---------------------------------------------------------------------------------


@pytest.mark.full
def test_ray_batch_never_destroys_and_skips_only_what_the_same_settings_made(data: Path, tmp_path: Path) -> None:
    pytest.importorskip("ray")
    clip = _clip(data, tmp_path / "clip.mp4", frames=6)
    twin = _clip(data, tmp_path / "clip.anonymized.mp4", frames=4)  # named like clip's output in the same folder
    twin_before = twin.read_bytes()
    # an output that would replace another input: refused before anything runs, --overwrite or not
    r = camstream("run", clip, twin, "-o", tmp_path, "--ray", "auto", "--method", "solid", "-q", "--overwrite", timeout=600)
    assert r.returncode == 4 and "would overwrite the input" in _last(r), r.stderr
    # --report (the summary) naming an input: refused, --overwrite or not
    other = _clip(data, tmp_path / "other.mp4", frames=3)
    other_before = other.read_bytes()
    r = camstream(
        "run",
        clip,
        other,
        "-o",
        tmp_path / "out",
        "--ray",
        "auto",
        "--report",
        other,
        "--overwrite",
        "-q",
        "--method",
        "solid",
        timeout=600,
    )
    assert r.returncode == 4 and "overwrite the input" in _last(r), r.stderr
    assert twin.read_bytes() == twin_before and other.read_bytes() == other_before
    assert not (tmp_path / "out").exists()  # refused before anything ran
    out = tmp_path / "out"
    out.mkdir()
    mine = out / "clip.anonymized.mp4"
    mine.write_bytes(b"made by hand")
    r = camstream("run", clip, "-o", out, "--ray", "auto", "--method", "blur", "-q", timeout=600)
    assert r.returncode == 4 and mine.read_bytes() == b"made by hand", r.stderr  # an existing output: refused
    r = camstream("run", clip, "-o", out, "--ray", "auto", "--method", "blur", "-q", "--overwrite", timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "clip.anonymized.json").read_text())["made_with"]["method"] == "blur"
    # solid asked now: the blur output is not "finished" for it; refused without --overwrite, remade with it
    r = camstream("run", clip, "-o", out, "--ray", "auto", "--method", "solid", "-q", timeout=600)
    assert r.returncode == 4 and "made with another method, settings or range" in r.stderr, r.stderr
    r = camstream("run", clip, "-o", out, "--ray", "auto", "--method", "solid", "-q", "--overwrite", timeout=600)
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "clip.anonymized.json").read_text())["made_with"]["method"] == "solid"
    r = camstream("run", clip, "-o", out, "--ray", "auto", "--method", "solid", "-q", timeout=600)
    assert r.returncode == 0, r.stderr
    summary = json.loads((out / "camstream-summary.json").read_text())
    assert [f["status"] for f in summary["files"]] == ["skipped"]  # the same settings: kept
    assert probe(out / "clip.anonymized.mp4")["frames"] == 6
