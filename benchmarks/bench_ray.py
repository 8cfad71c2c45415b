"""Batch throughput on Ray against the same clips one after another without Ray.

    python benchmarks/bench_ray.py [--end 3] [--method pixelate] [--workers 1 2]

Four inputs (vtest.avi, Megamind.avi, Megamind_bugy.avi and vtest.avi again under a
second name), the first ``--end`` seconds of each. Rows:
  * sequential: ``streamer.runner.run`` on each clip in turn, in this process (no Ray;
    the cheapest way to run them one after another: no interpreter start per file),
  * ray, N workers: ``run_batch`` on a local cluster started once (``ray.init``, its
    start-up printed apart), N actors, outputs in a fresh folder each time.
Columns: wall seconds, files per minute, frames per second over the whole batch, and
Ray's overhead per file (the time from submitting a file to getting its result, less
the run's own wall time: scheduling, the worker's start, the staging moves).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("CAMSTREAM_TEST_DATA", REPO.parent / "shared" / "data"))
sys.path.insert(0, str(REPO))


def clips(folder: Path) -> list[str]:
    twin = folder / "vtest-twin.avi"
    twin.symlink_to(DATA / "vtest.avi")
    return [str(DATA / "vtest.avi"), str(DATA / "Megamind.avi"), str(DATA / "Megamind_bugy.avi"), str(twin)]


def row(name: str, wall: float, files: int, frames: int, overhead: float | None) -> str:
    per_min = files / (wall / 60)
    extra = f"{overhead:.2f}" if overhead is not None else "-"
    return f"| {name} | {wall:.1f} | {per_min:.1f} | {frames / wall:.1f} | {extra} |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--end", type=float, default=3.0, help="seconds of each clip (default 3)")
    parser.add_argument("--method", default="pixelate")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)

    import ray

    from streamer.config import Config
    from streamer.runner import run
    from streamer.scale.batch import run_batch

    config = Config()
    config.anonymize.method = args.method
    lines = ["| run | wall s | files/min | fps | Ray overhead s/file |", "| --- | --- | --- | --- | --- |"]
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        inputs = clips(tmp_path)
        seq = tmp_path / "sequential"
        seq.mkdir()
        started = time.perf_counter()
        frames = sum(run(c, str(seq / f"{Path(c).stem}.mp4"), config, end=args.end, progress=False).frames_out for c in inputs)
        lines.append(row("sequential, no Ray", time.perf_counter() - started, len(inputs), frames, None))
        t = time.perf_counter()
        ray.init(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
        cluster_start = time.perf_counter() - t
        try:
            for n in args.workers:
                started = time.perf_counter()
                summary = run_batch(inputs, tmp_path / f"ray{n}", config, workers=n, end=args.end, progress=False)
                wall = time.perf_counter() - started
                done = [f for f in summary.files if f["status"] in ("ok", "partial")]
                assert len(done) == len(inputs), summary.files
                overhead = sum(f["overhead_seconds"] for f in done) / len(done)
                lines.append(row(f"ray, {n} worker{'s' if n > 1 else ''}", wall, len(done),
                                 sum(f["frames_out"] for f in done), overhead))
        finally:
            ray.shutdown()
    print(f"{len(inputs)} clips, first {args.end:g} s each, --method {args.method}, {os.cpu_count()} CPUs; "
          f"local Ray cluster start-up {cluster_start:.1f} s (not in the rows)")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
