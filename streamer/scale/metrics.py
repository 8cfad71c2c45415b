"""Prometheus metrics and ``/healthz`` for ``camstream serve`` (prometheus-client).

The supervisor keeps the latest figures of every camera (:class:`CameraFigures`); a
custom collector turns them into metrics at scrape time, so nothing is pushed from the
actors. Counters survive an actor's restart: the supervisor carries the figures the
dead process had reached (see :meth:`CameraFigures.restarted`).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector

from ..redact import redact

COUNTERS = {  # figure -> (metric, help)
    "frames": ("camstream_camera_frames", "frames written"),
    "regions_covered": ("camstream_camera_regions_covered", "regions covered (faces, persons)"),
    "regions_held": ("camstream_camera_regions_held", "regions covered at a predicted box while the detector missed"),
    "fallback_regions": ("camstream_camera_regions_fallback", "regions covered by the fallback because the method failed"),
    "reconnects": ("camstream_camera_reconnects", "stream reconnects"),
    "frames_lost": ("camstream_camera_frames_lost", "frames lost while the stream was down (estimate)"),
}
STALE = 10.0  # seconds without a frame before a camera counts as down


@dataclass
class CameraFigures:
    name: str
    state: str = "starting"  # starting | connecting | running | restarting | dead | stopped
    current: dict[str, float] = field(default_factory=dict)  # this process's figures
    carried: dict[str, float] = field(default_factory=dict)  # what processes before it reached
    restarts: int = 0
    pid: int | None = None
    node: str = ""
    fps: float = 0.0
    lag: float = 0.0
    last_frame: float = 0.0  # wall time of the last frame written (supervisor's clock)

    def total(self, key: str) -> float:
        return self.carried.get(key, 0) + self.current.get(key, 0)

    def restarted(self) -> None:
        for key in COUNTERS:
            self.carried[key] = self.total(key)
        self.current = {}
        self.restarts += 1
        self.state, self.fps = "restarting", 0.0

    def update(self, stats: dict[str, Any]) -> None:
        if stats.get("frames", 0) > self.current.get("frames", 0):
            self.last_frame = time.time()
        self.current = {k: stats.get(k, 0) for k in COUNTERS}
        self.state, self.pid, self.node = stats["state"], stats["pid"], stats["node"]
        self.fps, self.lag = stats.get("fps", 0.0), stats.get("lag", 0.0)

    @property
    def up(self) -> bool:
        return self.state == "running" and time.time() - self.last_frame < STALE


class FleetCollector(Collector):
    def __init__(self, cameras: dict[str, CameraFigures], lock: threading.Lock) -> None:
        self.cameras, self.lock = cameras, lock

    def collect(self) -> Iterator[Any]:
        with self.lock:
            cams = list(self.cameras.values())
            fps = GaugeMetricFamily("camstream_camera_fps", "frames written per second", labels=["camera"])
            lag = GaugeMetricFamily("camstream_camera_lag_seconds",
                                    "end-to-end lag: how far the output is behind the camera's real time", labels=["camera"])
            up = GaugeMetricFamily("camstream_camera_up", "1 while the camera's frames are being written", labels=["camera"])
            info = GaugeMetricFamily("camstream_camera_info", "the process running the camera", labels=["camera", "pid", "node", "state"])
            restarts = CounterMetricFamily("camstream_camera_restarts", "times the camera's actor was restarted", labels=["camera"])
            counters = {k: CounterMetricFamily(m, h, labels=["camera"]) for k, (m, h) in COUNTERS.items()}
            for c in cams:
                info.add_metric([redact(v) for v in (c.name, str(c.pid or ""), c.node, c.state)], 1.0)
                fps.add_metric([c.name], c.fps)
                lag.add_metric([c.name], c.lag)
                up.add_metric([c.name], 1.0 if c.up else 0.0)
                restarts.add_metric([c.name], c.restarts)
                for key, family in counters.items():
                    family.add_metric([c.name], c.total(key))
        yield from (fps, lag, up, info, restarts, *counters.values())


def health(cameras: dict[str, CameraFigures], lock: threading.Lock) -> tuple[int, dict[str, Any]]:
    """200 when every camera's frames are being written, else 503; the body says which."""
    with lock:
        body = {c.name: {"state": c.state, "up": c.up, "restarts": c.restarts} for c in cameras.values()}
    return (200 if body and all(v["up"] for v in body.values()) else 503), body


def start_server(host: str, port: int, cameras: dict[str, CameraFigures], lock: threading.Lock) -> ThreadingHTTPServer:
    """``/metrics`` and ``/healthz`` in a background thread; ``server.server_port`` is the port."""
    registry = CollectorRegistry()
    registry.register(FleetCollector(cameras, lock))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                code, body, kind = 200, generate_latest(registry), CONTENT_TYPE_LATEST
            elif path == "/healthz":
                code, data = health(cameras, lock)
                body, kind = (json.dumps(data) + "\n").encode(), "application/json"
            else:
                code, body, kind = 404, b"see /metrics and /healthz\n", "text/plain"
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:  # scrapes every few seconds: not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="camstream-metrics", daemon=True).start()
    return server
