"""``camstream serve CAMERAS.yaml``: every camera a supervised Ray actor, with metrics.

The file::

    defaults:                     # optional, for every camera
      method: pixelate
      segment_seconds: 60
      set: {detection.threshold: 0.3}
    cameras:
      - name: gate                # letters, digits, - and _; names the actor and the segments
        input: rtsp://10.0.0.5/stream
        output: segments/gate     # a folder (segments) or rtsp://relay/gate
        method: solid             # overrides
        set: {stream.read_timeout: 5}

The supervisor (this process) starts one actor per camera (``max_restarts``: Ray
brings a dead process back), calls its ``run`` again after a backoff when the process
died, polls every camera's figures for ``/metrics`` and ``/healthz`` and, on SIGTERM or
Ctrl-C, stops every camera so that each finishes its open segment.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import signal
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from ..anonymizers import CLASSICAL
from ..config import Config, load_config, read_yaml, short
from ..errors import ConfigError, ModelError, OutputError
from ..paths import STREAM_SCHEMES, claim
from ..validate import validate
from .cluster import connect, import_ray, runtime_env
from .metrics import CameraFigures, start_server

log = logging.getLogger("camstream")

CAMERA_KEYS = {"name", "input", "output", "method", "segment_seconds", "set", "cpus", "gpus", "max_restarts"}
NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
POLL = 1.0  # seconds between figures from the cameras


def _number(where: str, value: Any, low: float, high: float, *, integer: bool = False, low_open: bool = False) -> float:
    """A camera's number: finite, in range, an integer where one is meant (``.inf``, ``.nan``
    and ``true`` are refused here, not found by a crash in the supervisor)."""
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise ConfigError(f"{where}: {short(value)} is not {'an integer' if integer else 'a number'}")
    if value < low or value > high or (low_open and value == low):
        raise ConfigError(f"{where}: {short(value)} is out of range {'(' if low_open else '['}{low:g}, {high:g}]")
    return value


def _sets(where: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ConfigError(f"{where}: 'set' is a mapping of SECTION.KEY: VALUE, not {short(value)}")
    return value


def load_cameras(path: str | Path, files: list[str] = (), overrides: list[str] = ()) -> list[tuple[dict[str, Any], Config]]:
    """Each camera's spec and its full config (defaults < --config < --set < camera's own).
    Every value is type- and range-checked here (exit 2, one line), before any camera starts."""
    data = read_yaml(path, "cameras file") or {}
    if not isinstance(data, dict) or not isinstance(data.get("cameras"), list) or not data["cameras"]:
        raise ConfigError(f"{path}: expected 'cameras:' with a list of cameras")
    unknown = set(data) - {"defaults", "cameras"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {', '.join(sorted(map(str, unknown)))} (known: defaults, cameras)")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict) or set(defaults) - (CAMERA_KEYS - {"name", "input", "output"}):
        raise ConfigError(f"{path}: defaults: unknown keys {sorted(map(str, set(defaults) - CAMERA_KEYS)) if isinstance(defaults, dict) else short(defaults)}")
    default_sets = _sets(f"{path}: defaults", defaults.get("set"))
    cameras, names = [], set()
    base = Path(path).resolve().parent
    for i, raw in enumerate(data["cameras"]):
        where = f"{path}: cameras[{i}]"
        if not isinstance(raw, dict):
            raise ConfigError(f"{where}: expected a mapping")
        unknown = set(raw) - CAMERA_KEYS
        if unknown:
            raise ConfigError(f"{where}: unknown keys {', '.join(sorted(map(str, unknown)))} (known: {', '.join(sorted(CAMERA_KEYS))})")
        cam = {"method": None, "segment_seconds": 60.0, "cpus": 1.0, "gpus": None, "max_restarts": -1,
               **{k: v for k, v in defaults.items() if k != "set"}, **{k: v for k, v in raw.items() if k != "set"}}
        for key in ("name", "input", "output"):
            if not isinstance(cam.get(key), str) or not cam[key]:
                raise ConfigError(f"{where}: '{key}' is required")
        if not NAME.match(cam["name"]) or cam["name"] in names:
            raise ConfigError(f"{where}: name {short(cam['name'])} must be unique, letters, digits, - and _")
        where = f"{path}: camera {cam['name']}"
        names.add(cam["name"])
        if not cam["input"].startswith(STREAM_SCHEMES) and not cam["input"].startswith("webcam:"):
            raise ConfigError(f"{where}: input {short(cam['input'])} is not a stream URL or webcam:N")
        if "://" in cam["output"] and not cam["output"].startswith(("rtsp://", "rtsps://")):
            raise ConfigError(f"{where}: output {short(cam['output'])}: a folder or an rtsp:// URL")
        if "://" not in cam["output"]:
            cam["output"] = str((base / cam["output"]).resolve())  # relative to the YAML file
        if cam["method"] is not None and not isinstance(cam["method"], str):
            raise ConfigError(f"{where}: method {short(cam['method'])} is not a name")
        cam["segment_seconds"] = float(_number(f"{where}: segment_seconds", cam["segment_seconds"], 0, 86400, low_open=True))
        cam["cpus"] = float(_number(f"{where}: cpus", cam["cpus"], 0, 1024, low_open=True))
        if cam["gpus"] is not None:
            cam["gpus"] = float(_number(f"{where}: gpus", cam["gpus"], 0, 64))
        cam["max_restarts"] = int(_number(f"{where}: max_restarts (-1: for ever)", cam["max_restarts"], -1, 10**6, integer=True))
        sets = {**default_sets, **_sets(where, raw.get("set"))}
        # JSON is YAML: each value goes through the same parsing and checks as --set
        try:
            config = load_config(list(files), [*overrides, *(f"{k}={json.dumps(v)}" for k, v in sets.items())])
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if cam["method"]:
            config.anonymize.method = cam["method"]
        from ..auto import resolve

        choice = resolve(config)  # --method auto: chosen here, on the machine that serves, once per setting
        if choice is not None:
            config.anonymize.method = choice.method
        if config.anonymize.method not in _methods():  # else each start of the camera would fail the same way
            raise ConfigError(f"{where}: method {short(config.anonymize.method)}: use one of {', '.join(_methods())}")
        try:
            validate(config)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        cameras.append((cam, config))
    return cameras


def check_cameras(cameras: list[tuple[dict[str, Any], Config]]) -> None:
    """What would make a camera fail at every start, checked for all of them before any
    starts: the method's extra (a diffusion method on a machine without it sat in
    "starting" for ever) and each output folder (created now; unwritable: exit 4)."""
    from ..runner import _diffusion_installed

    for cam, config in cameras:
        method = config.anonymize.method
        if method not in CLASSICAL and not _diffusion_installed():
            raise ModelError(f"camera {cam['name']}: --method {method} needs the diffusion extra: "
                             "pip install '.[diffusion]' in a clone (or method: pixelate: no models needed)")
        if "://" in cam["output"]:
            continue
        folder = Path(cam["output"])
        if folder.exists() and not folder.is_dir():
            raise OutputError(f"camera {cam['name']}: output {folder} is a file; give a folder for segments")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutputError(f"camera {cam['name']}: cannot create the output folder {folder} ({exc.strerror})") from None
        if not os.access(folder, os.W_OK | os.X_OK):
            raise OutputError(f"camera {cam['name']}: output folder {folder} is not writable")


def _methods() -> list[str]:
    try:
        from camouflage.models.methods import METHODS
    except ModuleNotFoundError:
        METHODS = {}  # noqa: N806 - the diffusion methods are not installed
    return [*CLASSICAL, *METHODS]


def _resources(cam: dict[str, Any], config: Config) -> dict[str, float]:
    gpus = cam["gpus"] if cam["gpus"] is not None else (0 if config.anonymize.method in CLASSICAL or config.models.device == "cpu" else 1)
    return {"num_cpus": float(cam["cpus"]), "num_gpus": float(gpus)}


class Supervisor:
    """Starts, watches and restarts the camera actors; keeps their figures."""

    def __init__(self, ray: Any, cameras: list[tuple[dict[str, Any], Config]], restart_backoff: float = 1.0,
                 max_backoff: float = 30.0, figures: dict[str, CameraFigures] | None = None,
                 lock: threading.Lock | None = None) -> None:
        from .camera import CameraWorker

        self.ray, self.lock = ray, lock or threading.Lock()
        self.figures = figures if figures is not None else {cam["name"]: CameraFigures(cam["name"]) for cam, _ in cameras}
        self.backoff, self.max_backoff = restart_backoff, max_backoff
        remote = ray.remote(CameraWorker)
        self.actors, self.runs, self.next_start, self.failures = {}, {}, {}, {}
        self.max_restarts = {cam["name"]: int(cam["max_restarts"]) for cam, _ in cameras}
        for cam, config in cameras:
            self.actors[cam["name"]] = remote.options(
                name=f"camstream-camera-{cam['name']}-{os.getpid()}", max_restarts=cam["max_restarts"], max_task_retries=0,
                max_concurrency=4, runtime_env=runtime_env(), **_resources(cam, config)).remote(cam, config)
            self.failures[cam["name"]] = 0
            self._start(cam["name"])

    def _start(self, name: str) -> None:
        self.runs[name] = self.actors[name].run.remote()
        self.next_start.pop(name, None)

    def step(self) -> None:
        """One round: restarts due, deaths noticed, figures polled."""
        ray, now = self.ray, time.monotonic()
        for name, due in list(self.next_start.items()):
            if now >= due:
                self._start(name)
        refs = {ref: name for name, ref in self.runs.items()}
        if refs:
            done, _ = ray.wait(list(refs), num_returns=len(refs), timeout=0)
            for ref in done:
                name = refs[ref]
                del self.runs[name]
                try:
                    ray.get(ref)
                    with self.lock:
                        self.figures[name].state = "stopped"
                    continue
                except Exception as exc:  # noqa: BLE001 - the process died (or run raised): restart
                    error = exc
                self.failures[name] += 1
                limit = self.max_restarts[name]
                if 0 <= limit < self.figures[name].restarts + 1:
                    log.error("camera %s: died %d times, more than max_restarts %d: given up", name, limit + 1, limit)
                    with self.lock:
                        self.figures[name].state = "dead"
                    continue
                delay = min(self.backoff * 2 ** (self.failures[name] - 1), self.max_backoff)
                log.warning("camera %s: its process died (%s); run again in %.1f s", name, type(error).__name__, delay)
                with self.lock:
                    self.figures[name].restarted()
                self.next_start[name] = now + delay
        polls = {self.actors[n].stats.remote(): n for n in self.runs}
        if polls:
            ready, _ = ray.wait(list(polls), num_returns=len(polls), timeout=POLL)
            for ref in ready:
                try:
                    stats = ray.get(ref)
                except Exception:  # noqa: BLE001 - dying right now: the run's ref will say so
                    continue
                name = polls[ref]
                with self.lock:
                    if name in self.runs:
                        self.figures[name].update(stats)
                if stats["state"] == "running" and stats.get("frames", 0) > 0:
                    self.failures[name] = 0  # it works again: the next death waits the shortest backoff

    def stop(self, timeout: float = 30.0) -> None:
        """Every camera finishes its open segment; actors that do not stop in time are killed."""
        for name in list(self.runs):
            self.actors[name].stop.remote()
        if self.runs:
            self.ray.wait(list(self.runs.values()), num_returns=len(self.runs), timeout=timeout)
        for actor in self.actors.values():
            self.ray.kill(actor, no_restart=True)


def listen(host: str, port: int, figures: dict[str, CameraFigures], lock: threading.Lock) -> Any:
    """The metrics server, started before any camera: a port that is taken is exit 2 now."""
    try:
        return start_server(host, port, figures, lock)
    except (OSError, OverflowError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"--metrics-host {host} --metrics-port {port}: cannot listen ({reason})") from None


def serve(cameras: list[tuple[dict[str, Any], Config]], *, address: str | None = None, host: str = "127.0.0.1", port: int = 9108,
          duration: float | None = None, debug: bool = False, stop: threading.Event | None = None) -> int:
    figures = {cam["name"]: CameraFigures(cam["name"]) for cam, _ in cameras}
    lock = threading.Lock()
    server = listen(host, port, figures, lock)
    try:
        ray = import_ray()
        cpus = sum(float(cam["cpus"]) for cam, _ in cameras)
        # A local cluster of its own by default, with a logical CPU per camera at least
        owner = connect(address or "local", debug=debug, num_cpus=None if address else max(os.cpu_count() or 1, int(cpus + 0.999)),
                        worker_logs=True)
    except BaseException:
        server.shutdown()
        raise
    stop = stop or threading.Event()
    signalled: list[int] = []
    previous = {}
    if threading.current_thread() is threading.main_thread():
        def handler(signum: int, _frame: object) -> None:
            signalled.append(signum)
            stop.set()

        previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        supervisor = Supervisor(ray, cameras, figures=figures, lock=lock)
        log.info("serving %d camera(s); metrics on http://%s:%d/metrics, health on /healthz", len(cameras), host, server.server_port)
        ends = time.monotonic() + duration if duration else None
        while not stop.is_set() and (ends is None or time.monotonic() < ends):
            supervisor.step()
        log.info("stopping: every camera finishes its open segment")
        supervisor.stop()
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        server.shutdown()
        if owner:
            ray.shutdown()
    return 128 + signalled[0] if signalled else 0


def cmd_serve(args: Any) -> int:
    if args.duration is not None and not (math.isfinite(args.duration) and args.duration > 0):
        raise ConfigError(f"--duration {args.duration}: a number of seconds > 0")
    cameras = load_cameras(args.cameras, args.config, args.set)
    check_cameras(cameras)
    with ExitStack() as held:
        for cam, _ in cameras:  # one writer per camera's segments: a second serve of it is refused (exit 4)
            if "://" not in cam["output"]:
                try:
                    held.enter_context(claim([Path(cam["output"]) / cam["name"]]))
                except OutputError as exc:
                    raise OutputError(f"camera {cam['name']}: {exc}") from None
        return serve(cameras, address=args.address, host=args.metrics_host, port=args.metrics_port, duration=args.duration,
                     debug=args.debug)
