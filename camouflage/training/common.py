"""What ``camstream train idf`` and ``camstream train light`` share: their common
options, the frames they sample from a folder of images and videos, the Accelerator,
and the training loop.

Accelerate does the devices, mixed precision and checkpoints; the loop adds what both
trainings need around it:

* each step's batch and noise are drawn from ``(seed, step)``, so a resumed run sees
  exactly what an uninterrupted one would (same weights at the end);
* ``OUTPUT/loss.csv`` (step, loss, eval_loss on a fixed evaluation set) and a log line
  every ``log_every`` steps;
* ``OUTPUT/checkpoint-STEP/`` every ``save_every`` steps and at the end, each with the
  step it holds, so ``--resume`` (bare: the latest checkpoint) continues the count.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

log = logging.getLogger("camstream")

STEP_FILE = "camstream_step.json"
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}


def add_common_arguments(p: argparse.ArgumentParser, lr: float) -> None:
    """The options of every ``camstream train`` command (``--data``, ``--models-dir`` and
    ``--output`` are the command's own: their help says what goes in them)."""
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps in total (a resumed run continues to this)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="PATH",
                   help="continue from a checkpoint folder (bare --resume: the latest OUTPUT/checkpoint-STEP)")
    p.add_argument("--resolution", type=int, default=512, help="side of the square training crops in pixels (default 512)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per optimizer step (default 4)")
    p.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate (default {lr:g})")
    p.add_argument("--frames-per-video", type=int, default=32, help="frames sampled evenly from each video (default 32)")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    p.add_argument("--log-every", type=int, default=10, help="a log line and a loss.csv row every N steps (default 10)")
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto", help="auto: bf16 on GPU, no on CPU")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights' init, the batches and the noise (default 0)")
    p.add_argument("--device", default="auto", help="cpu forces CPU; auto uses a GPU when there is one")


def sample_frames(folder: Path, frames_per_video: int) -> Iterator[tuple[Any, Path, int]]:
    """Every image under ``folder`` and ``frames_per_video`` frames spread over each video:
    ``(RGB uint8 array, file, frame index)``, one at a time (the caller keeps what it
    needs at its size); a video that does not decode is skipped with a warning; nothing
    at all is a clear error."""
    import av
    import numpy as np
    from PIL import Image

    from streamer.errors import InputError

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    count = 0
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            count += 1
            yield np.asarray(Image.open(path).convert("RGB")), path, 0
            continue
        try:
            with av.open(str(path)) as c:
                total = c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
            wanted = set(np.linspace(0, total - 1, min(frames_per_video, total)).round().astype(int).tolist())
            with av.open(str(path)) as c:  # keep only the sampled frames in memory
                for i, f in enumerate(c.decode(video=0)):
                    if i in wanted:
                        count += 1
                        yield f.to_ndarray(format="rgb24"), path, i
                    if i >= max(wanted, default=-1):
                        break
        except (av.error.FFmpegError, IndexError) as exc:
            log.warning("%s: skipped (%s)", path, exc)
    if not count:
        raise InputError(f"{folder}: no images or videos to train on")


def make_accelerator(args: argparse.Namespace, output: Path) -> tuple[Any, Any]:
    """The Accelerator for ``--device``/``--mixed-precision`` (auto: bf16 on a GPU, fp32
    on CPU), seeded with ``--seed``; and the dtype of the frozen models."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cpu = args.device == "cpu" or not torch.cuda.is_available()
    precision = ("no" if cpu else "bf16") if args.mixed_precision == "auto" else args.mixed_precision
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu, project_dir=str(output))
    set_seed(args.seed)
    return accelerator, {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def latest_checkpoint(output: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in output.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(found)[1] if found else None


def resolve_resume(resume: str | None, output: Path) -> Path | None:
    """``--resume``'s checkpoint folder (``latest``: the newest in ``output``); a clear
    error when there is none."""
    from streamer.errors import ConfigError

    if resume is None:
        return None
    path = latest_checkpoint(output) if resume == "latest" else Path(resume)
    if path is None:
        raise ConfigError(f"--resume: no checkpoint-STEP folder in {output}")
    if not (path / STEP_FILE).is_file():
        raise ConfigError(f"--resume: {path} is not a checkpoint folder (no {STEP_FILE})")
    return path


def train_loop(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    output: Path,
    *,
    steps: int,
    seed: int,
    batch_loss: Callable[[Any], Any],
    evaluate: Callable[[], float],
    save_every: int,
    log_every: int,
    resume: Path | None = None,
    validate: Callable[[int], None] | None = None,
    validate_every: int = 0,
) -> None:
    """Optimise ``model`` (prepared by ``accelerator`` with ``optimizer``) until ``steps``.

    ``batch_loss(rng)`` draws a batch and its noise from the ``torch.Generator`` it is
    given and returns the loss; ``evaluate()`` is the loss on a fixed evaluation set;
    ``validate(step)`` (optional) writes whatever shows progress."""
    import torch

    step = 0
    if resume is not None:
        accelerator.load_state(str(resume))
        step = json.loads((resume / STEP_FILE).read_text())["step"]
        log.info("resumed from %s at step %d", resume, step)

    loss_log = output / "loss.csv"
    if not loss_log.exists():
        loss_log.write_text("step,loss,eval_loss\n")
    if step == 0:
        with loss_log.open("a") as f:
            f.write(f"0,,{evaluate():.6f}\n")
    running = math.nan
    while step < steps:
        rng = torch.Generator().manual_seed(seed * 1_000_003 + step)
        with accelerator.accumulate(model), accelerator.autocast():
            loss = batch_loss(rng)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        step += 1
        value = float(loss.detach())
        running = value if math.isnan(running) else 0.9 * running + 0.1 * value
        last = step == steps
        eval_loss = evaluate() if (step % save_every == 0 or last) else None
        if step % log_every == 0 or last or eval_loss is not None:
            log.info("step %d/%d loss %.5f (avg %.5f)%s", step, steps, value, running,
                     f" eval {eval_loss:.5f}" if eval_loss is not None else "")
            with loss_log.open("a") as f:
                f.write(f"{step},{value:.6f},{'' if eval_loss is None else f'{eval_loss:.6f}'}\n")
        if validate is not None and validate_every and (step % validate_every == 0 or last):
            validate(step)
        if step % save_every == 0 or last:
            path = output / f"checkpoint-{step}"
            accelerator.save_state(str(path), safe_serialization=True)
            (path / STEP_FILE).write_text(json.dumps({"step": step}))
