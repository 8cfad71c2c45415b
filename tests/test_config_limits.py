"""Config loading is bounded and every value is checked: one line and exit 2 (4, 5 where
the output or the extra is the problem), never a hang, a traceback or "internal error".

Each case below once hung (an alias bomb grew past 670 MB, ``-c /dev/zero`` never
returned), crashed with exit 1, or was accepted and failed later (or never).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CAMSTREAM, DATA, REPO
from test_cli_inputs import WITHOUT_DIFFUSION

from streamer.paths import claim

BOMB = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


def _run(*args: object, timeout: float = 60, script: list[str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*(script or CAMSTREAM), *map(str, args)], capture_output=True, text=True, timeout=timeout, cwd=REPO)


def _one_line(r: subprocess.CompletedProcess, code: int, needle: str) -> None:
    assert r.returncode == code, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("camstream: error: ") and needle in lines[-1], r.stderr
    assert "Traceback" not in r.stderr and "internal error" not in r.stderr
    assert len(lines[-1]) < 400, lines[-1]  # never the expanded value


def _image_run(tmp_path: Path, *args: object, timeout: float = 60) -> subprocess.CompletedProcess:
    return _run("run", DATA / "grace_hopper_512x512.jpg", "--method", "solid", "-o", tmp_path / "o.jpg", *args, timeout=timeout)


# -- files ------------------------------------------------------------------------------


def test_an_alias_bomb_in_a_config_is_refused_at_once(tmp_path: Path) -> None:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(BOMB + "anonymize:\n  color: *i\n")
    _one_line(_image_run(tmp_path, "-c", bomb, timeout=30), 2, "expands to more than")
    assert not (tmp_path / "o.jpg").exists()


def test_an_alias_bomb_in_the_cameras_file_is_refused_at_once(tmp_path: Path) -> None:
    spec = tmp_path / "cameras.yaml"
    spec.write_text(BOMB + "cameras: [{name: a, input: rtsp://127.0.0.1:1/x, output: o, set: {detection.every: *i}}]\n")
    _one_line(_run("serve", spec, timeout=30), 2, "expands to more than")


def test_an_alias_that_expands_a_little_is_fine(tmp_path: Path) -> None:
    from streamer.config import load_config

    config = tmp_path / "c.yaml"
    config.write_text("detection: {threshold: &t 0.3, person_threshold: *t}\n")
    loaded = load_config([config])
    assert loaded.detection.threshold == loaded.detection.person_threshold == 0.3


@pytest.mark.parametrize("case", ["dev-zero", "fifo", "folder", "huge", "binary", "not-utf8", "nul", "proc"])
def test_config_files_that_are_not_small_text_files(case: str, tmp_path: Path) -> None:
    path = {
        "dev-zero": Path("/dev/zero"),
        "fifo": tmp_path / "fifo.yaml",
        "folder": tmp_path,
        "huge": tmp_path / "huge.yaml",
        "binary": tmp_path / "bin.yaml",
        "not-utf8": tmp_path / "latin.yaml",
        "nul": tmp_path / "nul.yaml",
        "proc": Path("/proc/self/environ"),  # a regular file of size 0 that reads NUL-separated text
    }[case]
    if case == "fifo":
        os.mkfifo(path)  # opened for reading, it would wait for a writer for ever
    elif case == "huge":
        path.write_text("# padding\n" * 200_000 + "detection: {every: 2}\n")
    elif case == "binary":
        path.write_bytes(bytes(range(256)) * 8)
    elif case == "not-utf8":
        path.write_bytes("anonymize: {replace_with: caf\xe9.png}\n".encode("latin-1"))
    elif case == "nul":
        path.write_bytes(b"detection:\n  threshold: 0.5\x00\n")
    needle = {
        "dev-zero": "not a regular file",
        "fifo": "not a regular file",
        "folder": "a folder",
        "huge": "larger than",
        "binary": "not UTF-8",
        "not-utf8": "not UTF-8",
        "nul": "unacceptable character",
        "proc": "unacceptable character",
    }[case]
    _one_line(_image_run(tmp_path, "-c", path, timeout=30), 2, needle)
    r = _run("serve", path, timeout=30)
    _one_line(r, 2, needle)


def test_an_unknown_preset_lists_the_presets(tmp_path: Path) -> None:
    _one_line(_image_run(tmp_path, "-c", "turbo"), 2, "no such config file or preset (presets: paranoid, quality, realtime)")


# -- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "detection.threshold=[x"], "--set detection.threshold: invalid YAML"),
        (["--set", "a.b=*x"], "--set a.b: invalid YAML"),
        (["--set", "stream.open_timeout=-1"], "stream.open_timeout"),
        (["--set", "stream.read_timeout=.nan"], "stream.read_timeout"),
        (["--set", "stream.reconnect_attempts=-2"], "stream.reconnect_attempts"),
        (["--set", "anonymize.scope=bogus"], "anonymize.scope"),
        (["--set", "anonymize.shape=star"], "anonymize.shape"),
        (["--set", "anonymize.fallback=camouflage"], "anonymize.fallback"),
        (["--set", "detection.detector=yolo"], "detection.detector"),
        (["--set", "models.device=gpu"], "models.device"),
        (["--set", "camouflage.mode=fast"], "camouflage.mode"),
        (["--set", "base.steps=0"], "base.steps"),
        (["--set", "light.strength=.inf"], "light.strength"),
        (["--set", "output.audio_streams=some"], "output.audio_streams"),
        (["--models-dir", "/dev/zero"], "models.dir (--models-dir): '/dev/zero' is not a folder"),
    ],
)
def test_bad_values_are_one_line_and_exit_2(args: list[str], needle: str, tmp_path: Path) -> None:
    _one_line(_image_run(tmp_path, *args), 2, needle)
    assert not (tmp_path / "o.jpg").exists()


@pytest.mark.parametrize(
    "args", [["--start", "nan"], ["--start", "inf"], ["--start", "1e308"], ["--end", "nan"], ["--start", "1:-30"], ["--end=-inf"]]
)
def test_bad_times_are_usage_errors(args: list[str], tmp_path: Path) -> None:
    r = _image_run(tmp_path, *args)
    assert r.returncode == 2, r.stderr
    assert "not a time" in r.stderr and "Traceback" not in r.stderr and "internal error" not in r.stderr


# -- serve's cameras file ----------------------------------------------------------------


def _camera(**extra: object) -> str:
    return json.dumps({"cameras": [{"name": "a", "input": "rtsp://127.0.0.1:1/x", "output": "o", "method": "solid", **extra}]})


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        ({"set": ["a", "b"]}, "'set' is a mapping"),
        ({"max_restarts": "INF"}, "max_restarts"),
        ({"segment_seconds": "NAN"}, "segment_seconds"),
        ({"segment_seconds": -1}, "segment_seconds"),
        ({"cpus": 0}, "cpus"),
        ({"max_restarts": True}, "max_restarts"),
        ({"set": {"stream.open_timeout": -1}}, "stream.open_timeout"),
        ({"set": {"anonymize.scope": "bogus"}}, "anonymize.scope"),
        ({"input": "/dev/video0"}, "not a stream URL"),
    ],
)
def test_bad_camera_values_are_one_line_and_exit_2(extra: dict, needle: str, tmp_path: Path) -> None:
    spec = tmp_path / "cameras.yaml"
    # YAML's own infinities and NaN (JSON has none): .inf and .nan
    spec.write_text(_camera(**extra).replace('"INF"', ".inf").replace('"NAN"', ".nan"))
    _one_line(_run("serve", spec), 2, needle)
    assert not (tmp_path / "o").exists()  # nothing created before the checks passed


def test_a_taken_metrics_port_is_exit_2_before_any_camera(tmp_path: Path) -> None:
    spec = tmp_path / "cameras.yaml"
    spec.write_text(_camera())
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        r = _run("serve", spec, "--metrics-port", taken.getsockname()[1])
    _one_line(r, 2, "cannot listen")
    assert "ray" not in r.stderr.lower()  # no cluster was started for nothing


def test_serve_checks_every_camera_before_starting_any(tmp_path: Path) -> None:
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the second camera's folder would go")
    spec = tmp_path / "cameras.yaml"
    spec.write_text(
        json.dumps(
            {
                "cameras": [
                    {"name": "a", "input": "rtsp://127.0.0.1:1/x", "output": "ok", "method": "solid"},
                    {"name": "b", "input": "rtsp://127.0.0.1:1/y", "output": "blocked/segments", "method": "solid"},
                ]
            }
        )
    )
    _one_line(_run("serve", spec), 4, "camera b")
    # a camera asking for the diffusion method on a machine without the extra: exit 5, not "starting" for ever
    # (without a method, auto picks the classical cover there and serves)
    spec.write_text(json.dumps({"cameras": [{"name": "a", "input": "rtsp://127.0.0.1:1/x", "output": "ok2", "method": "camouflage"}]}))
    r = _run("serve", spec, script=[sys.executable, "-c", WITHOUT_DIFFUSION])
    _one_line(r, 5, "diffusion extra")


def test_a_second_serve_of_a_camera_is_refused_before_it_starts(tmp_path: Path) -> None:
    """Two serves writing one camera's segments into one folder: the second is refused (it
    also removed the first one's unfinished segment as "left by a dead process")."""
    spec = tmp_path / "cameras.yaml"
    spec.write_text(_camera())
    (tmp_path / "o").mkdir()
    with claim([tmp_path / "o" / "a"]):  # what the first serve holds while it runs
        _one_line(_run("serve", spec), 4, "camera a")
