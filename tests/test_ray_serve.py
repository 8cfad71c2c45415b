"""``camstream serve``: two loopback RTSP cameras (the real test peer, tests/rtsp_server.py)
as supervised actors on a real local Ray cluster; one actor's process is killed and must
come back, the metrics must show it, both outputs must play and hold no face.

Every process is started here and stopped in teardown; every wait has a deadline and no
assert depends on the machine's speed.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import CAMSTREAM, REPO, read_frames, sigint_default
from media import camera_clip
from privacy import faces
from test_rtsp import DATA, RtspCamera, _gst_rtsp_available, free_port

pytest.importorskip("ray", reason="camstream[ray] is not installed")
pytest.importorskip("prometheus_client", reason="camstream[ray] is not installed")

FPS = 25


@pytest.fixture(scope="module", autouse=True)
def _requirements() -> None:
    if not _gst_rtsp_available():
        if os.environ.get("CAMSTREAM_REQUIRE_RTSP") == "1":
            pytest.fail("gst-rtsp-server missing for /usr/bin/python3")
        pytest.skip("gst-rtsp-server missing for /usr/bin/python3: apt-get install -y $(cat .ci/apt-packages.txt)")


@pytest.fixture
def cameras(tmp_path: Path):  # noqa: ANN201
    started = [RtspCamera(camera_clip(DATA / "Megamind.avi", tmp_path / "faces.mp4", (360, 264), 6, FPS), free_port()),
               RtspCamera(camera_clip(DATA / "vtest.avi", tmp_path / "street.mp4", (384, 288), 6, FPS), free_port())]
    try:
        yield [camera.start() for camera in started]
    finally:
        for camera in started:
            camera.stop()


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()
    except OSError:
        return 0, ""


def _metric(text: str, name: str, camera: str) -> float | None:
    m = re.search(rf'^{name}\{{camera="{camera}"\}} (\S+)$', text, re.M)
    return float(m.group(1)) if m else None


def _uncovered_faces(image: np.ndarray) -> list[list[float]]:
    """Faces the independent detector finds that are not under the solid (black) cover:
    the detector also fires on a black ellipse with a fringe of hair; a face shown is not black."""
    found = []
    for x1, y1, x2, y2 in faces(image):
        w, h = x2 - x1, y2 - y1
        core = image[int(y1 + h / 4):int(y2 - h / 4), int(x1 + w / 4):int(x2 - w / 4)]
        if core.size and (core.max(axis=2) < 16).mean() < 0.5:
            found.append([float(x1), float(y1), float(x2), float(y2)])
    return found


def _wait(condition, timeout: float, what: str, proc: subprocess.Popen) -> None:  # noqa: ANN001
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, f"serve exited {proc.returncode} while waiting for {what}"
        assert time.monotonic() < deadline, f"timed out after {timeout} s waiting for {what}"
        time.sleep(0.25)


@pytest.mark.full  # 32 s: a Ray cluster
def test_two_cameras_one_actor_killed_and_restarted(cameras, tmp_path: Path) -> None:
    faces_cam, street_cam = cameras
    port = free_port()
    spec = tmp_path / "cameras.yaml"
    spec.write_text(json.dumps({  # JSON is YAML
        "defaults": {"method": "solid", "segment_seconds": 2,
                     "set": {"stream.open_timeout": 5, "stream.read_timeout": 3, "stream.reconnect_backoff": 0.2,
                             "stream.reconnect_max_backoff": 1}},
        "cameras": [{"name": "faces", "input": faces_cam.url, "output": "segments/faces"},
                    {"name": "street", "input": street_cam.url, "output": "segments/street", "set": {"detection.every": 2}}],
    }))
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([*CAMSTREAM, "serve", str(spec), "--metrics-port", str(port)], cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=log, stderr=subprocess.STDOUT)
    metrics = f"http://127.0.0.1:{port}/metrics"
    try:
        def frames(camera: str) -> float:
            return _metric(_get(metrics)[1], "camstream_camera_frames_total", camera) or 0

        _wait(lambda: frames("faces") >= FPS and frames("street") >= FPS, 240, "a second of frames from each camera", proc)
        assert _get(f"http://127.0.0.1:{port}/healthz")[0] == 200
        text = _get(metrics)[1]
        pid = int(re.search(r'camstream_camera_info\{camera="faces",[^}]*pid="(\d+)"', text).group(1))
        assert _metric(text, "camstream_camera_restarts_total", "faces") == 0
        os.kill(pid, signal.SIGKILL)  # the actor's process dies

        def restarted() -> bool:
            text = _get(metrics)[1]
            new = re.search(r'camstream_camera_info\{camera="faces",[^}]*pid="(\d+)"[^}]*state="running"', text)
            return (_metric(text, "camstream_camera_restarts_total", "faces") or 0) >= 1 and bool(new) \
                and int(new.group(1)) != pid

        _wait(restarted, 240, "the faces camera to restart", proc)
        after = frames("faces")
        _wait(lambda: frames("faces") >= after + 2 * FPS, 240, "frames after the restart", proc)
        text = _get(metrics)[1]
        assert _metric(text, "camstream_camera_restarts_total", "street") == 0
        for name in ("camstream_camera_fps", "camstream_camera_lag_seconds", "camstream_camera_regions_covered_total",
                     "camstream_camera_regions_held_total", "camstream_camera_regions_fallback_total",
                     "camstream_camera_reconnects_total", "camstream_camera_frames_lost_total"):
            assert _metric(text, name, "faces") is not None and _metric(text, name, "street") is not None, name
        assert _metric(text, "camstream_camera_regions_covered_total", "faces") > 0
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=120) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()
    out = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in out, out
    originals_with_faces = sum(len(_uncovered_faces(f)) > 0 for f in read_frames(tmp_path / "faces.mp4"))
    assert originals_with_faces > 10  # the check sees the faces the camera sends
    for camera in ("faces", "street"):
        segments = sorted((tmp_path / "segments" / camera).glob(f"{camera}-*.mkv"))
        # the segment open when the process was killed is gone (removed by the restart); the
        # ones open at SIGTERM were finished: every file left is a complete segment
        assert len(segments) >= 2 and not [s for s in segments if ".partial" in s.name], segments
        for segment in segments:
            with av.open(str(segment)) as c:
                times = [float(f.pts * f.time_base) for f in c.decode(video=0)]
            assert times and times[0] < 0.1 and all(b > a for a, b in zip(times, times[1:], strict=False)), segment
        frames_out = [f for s in segments for f in read_frames(s)]
        assert [i for i, f in enumerate(frames_out) if _uncovered_faces(f)] == [], camera  # none left, restart included


def test_example_cameras_file_loads() -> None:
    from streamer.scale.serve import load_cameras

    cameras = load_cameras(REPO / "examples" / "serve" / "cameras.yaml")
    (gate, gate_config), (lobby, lobby_config) = cameras
    assert gate["output"] == str(REPO / "examples" / "serve" / "segments" / "gate") and gate["segment_seconds"] == 60
    assert gate_config.anonymize.method == "pixelate" and gate_config.stream.read_timeout == 5
    assert lobby["output"].startswith("rtsp://") and lobby_config.anonymize.method == "solid"
    assert lobby_config.detection.threshold == 0.15 and gate_config.detection.threshold != 0.15


@pytest.mark.parametrize(("text", "needle"), [
    ("cameras: []", "expected 'cameras:'"),
    ("cameras: [{name: a, input: rtsp://x/y}]", "'output' is required"),
    ("cameras: [{name: a, input: rtsp://x/y, output: o}, {name: a, input: rtsp://x/z, output: p}]", "must be unique"),
    ("cameras: [{name: a, input: rtsp://x/y, output: o, colour: red}]", "unknown keys colour"),
    ("cameras: [{name: a, input: rtsp://x/y, output: o, set: {stream.nope: 1}}]", "unknown setting"),
    ("cameras: [{name: a, input: rtsp://x/y, output: o, method: sepia}]", "method 'sepia'"),
    ("cameras: [{name: a, input: rtsp://x/y, output: o, segment_seconds: 0}]", "segment_seconds: 0 is out of range"),
])
def test_bad_cameras_file_is_one_line_and_exit_2(text: str, needle: str, tmp_path: Path) -> None:
    spec = tmp_path / "cameras.yaml"
    spec.write_text(text)
    r = subprocess.run([*CAMSTREAM, "serve", str(spec)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("camstream: error: ") and needle in last and "Traceback" not in r.stderr, r.stderr


@pytest.mark.full  # 14 s: a Ray cluster
def test_camera_down_at_start_is_retried_until_it_comes_up(tmp_path: Path) -> None:
    """Nothing listens on the camera's port at first: /healthz says 503 with the camera
    connecting; once the camera starts on that port its frames flow and /healthz is 200."""
    camera = RtspCamera(camera_clip(DATA / "vtest.avi", tmp_path / "street.mp4", (384, 288), 4, FPS), free_port())
    port = free_port()
    spec = tmp_path / "cameras.yaml"
    spec.write_text(json.dumps({"cameras": [{
        "name": "late", "input": camera.url, "output": "segments", "method": "solid", "segment_seconds": 1,
        "set": {"stream.open_timeout": 2, "stream.reconnect_backoff": 0.2, "stream.reconnect_max_backoff": 1}}]}))
    proc = subprocess.Popen([*CAMSTREAM, "serve", str(spec), "--metrics-port", str(port)], cwd=REPO,
                            env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=sigint_default)
    health = f"http://127.0.0.1:{port}/healthz"
    try:
        _wait(lambda: _get(health)[0] == 503 and json.loads(_get(health)[1])["late"]["state"] == "connecting", 240,
              "the camera to be tried", proc)
        time.sleep(3)  # several failed attempts: the camera stays "connecting", the service stays up
        code, body = _get(health)
        assert code == 503 and json.loads(body)["late"] == {"state": "connecting", "up": False, "restarts": 0}
        camera.start()
        _wait(lambda: _get(health)[0] == 200, 240, "frames from the camera once it is up", proc)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
    finally:
        camera.stop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "Traceback" not in err and "cannot connect" in err, err  # each failed attempt is logged
    segments = sorted((tmp_path / "segments").glob("late-*.mkv"))
    assert segments and not [s for s in segments if ".partial" in s.name], segments
