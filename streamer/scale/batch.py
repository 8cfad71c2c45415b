"""``camstream run INPUTS... -o OUTDIR --ray [auto|ADDRESS]``: many files on a Ray cluster.

Why Ray actors, not Ray Data: the unit of work is one whole file (the tracker's state,
the audio and the atomic output are per file), so Ray Data's rows and blocks would only
wrap a list of paths, and its per-block retries, progress and error policy would hide
what this needs per file: a retry count, a frame-level progress bar and one failed file
reported while the others go on. A pool of actors does exactly that: each actor loads
its models once (``__init__``) and runs file after file; ``max_restarts`` brings a killed
worker back and ``max_task_retries`` re-runs the file it had in hand, from the start,
into a fresh staging folder (see :mod:`.worker`).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import paths
from ..anonymizers import CLASSICAL
from ..config import Config
from ..errors import ConfigError, Interrupted, OutputError
from ..redact import redact, redacted
from ..report import made_with
from ..sources import IMAGE_SUFFIXES, STREAM_SCHEMES
from .cluster import connect, import_ray, runtime_env
from .worker import STAGING, FileWorker

log = logging.getLogger("camstream")

FIGURES = ("frames_out", "fps", "regions_covered", "regions_held", "fallback_regions", "frames_blanked",
           "decode_errors", "frames_lost", "reconnects", "wall_seconds")


@dataclass
class Unit:
    id: str
    input: str
    output: str
    report: str
    outdir: str
    overwrite: bool = False  # the output and report may replace existing files (never an input)
    inputs: list[str] = field(default_factory=list)  # every input of the batch: none may be written

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "input": self.input, "output": self.output, "report": self.report, "outdir": self.outdir,
                "overwrite": self.overwrite, "inputs": self.inputs}


@dataclass
class BatchSummary:
    outdir: str
    method: str
    workers: int = 0
    files: list[dict[str, Any]] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def failed(self) -> list[dict[str, Any]]:
        return [f for f in self.files if f["status"] not in ("ok", "partial", "skipped")]

    def totals(self) -> dict[str, Any]:
        done = [f for f in self.files if f["status"] in ("ok", "partial")]
        frames = sum(f.get("frames_out", 0) for f in done)
        minutes = self.wall_seconds / 60
        return {
            "files": len(self.files), "done": len(done), "skipped": sum(f["status"] == "skipped" for f in self.files),
            "failed": len(self.failed), "frames": frames,
            "files_per_minute": round(len(done) / minutes, 2) if minutes > 0 else None,
            "fps": round(frames / self.wall_seconds, 1) if self.wall_seconds > 0 else None,
            **{k: sum(f.get(k, 0) for f in done) for k in ("regions_covered", "regions_held", "fallback_regions",
                                                          "frames_lost", "reconnects")},
        }

    def to_dict(self) -> dict[str, Any]:
        return {"outdir": self.outdir, "method": self.method, "workers": self.workers,
                "wall_seconds": round(self.wall_seconds, 3), "totals": self.totals(), "files": self.files}


def output_name(input_path: Path) -> str:
    """The name ``camstream run INPUT`` would give beside the input, in OUTDIR (long names
    shortened the same way: streamer.paths.output_name)."""
    kind = "images" if input_path.is_dir() else "image" if input_path.suffix.lower() in IMAGE_SUFFIXES else "file"
    return paths.output_name(input_path.name, kind)


def plan(inputs: list[str], outdir: str | Path, overwrite: bool = False) -> list[Unit]:
    """One unit per input (a file, or a folder of images); names checked before any work:
    no output or report may be an input of the batch (``--overwrite`` or not, links
    resolved) or the output or report of another input."""
    out = Path(outdir).resolve()
    if out.exists() and not out.is_dir():
        raise OutputError(f"{outdir}: with --ray, -o names a folder (it is a file)")
    units, names = [], {}
    absolute = [os.path.abspath(text) for text in inputs]
    for i, text in enumerate(inputs):
        if text.startswith(STREAM_SCHEMES) or text.startswith("webcam:"):
            raise ConfigError(f"{text}: live streams do not end; run cameras with 'camstream serve'")
        path = Path(absolute[i])  # not resolve(): a link's own name names the output
        name = output_name(path)
        if name in names:
            raise ConfigError(f"{text} and {names[name]} would both write {out / name}: rename one")
        names[name] = text
        stem = name if path.is_dir() else Path(name).stem
        unit = Unit(id=f"{i:05d}", input=str(path), output=str(out / name), report=str(out / f"{stem}.json"), outdir=str(out),
                    overwrite=overwrite, inputs=absolute)
        for target, what in ((unit.output, "output"), (unit.report, "report")):
            for other in absolute:
                if paths.same_file(target, other):
                    raise OutputError(f"{target}: the {what} of {text} would overwrite the input {other}")
        units.append(unit)
    paths.check_distinct([(u.input, u.output) for u in units] + [(f"{u.input}'s report", u.report) for u in units])
    return units


def finished(unit: Unit, made: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The report of an earlier run that completed this unit the same way, or None: the same
    input and output, ``ok`` or ``partial``, and made with the same method, settings and
    time range (``made``: what this batch would make; a report without it never matches)."""
    try:
        report = json.loads(Path(unit.report).read_text())
    except (OSError, ValueError):
        return None
    same = isinstance(report, dict) and report.get("input") == unit.input and report.get("output") == unit.output
    if made is not None and (not isinstance(report, dict) or report.get("made_with") != made):
        return None
    if same and report.get("status") in ("ok", "partial") and Path(unit.output).exists():
        return report
    return None


def _figures(report: dict[str, Any]) -> dict[str, Any]:
    return {k: report.get(k, 0) for k in FIGURES}


class Board:
    """Frame progress of the files in flight (a Ray actor; workers post, the driver reads)."""

    def __init__(self) -> None:
        self.frames: dict[str, tuple[int, int, int | None]] = {}

    def update(self, unit_id: str, attempt: int, written: int, total: int | None) -> None:
        self.frames[unit_id] = (attempt, written, total)

    def snapshot(self) -> dict[str, tuple[int, int, int | None]]:
        return dict(self.frames)


class _Bar:
    """One tqdm bar over every frame of every file, files counted in its description."""

    def __init__(self, enabled: bool, files: int) -> None:
        self.bar = None
        self.files, self.done = files, 0
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=0, unit="frame", dynamic_ncols=True, file=sys.stderr, smoothing=0.1)
        self.finished: dict[str, int] = {}
        self.flight: dict[str, tuple[int, int | None]] = {}

    def update(self, snapshot: dict[str, tuple[int, int, int | None]] | None = None) -> None:
        if snapshot is not None:
            self.flight = {k: (v[1], v[2]) for k, v in snapshot.items() if k not in self.finished}
        if self.bar is None:
            return
        n = sum(self.finished.values()) + sum(w for w, _ in self.flight.values())
        total = sum(self.finished.values()) + sum(max(w, t or 0) for w, t in self.flight.values())
        self.bar.total = max(total, n)
        self.bar.n = n
        self.bar.set_description(f"files {self.done}/{self.files}", refresh=False)
        self.bar.refresh()

    def finish(self, unit_id: str, frames: int) -> None:
        self.finished[unit_id] = frames
        self.flight.pop(unit_id, None)
        self.done += 1
        self.update()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _resources(config: Config, ray: Any) -> dict[str, float]:
    """One GPU per worker for the diffusion methods, one CPU for the classical ones."""
    if config.anonymize.method in CLASSICAL:
        return {"num_cpus": 1}
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_cpus": 1, "num_gpus": 1}
    if config.models.device == "cpu":
        return {"num_cpus": 1}
    raise ConfigError(f"--method {config.anonymize.method} needs a GPU per worker and the cluster has none "
                      "(add GPU nodes, or pass --device cpu to run the diffusion models on CPUs)")


def _slots(resources: dict[str, float], ray: Any) -> int:
    have = ray.cluster_resources()
    if "num_gpus" in resources:
        return int(have.get("GPU", 0) // resources["num_gpus"])
    return max(1, int(have.get("CPU", 1) // resources["num_cpus"]))


def _error_text(exc: BaseException) -> str:
    cause = getattr(exc, "cause", None)
    if cause is not None and not isinstance(cause, type):
        return f"{type(cause).__name__}: {cause}"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}"


def run_batch(
    inputs: list[str],
    outdir: str | Path,
    config: Config,
    *,
    address: str | None = "auto",
    workers: int | None = None,
    retries: int = 2,
    skip_existing: bool = True,
    start: float | None = None,
    end: float | None = None,
    progress: bool = True,
    debug: bool = False,
    overwrite: bool = False,
) -> BatchSummary:
    """Runs every input as one unit on the cluster; returns the summary (never raises for
    a failed file: it is in the summary, the others go on). An existing output (or report)
    that is not skipped is refused (exit 4 for that file) unless ``overwrite``."""
    units = plan(inputs, outdir, overwrite)
    out = Path(outdir).resolve()
    if not out.parent.is_dir():
        raise OutputError(f"{outdir}: parent folder {out.parent} does not exist")
    try:
        out.mkdir(exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{outdir}: cannot create the output folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK):
        raise OutputError(f"{outdir}: output folder is not writable")
    summary = BatchSummary(outdir=str(out), method=config.anonymize.method)
    made = made_with(config.anonymize.method, config.to_dict(), start, end)
    todo = []
    for unit in units:
        report = finished(unit, made) if skip_existing else None
        if report is not None:
            summary.files.append({"input": unit.input, "output": unit.output, "status": "skipped",
                                  "previous_status": report["status"], **_figures(report)})
            continue
        taken = [p for p in (unit.output, unit.report) if os.path.lexists(p)]
        if taken and not overwrite:
            why = " (made with another method, settings or range)" if skip_existing and os.path.lexists(unit.report) else ""
            error = f"{taken[0]} already exists{why}; add --overwrite to replace it"
            log.warning("%s: %s", unit.input, error)
            summary.files.append({"input": unit.input, "output": None, "status": "error", "error": error, "exit_code": 4,
                                  "attempts": 0})
            continue
        todo.append(unit)
    started = time.monotonic()
    if not todo:
        return summary
    ray = import_ray()
    owner = connect(address, debug=debug)
    actors: list[Any] = []
    bar = _Bar(progress, len(todo))
    try:
        with _signals_stop() as caught:
            resources = _resources(config, ray)
            n = max(1, min(workers or _slots(resources, ray), len(todo)))
            summary.workers = n
            board_name = f"camstream-board-{uuid.uuid4().hex}"
            board = ray.remote(num_cpus=0)(Board).options(name=board_name).remote()
            actor = ray.remote(FileWorker).options(
                **resources, max_restarts=-1, max_task_retries=retries, runtime_env=runtime_env())
            actors = [board, *(actor.remote(config, board_name) for _ in range(n))]
            results = _drive(ray, actors[1:], todo, board, bar, start, end, retries, caught)
        for unit in todo:
            summary.files.append(results[unit.id])
    finally:
        bar.close()
        for a in actors:  # an interrupted batch stops its workers before their staging goes
            ray.kill(a, no_restart=True)
        if owner:
            ray.shutdown()
        # what killed or stopped attempts left: never a finished file, never in OUTDIR itself
        shutil.rmtree(out / STAGING, ignore_errors=True)
        paths.clear_stale_locks([p for unit in todo for p in (unit.output, unit.report)])  # a killed worker's
    summary.wall_seconds = time.monotonic() - started
    return summary


@contextmanager
def _signals_stop() -> Iterator[list[int]]:
    """SIGINT/SIGTERM stop the batch: workers killed, staging removed, exit 130/143. The
    handler only notes the signal (raised inside Ray's wait, an exception breaks it);
    the driver's loop raises within its 0.5 s wait."""
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return

    def handler(signum: int, _frame: object) -> None:
        caught.append(signum)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield caught
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _drive(ray: Any, pool: list[Any], todo: list[Unit], board: Any, bar: _Bar, start: float | None, end: float | None,
           retries: int, caught: list[int]) -> dict[str, dict[str, Any]]:
    pending = list(reversed(todo))
    flight: dict[Any, tuple[Any, Unit, float]] = {}
    results: dict[str, dict[str, Any]] = {}

    def submit(worker: Any) -> None:
        if pending:
            unit = pending.pop()
            ref = worker.process.options(retry_exceptions=True).remote(unit.as_dict(), start, end)
            flight[ref] = (worker, unit, time.monotonic())

    for worker in pool:
        submit(worker)
    snapshot_ref = board.snapshot.remote()
    while flight:
        ready, _ = ray.wait(list(flight), num_returns=1, timeout=0.5)
        if caught:
            raise Interrupted(caught[0])
        done_snap, _ = ray.wait([snapshot_ref], timeout=0)
        if done_snap:
            bar.update(ray.get(snapshot_ref))
            snapshot_ref = board.snapshot.remote()
        for ref in ready:
            worker, unit, submitted = flight.pop(ref)
            elapsed = time.monotonic() - submitted
            try:
                result = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - the worker died or raised more than `retries` times
                result = {"id": unit.id, "input": unit.input, "status": "error", "attempts": retries + 1,
                          "error": f"failed {retries + 1} times, last: {_error_text(exc)}", "exit_code": 1}
            report = result.pop("report", None) or {}
            result.update(_figures(report))
            result["output"] = result.get("output") if result["status"] in ("ok", "partial") else None
            result["seconds"] = round(elapsed, 3)
            # Ray's cost for this file: scheduling, transfer, result, beyond the run itself
            result["overhead_seconds"] = round(max(0.0, elapsed - report["wall_seconds"]), 3) if report else None
            result.pop("id", None)
            results[unit.id] = result
            bar.finish(unit.id, result.get("frames_out", 0))
            if result["status"] not in ("ok", "partial"):
                log.warning("%s: %s", unit.input, result["error"])
            submit(worker)
    return results


def print_table(summary: BatchSummary, stream: Any = None) -> None:
    """The summary table, one line per file and a total."""
    stream = stream or sys.stderr
    head = ("file", "status", "frames", "fps", "covered", "held", "fallback", "tries", "seconds")
    rows = [(Path(f["input"]).name, f["status"], f.get("frames_out", 0), f.get("fps", 0), f.get("regions_covered", 0),
             f.get("regions_held", 0), f.get("fallback_regions", 0), f.get("attempts", "-"), f.get("seconds", "-"))
            for f in summary.files]
    t = summary.totals()
    rows.append(("total", f"{t['done']} done, {t['skipped']} skipped, {t['failed']} failed", t["frames"], t["fps"] or "-",
                 t["regions_covered"], t["regions_held"], t["fallback_regions"], "", round(summary.wall_seconds, 1)))
    widths = [max(len(str(r[i])) for r in (head, *rows)) for i in range(len(head))]
    for r in (head, *rows):
        print("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip(), file=stream)
    for f in summary.failed:
        print(redact(f"failed: {f['input']}: {f.get('error')}"), file=stream)


def run_batch_cli(args: Any, config: Config) -> int:
    """The ``--ray`` branch of ``camstream run``."""
    if not args.output:
        raise ConfigError("--ray needs -o OUTDIR (the folder the outputs go to)")
    if args.retries < 0 or (args.ray_workers is not None and args.ray_workers < 1):
        raise ConfigError("--retries must be >= 0 and --ray-workers >= 1")
    if Path(args.ray).exists():  # `--ray a.mp4 b.mp4`: argparse took the first input for the address
        raise ConfigError(f"--ray {args.ray}: an address or 'auto' goes after --ray (write --ray auto, or put --ray last)")
    if args.preview:
        raise ConfigError("--preview shows one local run; it does not go with --ray")
    skip = True if args.skip_existing is None else args.skip_existing
    summary_path = Path(args.report) if args.report else Path(args.output) / "camstream-summary.json"
    paths.check_target(summary_path, "summary", list(args.input), args.overwrite or not args.report)
    units = plan(list(args.input), args.output)
    paths.check_distinct([("the summary", str(summary_path))] + [(u.input, u.output) for u in units]
                         + [(f"{u.input}'s report", u.report) for u in units])
    summary = run_batch(list(args.input), args.output, config, address=args.ray, workers=args.ray_workers,
                        retries=args.retries, skip_existing=skip, start=args.start, end=args.end,
                        progress=not args.quiet, debug=args.debug, overwrite=args.overwrite)
    text = json.dumps(redacted(json.loads(json.dumps(summary.to_dict(), default=str))), indent=2) + "\n"
    # --report names the summary: the rule of every path a run writes (never an input, an existing
    # file only with --overwrite); the default one in OUTDIR is the batch's own, replaced each run
    paths.write_text(summary_path, text, overwrite=args.overwrite or not args.report)
    print_table(summary)
    codes = {f.get("exit_code", 1) for f in summary.failed}
    return 0 if not codes else (codes.pop() if len(codes) == 1 else 1)
