"""One camera as a Ray actor: its input stream, anonymized, to RTSP or to segments.

The actor runs :meth:`CameraWorker.run` until told to stop. A camera that is down at
the start is retried for ever (with backoff); once connected, the stream's own
reconnect logic (:class:`~streamer.sources.LiveSource`, ``reconnect_attempts: -1``)
rides out drops. The models are built before any output is opened and the pipeline is
the fail-closed one of ``camstream run``: a restarted actor writes anonymized frames or
nothing, never an original.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

from ..frame import Frame
from ..sinks import Sink

log = logging.getLogger("camstream")


class _Metered(Sink):
    """Passes frames on and measures fps and lag behind the camera's real time (wall
    time since the first frame minus media time since it; the stream's timeline keeps
    outages in it, so the lag stays meaningful across reconnects)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.frames_written = 0
        self.first: tuple[float, float] | None = None  # (wall, media)
        self.window: list[float] = []
        self.lag = 0.0

    def write(self, frame: Frame) -> None:
        self.sink.write(frame)
        self.frames_written += 1
        now = time.monotonic()
        media = frame.time or 0.0
        if self.first is None:
            self.first = (now, media)
        self.lag = max(0.0, (now - self.first[0]) - (media - self.first[1]))
        self.window = [t for t in self.window if now - t < 5.0] + [now]

    @property
    def fps(self) -> float:
        w = [t for t in self.window if time.monotonic() - t < 5.0]
        return (len(w) - 1) / (w[-1] - w[0]) if len(w) > 1 and w[-1] > w[0] else 0.0

    def close(self, success: bool = True) -> Any:
        return self.sink.close(success=success)


class CameraWorker:
    """Wrapped with ``ray.remote`` (threaded: ``stats``/``stop`` answer while ``run`` works)."""

    def __init__(self, camera: dict[str, Any], config: Any) -> None:
        from ..anonymizers import CLASSICAL
        from ..redact import install_log_redaction

        install_log_redaction()  # this camera's log lines are forwarded to the driver: no password in them
        self.camera, self.config = camera, config
        self.state = "starting"
        self._stop = threading.Event()
        self._lock = threading.Lock()  # stats() runs in another thread than run()
        self._source: Any = None
        self._pipeline: Any = None
        self._sink: _Metered | None = None
        self._done = {"frames": 0, "regions_covered": 0, "regions_held": 0, "fallback_regions": 0,
                      "reconnects": 0, "frames_lost": 0}  # figures of earlier connections of this process
        if config.anonymize.method not in CLASSICAL:
            from .models import keep_models_loaded

            keep_models_loaded()

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return self._stats()

    def _stats(self) -> dict[str, Any]:
        figures = dict(self._done)
        p, s, m = self._pipeline, self._source, self._sink
        if p is not None:
            r = p.report
            figures["regions_covered"] += r.regions_covered
            figures["regions_held"] += r.regions_held
            figures["fallback_regions"] += r.fallback_regions
        if s is not None:
            figures["reconnects"] += s.stats.reconnects
            figures["frames_lost"] += s.stats.frames_lost
        if m is not None:
            figures["frames"] += m.frames_written
        return {**figures, "state": self.state, "pid": os.getpid(), "node": socket.gethostname(),
                "fps": round(m.fps, 2) if m is not None else 0.0, "lag": round(m.lag, 3) if m is not None else 0.0}

    def stop(self) -> None:
        self._stop.set()
        if self._source is not None:
            self._source.close()  # safe from any thread: the pipeline ends, the open segment is finished

    def run(self) -> str:
        from ..errors import CamstreamError

        backoff = self.config.stream.reconnect_backoff
        while not self._stop.is_set():
            self.state = "connecting"
            try:
                self._run_once()
                backoff = self.config.stream.reconnect_backoff
            except Exception as exc:  # noqa: BLE001 - a camera never gives up; each failure is logged
                text = str(exc) if isinstance(exc, CamstreamError) else f"{type(exc).__name__}: {exc}"
                log.warning("%s: %s; retrying in %.1f s", self.camera["name"], text, backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.config.stream.reconnect_max_backoff)
        self.state = "stopped"
        return "stopped"

    def _run_once(self) -> None:
        from tracking.detectors import build_detector
        from tracking.tracker import FaceTracker

        from ..classes import ClassCover, class_detectors, class_tracker, plate_cover
        from ..pipeline import Pipeline
        from ..report import RunReport
        from ..runner import build_anonymizer, build_classical
        from ..sinks import open_sink
        from ..sources import LiveSource
        from .segments import SegmentSink

        c, cam = self.config, self.camera
        det, trk, st, out = c.detection, c.tracking, c.stream, c.output
        anonymizer = build_anonymizer(c.anonymize.method, c)  # models first: no output without them
        fallback = build_classical(c.anonymize.fallback, c)
        detector = build_detector(det.detector, det.threshold, det.max_side)
        extra = class_detectors(c)  # detection.classes: plates, persons (streamer/classes.py)
        source = LiveSource(cam["input"], open_timeout=st.open_timeout, read_timeout=st.read_timeout, reconnect_attempts=-1,
                            reconnect_backoff=st.reconnect_backoff, reconnect_max_backoff=st.reconnect_max_backoff)
        try:
            info = source.info
            if cam["output"].startswith(("rtsp://", "rtsps://")):
                sink: Sink = open_sink(cam["output"], info, crf=out.crf)
            else:
                sink = SegmentSink(cam["output"], info, prefix=cam["name"], seconds=cam["segment_seconds"], crf=out.crf,
                                   preset=out.preset)
        except BaseException:
            source.close()
            raise
        if hasattr(anonymizer, "live"):
            anonymizer.live = True
        fps = float(info.fps) if info.fps else 25.0
        tracker = FaceTracker(fps=fps, hold_frames=trk.hold_frames, hold_growth=trk.hold_growth,
                              hold_max_growth=trk.hold_max_growth,
                              activation_threshold=min(trk.activation_threshold, det.threshold))
        tracker = class_tracker(tracker, c)
        anonymizer = ClassCover(anonymizer, plate_cover(c, build_classical))
        metered = _Metered(sink)
        pipeline = Pipeline(source=source, sink=metered, detector=detector, tracker=tracker, anonymizer=anonymizer,
                            fallback=fallback, detect_every=det.every, scene_cut=det.scene_cut, hold_growth=trk.hold_growth,
                            report=RunReport(input=cam["input"], method=c.anonymize.method), extra_detectors=extra)
        with self._lock:
            self._source, self._sink, self._pipeline = source, metered, pipeline
        if self._stop.is_set():  # stop() came while this was being built
            source.close()
        self.state = "running"
        try:
            pipeline.run()
        finally:
            if hasattr(anonymizer, "close"):
                anonymizer.close()
            with self._lock:
                stats = self._stats()
                self._done = {k: stats[k] for k in self._done}
                self._source = self._sink = self._pipeline = None
