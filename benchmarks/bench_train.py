"""Training memory and speed against the dataset's size: synthetic crops in webdataset
shards, tiny RANDOM-weight models (``camstream models make-tiny``), CPU.

    python benchmarks/bench_train.py                         # 1k and 10k samples
    python benchmarks/bench_train.py --sizes 1000 10000 50000 --steps 200

Two measures per dataset size, each in a fresh process (peak RSS is per process):
  read   one epoch of every sample streamed through the DataLoader (decode included):
         peak RSS of the reader and its workers, samples/s;
  train  ``camstream train idf`` for a fixed number of steps: peak RSS of the trainer and
         of its DataLoader workers, samples/s inside the training loop (setup excluded).
RSS that does not grow with the dataset is the point: the shards stream, nothing is
held per sample.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def synthetic_shards(folder: Path, samples: int, size: int) -> None:
    """Random-noise crops (incompressible: the worst case for JPEG bytes in the buffer)."""
    import numpy as np
    import webdataset as wds
    from PIL import Image

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", samples), ("val", 8)):
        with wds.ShardWriter(str(folder / f"{split}-%06d.tar"), maxcount=1000, verbose=0) as w:
            for i in range(count):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buf, format="JPEG", quality=95)
                w.write({"__key__": f"{split}{i:08d}", "jpg": buf.getvalue(), "txt": "a photo of a person",
                         "json": json.dumps({"faces": []})})
    (folder / "info.json").write_text(json.dumps({"size": size, "samples": samples, "val_samples": 8, "light": False}))


def peak_mb() -> tuple[float, float]:
    """Peak RSS of this process and of its largest finished child (workers), MB."""
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)


def child_read(shards: Path, samples: int, resolution: int, batch: int, workers: int) -> dict:
    from camouflage.training.data.shards import Decoder, ShardStream, loader

    stream = ShardStream(shards, "train", Decoder(resolution, resolution), buffer=256, batch_size=batch)
    start, seen = time.perf_counter(), 0
    for b in loader(stream, batch, workers):
        seen += len(b["caption"])
        if seen >= samples:
            break
    wall = time.perf_counter() - start
    own, kids = peak_mb()
    return {"samples_per_s": seen / wall, "rss_mb": own, "worker_rss_mb": kids}


def child_train(shards: Path, models: Path, steps: int, resolution: int, batch: int, workers: int) -> dict:
    import torch

    from camouflage.training import loop as common
    from streamer.cli import main

    torch.set_num_threads(1)
    timed = {}
    loop = common.train_loop

    def timed_loop(*a, **k):  # noqa: ANN002, ANN003, ANN202 - the loop alone, not the model loading
        start = time.perf_counter()
        loop(*a, **k)
        timed["wall"] = time.perf_counter() - start

    common.train_loop = timed_loop
    with tempfile.TemporaryDirectory() as out:
        code = main(["train", "idf", "--data", str(shards), "--models-dir", str(models), "--output", out, "--steps", str(steps),
                     "--resolution", str(resolution), "--batch-size", str(batch), "--save-every", str(steps),
                     "--log-every", str(steps), "--validate-every", "0", "--workers", str(workers), "--device", "cpu"])
    own, kids = peak_mb()
    return {"code": code, "samples_per_s": steps * batch / timed["wall"], "rss_mb": own, "worker_rss_mb": kids}


def run_child(*argv: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", *argv], capture_output=True, text=True, cwd=REPO)
    if done.returncode:
        raise SystemExit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000])
    p.add_argument("--steps", type=int, default=100, help="training steps per size (default 100)")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--resolution", type=int, default=32, help="training resolution (tiny models: a multiple of 16)")
    p.add_argument("--stored", type=int, default=64, help="side of the stored crops (default 64)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        kind, *rest = args.child
        if kind == "read":
            out = child_read(Path(rest[0]), int(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]))
        else:
            out = child_train(Path(rest[0]), Path(rest[1]), int(rest[2]), int(rest[3]), int(rest[4]), int(rest[5]))
        print(json.dumps(out))
        return

    import torch

    from camouflage.models.tiny import make_tiny

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        models = make_tiny(Path(tmp) / "tiny", resolution=64)
        for n in args.sizes:
            shards = Path(tmp) / f"shards-{n}"
            synthetic_shards(shards, n, args.stored)
            mb = sum(f.stat().st_size for f in shards.iterdir()) / 2**20
            read = run_child("read", str(shards), str(n), str(args.stored), str(args.batch_size), str(args.workers))
            train = run_child("train", str(shards), str(models), str(args.steps), str(args.resolution), str(args.batch_size),
                              str(args.workers))
            rows.append((n, mb, read, train))
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, batch {args.batch_size}, {args.workers} workers, "
          f"stored {args.stored} px, trained at {args.resolution} px, {args.steps} steps")
    print("| samples | shards MB | read: samples/s | read: RSS MB (worker) | train: samples/s | train: RSS MB (worker) |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n, mb, r, t in rows:
        print(f"| {n} | {mb:.0f} | {r['samples_per_s']:.0f} | {r['rss_mb']:.0f} ({r['worker_rss_mb']:.0f}) | "
              f"{t['samples_per_s']:.1f} | {t['rss_mb']:.0f} ({t['worker_rss_mb']:.0f}) |")


if __name__ == "__main__":
    main()
