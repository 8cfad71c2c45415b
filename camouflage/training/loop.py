"""What ``camstream train idf`` and ``camstream train light`` share: their common
options, the streamed batches, the Accelerator and the training loop.

Training data are shards made by ``camstream data prepare`` (camouflage/training/data/), read
with constant memory by :class:`camouflage.training.data.shards.ShardStream`: split between the
processes of ``accelerate launch`` and the DataLoader workers, shuffled through a buffer.

Accelerate does the devices, mixed precision, DDP and checkpoints; the loop adds what
both trainings need around it:

* each optimizer step takes ``--grad-accum`` batches per process; the batch order and
  every step's noise are functions of (seed, step, process), so a resumed run sees
  exactly what an uninterrupted one would (same weights at the end). That needs the same
  number of processes, batch size, accumulation and workers: a resume that changes them
  is refused with a clear error;
* the main process alone writes ``OUTPUT/loss.csv`` (step, loss averaged over the
  processes, eval_loss on the held-out samples), the log lines and validations;
* ``OUTPUT/checkpoint-STEP/`` every ``save_every`` steps and at the end, each with the
  step and the run's layout, so ``--resume`` (bare: the latest checkpoint) continues.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

log = logging.getLogger("camstream")

STEP_FILE = "camstream_step.json"
# what must not change between a checkpoint and its resume for the resume to be exact
LAYOUT = ("num_processes", "batch_size", "grad_accum", "workers", "seed")


def add_common_arguments(p: argparse.ArgumentParser, lr: float, resolution: int, what: str) -> None:
    """The options of every ``camstream train`` command (``--models-dir`` and ``--output`` are
    the command's own: their help says what goes in them)."""
    p.add_argument("--data", required=True, metavar="SHARDS", help=f"shards from camstream data prepare{what}")
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps in total (a resumed run continues to this)")
    p.add_argument("--resume", nargs="?", const="latest", metavar="PATH",
                   help="continue from a checkpoint folder (bare --resume: the latest OUTPUT/checkpoint-STEP)")
    p.add_argument("--resolution", type=int, default=resolution,
                   help=f"side of the training crops in pixels (default {resolution}, the inference resolution)")
    p.add_argument("--batch-size", type=int, default=4, help="samples per process and batch (default 4)")
    p.add_argument("--grad-accum", type=int, default=1, help="batches accumulated per optimizer step (default 1)")
    p.add_argument("--lr", type=float, default=lr, help=f"AdamW learning rate (default {lr:g})")
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint (and eval_loss) every N steps and at the end")
    p.add_argument("--log-every", type=int, default=10, help="a log line and a loss.csv row every N steps (default 10)")
    p.add_argument("--validate-every", type=int, default=1000, help="validation images and scores every N steps (0: never)")
    p.add_argument("--validation-steps", type=int, default=25, help="denoising steps of the validation images (default 25)")
    p.add_argument("--val-samples", type=int, default=8, help="held-out samples (val-*.tar) validated on (default 8)")
    p.add_argument("--workers", type=int, default=2, help="DataLoader worker processes per training process (default 2)")
    p.add_argument("--shuffle-buffer", type=int, default=256, help="samples in each stream's shuffle buffer (default 256)")
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto", help="auto: bf16 on GPU, no on CPU")
    p.add_argument("--seed", type=int, default=0, help="seeds the weights' init, the batch order and the noise (default 0)")
    p.add_argument("--device", default="auto", help="cpu forces CPU; auto uses a GPU when there is one")


def check_common(args: argparse.Namespace, multiple: int) -> None:
    from streamer.errors import ConfigError

    for name in ("steps", "batch_size", "grad_accum", "save_every", "log_every", "validation_steps"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1")
    if args.resolution < multiple or args.resolution % multiple:
        raise ConfigError(f"--resolution {args.resolution}: must be a multiple of {multiple}")
    if args.workers < 0 or args.validate_every < 0 or args.val_samples < 0:
        raise ConfigError("--workers, --validate-every and --val-samples must be >= 0")


def make_accelerator(args: argparse.Namespace, output: Path) -> tuple[Any, Any]:
    """The Accelerator for ``--device``/``--mixed-precision`` (auto: bf16 on a GPU, fp32
    on CPU) and ``--grad-accum``, seeded with ``--seed``; and the dtype of the frozen models."""
    import torch
    from accelerate import Accelerator
    from accelerate.utils import set_seed

    cpu = args.device == "cpu" or not torch.cuda.is_available()
    precision = ("no" if cpu else "bf16") if args.mixed_precision == "auto" else args.mixed_precision
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu, project_dir=str(output),
                              gradient_accumulation_steps=args.grad_accum)
    set_seed(args.seed)
    return accelerator, {"no": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class Run(NamedTuple):
    """What a training run is set up with (:func:`start_run`)."""

    output: Path
    accelerator: Any
    weight_dtype: Any  # of the frozen models
    layout: dict[str, int]
    resume: Path | None  # the checkpoint ``--resume`` names, checked against ``layout``


def start_run(args: argparse.Namespace) -> Run:
    """``--output`` made, the Accelerator (:func:`make_accelerator`), this run's layout and
    the ``--resume`` checkpoint checked against it: the start both trainers share."""
    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    accelerator, weight_dtype = make_accelerator(args, output)
    run_layout = layout(args, accelerator)
    return Run(output, accelerator, weight_dtype, run_layout, resolve_resume(args.resume, output, run_layout))


def load_frozen_sd15(sd: Path, vae: Path) -> tuple[Any, Any, Any, Any, Any]:
    """SD1.5 from its folder ``sd`` and the VAE from ``vae``, frozen (no gradients): the VAE,
    U-Net, text encoder, tokenizer and the DDPM noise scheduler both trainers train against."""
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return (AutoencoderKL.from_pretrained(vae, use_safetensors=True).requires_grad_(False),
            UNet2DConditionModel.from_pretrained(sd / "unet", use_safetensors=True).requires_grad_(False),
            CLIPTextModel.from_pretrained(sd / "text_encoder", use_safetensors=True).requires_grad_(False),
            CLIPTokenizer.from_pretrained(sd / "tokenizer"),
            DDPMScheduler.from_pretrained(sd / "scheduler"))


def to_device(models: list[Any], device: Any, dtype: Any) -> None:
    """Frozen models onto the device, cast only when the dtype changes (diffusers warns on any cast)."""
    import torch

    for model in models:
        model.to(device) if dtype == torch.float32 else model.to(device, dtype=dtype)


def check_streams(args: argparse.Namespace, accelerator: Any, samples: int) -> None:
    """Every (process, worker) stream needs samples of its own."""
    from streamer.errors import ConfigError

    streams = accelerator.num_processes * max(1, args.workers)
    if samples < streams:
        raise ConfigError(f"{samples} training samples cannot feed {accelerator.num_processes} process(es) x "
                          f"{max(1, args.workers)} worker(s): use fewer --workers or more data")


def shard_streams(args: argparse.Namespace, accelerator: Any, decoder: Any, info: dict[str, Any],
                  main_process: bool) -> tuple[Callable[[int], Iterator[Any]], Any]:
    """This process's endless training batches (``batches(skip)``: after ``skip`` batches,
    for an exact resume) and the held-out stream (the training split when the shards hold
    none). Both trainers read their shards this way."""
    from .data.shards import ShardStream, loader

    check_streams(args, accelerator, info["samples"])
    rank, world = accelerator.process_index, accelerator.num_processes

    def batches(skip: int) -> Iterator[Any]:
        stream = ShardStream(Path(args.data), "train", decoder, seed=args.seed, rank=rank, world=world,
                             buffer=args.shuffle_buffer, batch_size=args.batch_size, skip_batches=skip)
        return iter(loader(stream, args.batch_size, args.workers))

    held_split = "val" if info.get("val_samples") else "train"
    if held_split == "train" and main_process:
        log.warning("%s has no held-out samples (prepare --holdout): validating on training samples", args.data)
    held = ShardStream(Path(args.data), held_split, decoder, endless=False, limit=max(1, args.val_samples))
    return batches, held


def save_grid(rows: list[Any], output: Path, step: int) -> None:
    """A validation grid (rows of (3, H, W) tensors in [0, 1], side by side within a row) as
    ``OUTPUT/validation/step-STEP.png``."""
    import numpy as np
    import torch
    from PIL import Image

    grid = (torch.cat(rows, dim=1).permute(1, 2, 0).cpu().numpy() * 255).round().clip(0, 255).astype(np.uint8)
    folder = output / "validation"
    folder.mkdir(exist_ok=True)
    Image.fromarray(grid).save(folder / f"step-{step}.png")


def train_with_args(accelerator: Any, model: Any, optimizer: Any, output: Path, args: argparse.Namespace,  # noqa: ANN401
                    **callbacks: Any) -> None:
    """:func:`train_loop` with the common options (``add_common_arguments``) taken from ``args``;
    ``callbacks``: batches, batch_loss, evaluate, validate, run_layout, resume."""
    train_loop(accelerator, model, optimizer, output, steps=args.steps, seed=args.seed, save_every=args.save_every,
               log_every=args.log_every, grad_accum=args.grad_accum, batch_size=args.batch_size,
               validate_every=args.validate_every, **callbacks)


def layout(args: argparse.Namespace, accelerator: Any) -> dict[str, int]:
    return {"num_processes": accelerator.num_processes, "batch_size": args.batch_size, "grad_accum": args.grad_accum,
            "workers": args.workers, "seed": args.seed}


def latest_checkpoint(output: Path) -> Path | None:
    found = [(int(p.name.split("-")[1]), p) for p in output.glob("checkpoint-*") if p.name.split("-")[1].isdigit()]
    return max(found)[1] if found else None


def resolve_resume(resume: str | None, output: Path, current: dict[str, int] | None = None) -> Path | None:
    """``--resume``'s checkpoint folder (``latest``: the newest in ``output``); a clear error
    when there is none, or when it was written by a run of another layout (process count,
    batch size, accumulation, workers, seed): its resume could not be exact."""
    from streamer.errors import ConfigError

    if resume is None:
        return None
    path = latest_checkpoint(output) if resume == "latest" else Path(resume)
    if path is None:
        raise ConfigError(f"--resume: no checkpoint-STEP folder in {output}")
    if not (path / STEP_FILE).is_file():
        raise ConfigError(f"--resume: {path} is not a checkpoint folder (no {STEP_FILE})")
    saved = json.loads((path / STEP_FILE).read_text())
    for key in LAYOUT if current is not None else ():
        if key in saved and saved[key] != current[key]:
            raise ConfigError(f"--resume: {path.name} was written with {key.replace('_', ' ')} {saved[key]}, this run has "
                              f"{current[key]}; an exact resume needs the same (relaunch with {saved[key]}, or start a new --output)")
    return path


def train_loop(
    accelerator: Any,
    model: Any,
    optimizer: Any,
    output: Path,
    *,
    steps: int,
    seed: int,
    batches: Callable[[int], Iterator[Any]],
    batch_loss: Callable[[Any, Any], Any],
    evaluate: Callable[[], float] | None,
    save_every: int,
    log_every: int,
    grad_accum: int = 1,
    batch_size: int = 1,
    run_layout: dict[str, int] | None = None,
    resume: Path | None = None,
    validate: Callable[[int], None] | None = None,
    validate_every: int = 0,
) -> None:
    """Optimise ``model`` (prepared by ``accelerator`` with ``optimizer``) until ``steps``.

    ``batches(skip)`` is this process's endless batch iterator after ``skip`` batches;
    ``batch_loss(batch, rng)`` returns the loss of one batch, its noise drawn from the
    ``torch.Generator`` it is given; ``evaluate()`` is the loss on the held-out samples and
    ``validate(step)`` writes whatever shows progress (both on the main process only)."""
    import torch

    main = accelerator.is_main_process
    step = 0
    if resume is not None:
        accelerator.load_state(str(resume))
        step = json.loads((resume / STEP_FILE).read_text())["step"]
        if main:
            log.info("resumed from %s at step %d", resume, step)

    loss_log = output / "loss.csv"
    if main and not loss_log.exists():
        loss_log.write_text("step,loss,eval_loss\n")
    if main and step == 0 and evaluate is not None:
        with loss_log.open("a") as f:
            f.write(f"0,,{evaluate():.6f}\n")
    if main and step == 0 and validate is not None and validate_every:
        validate(0)  # the starting point the later validations compare with
    stream = batches(step * grad_accum)
    rank = accelerator.process_index
    running = math.nan
    clock, since = time.perf_counter(), step
    per_step = accelerator.num_processes * grad_accum  # batches per optimizer step, all processes
    while step < steps:
        total = 0.0
        for micro in range(grad_accum):
            rng = torch.Generator().manual_seed(((seed * 1_000_003 + step) * 64 + micro) * 1024 + rank)
            batch = next(stream)
            with accelerator.accumulate(model), accelerator.autocast():
                loss = batch_loss(batch, rng)
                accelerator.backward(loss)
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                optimizer.zero_grad()
            total += float(accelerator.reduce(loss.detach(), "mean")) / grad_accum
        step += 1
        running = total if math.isnan(running) else 0.9 * running + 0.1 * total
        last = step == steps
        save = step % save_every == 0 or last
        if main:
            eval_loss = evaluate() if save and evaluate is not None else None
            if step % log_every == 0 or last or eval_loss is not None:
                now = time.perf_counter()
                rate = (step - since) * per_step * batch_size / max(now - clock, 1e-9)
                clock, since = now, step
                log.info("step %d/%d loss %.5f (avg %.5f)%s, %.1f samples/s", step, steps, total, running,
                         f" eval {eval_loss:.5f}" if eval_loss is not None else "", rate)
                with loss_log.open("a") as f:
                    f.write(f"{step},{total:.6f},{'' if eval_loss is None else f'{eval_loss:.6f}'}\n")
            if validate is not None and validate_every and (step % validate_every == 0 or last):
                validate(step)
        if save:
            path = output / f"checkpoint-{step}"
            accelerator.wait_for_everyone()
            accelerator.save_state(str(path), safe_serialization=True)
            if main:
                (path / STEP_FILE).write_text(json.dumps({"step": step, **(run_layout or {})}))
        accelerator.wait_for_everyone()
