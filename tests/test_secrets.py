"""A camera's password never leaves the process: every path is run with credentials in
the URL and everything it wrote (stderr, the JSON report, the batch summary, the
forwarded Ray worker lines, the metrics) is searched for the password.

The password once appeared in the ``cannot connect`` error, every drop and reconnect
warning, ``--debug`` output, the report's ``input`` and ``source_errors``, the error for
``-o rtsp://u:p@...``, and the worker lines ``camstream serve`` forwards from Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import CAMSTREAM, REPO
from test_rtsp import FAST, _requirements, cameras, clip, free_port, procs  # noqa: F401 - fixtures

from streamer.redact import redact, redacted

PASSWORD = "S3cretPass"
USER = "admin"


def _with_password(url: str) -> str:
    return url.replace("rtsp://", f"rtsp://{USER}:{PASSWORD}@", 1)


def _nothing_leaks(*texts: str) -> None:
    for text in texts:
        assert PASSWORD not in text, text
        assert f"{USER}:***@" in text or "://" not in text or PASSWORD not in text


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("rtsp://admin:S3cretPass@10.0.0.5:554/stream1", "rtsp://admin:***@10.0.0.5:554/stream1"),
        ("cannot connect rtsp://a:p@ss@h/x (refused)", "cannot connect rtsp://a:***@h/x (refused)"),  # '@' in the password
        ("'rtsp://token123@h/x'", "'rtsp://***@h/x'"),  # a user name alone may be a token
        # '/', '?' or '#' typed unencoded in a password: FFmpeg quotes the whole URL in its error
        ("rtsp://admin:S3cret#Pass@10.0.0.5/s", "rtsp://admin:***@10.0.0.5/s"),
        ("rtsp://admin:pa/ss?x@h/x", "rtsp://admin:***@h/x"),
        ("rtsp://u:p@h/a, rtsp://v:q@h/b", "rtsp://u:***@h/a, rtsp://v:***@h/b"),
        ("http://h/x?user=a&password=zz&x=1", "http://h/x?user=a&password=***&x=1"),
        ("srt://h:9000?passphrase=abc", "srt://h:9000?passphrase=***"),
        ("rtsp://10.0.0.5/stream1 and mail@example.org", "rtsp://10.0.0.5/stream1 and mail@example.org"),
    ],
)
def test_redact(text: str, shown: str) -> None:
    assert redact(text) == shown
    assert redacted({"input": text, "errors": [text]}) == {"input": shown, "errors": [shown]}


def test_unreachable_camera_with_a_password(tmp_path: Path) -> None:
    url = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/cam"
    r = subprocess.run(
        [*CAMSTREAM, "run", url, "--method", "solid", "-o", tmp_path / "o.mkv", "--debug", "--set", "stream.open_timeout=2"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 6, r.stderr
    assert "cannot connect" in r.stderr and f"rtsp://{USER}:***@127.0.0.1" in r.stderr
    _nothing_leaks(r.stderr, r.stdout)


def test_rtsp_output_with_a_password(tmp_path: Path) -> None:
    relay = f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/anon"
    image = Path(os.environ.get("CAMSTREAM_TEST_DATA", REPO.parent / "shared" / "data")) / "grace_hopper_512x512.jpg"
    r = subprocess.run(
        [*CAMSTREAM, "run", image, "--method", "solid", "-o", relay, "--debug"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 6 and "cannot publish" in r.stderr, r.stderr
    _nothing_leaks(r.stderr, r.stdout)


URL = f"rtsp://{USER}:{PASSWORD}@127.0.0.1/cam"


@pytest.mark.parametrize("args", [["run", URL, "--method", URL], ["run", URL, "--start", URL], ["serve", "cameras.yaml", URL]])
def test_a_usage_error_quoting_a_camera_url(args: list[str], tmp_path: Path) -> None:
    """A URL in the wrong place (a flag's value, an extra argument) is quoted by the usage error."""
    r = subprocess.run([*CAMSTREAM, *args], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and f"rtsp://{USER}:***@127.0.0.1" in r.stderr, r.stderr
    _nothing_leaks(r.stderr, r.stdout)


def test_drops_reconnects_report_and_debug_with_a_password(cameras, procs, tmp_path: Path) -> None:  # noqa: F811
    camera = cameras()
    run = procs(
        [
            _with_password(camera.url),
            "-o",
            "out.mkv",
            "--end",
            "4",
            "--report",
            "r.json",
            "--debug",
            *FAST[1:],
            "--set",
            "stream.reconnect_backoff=0.2",
            "--set",
            "stream.reconnect_max_backoff=0.5",
            "--set",
            "stream.reconnect_attempts=20",
        ],
        tmp_path,
    )
    run.wait_frames(10)
    camera.stop()  # the camera loses power ...
    time.sleep(1.5)
    cameras(camera.port)  # ... and comes back
    rc, err = run.wait(timeout=60)
    assert rc == 0, err
    assert ("stream dropped" in err or "stream ended" in err) and "reconnect attempt" in err and "reconnected" in err, err
    report = (tmp_path / "r.json").read_text()
    assert json.loads(report)["source_errors"], report
    assert f"{USER}:***@127.0.0.1" in report and f"{USER}:***@127.0.0.1" in err
    _nothing_leaks(err, report)


@pytest.mark.full
def test_serve_forwarded_lines_and_metrics_with_a_password(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    pytest.importorskip("prometheus_client")
    port = free_port()
    spec = tmp_path / "cameras.yaml"
    spec.write_text(
        json.dumps(
            {
                "cameras": [
                    {
                        "name": "gate",
                        "input": f"rtsp://{USER}:{PASSWORD}@127.0.0.1:{free_port()}/cam",
                        "output": "segments",
                        "method": "solid",
                        "set": {"stream.open_timeout": 1, "stream.reconnect_backoff": 0.2, "stream.reconnect_max_backoff": 0.5},
                    }
                ]
            }
        )
    )
    proc = subprocess.Popen(
        [*CAMSTREAM, "--debug", "serve", str(spec), "--metrics-port", str(port)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    metrics = ""
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and "connecting" not in metrics and proc.poll() is None:
            time.sleep(0.5)
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                    metrics = resp.read().decode()
            except OSError:
                pass
        time.sleep(4)  # several failed connections, each forwarded as a worker line
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            metrics = resp.read().decode()
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert "cannot connect" in out, out  # the worker's lines did reach the driver
    assert f"{USER}:***@127.0.0.1" in out
    _nothing_leaks(out, metrics)
