"""``camstream train idf``: train the identity-function (IDF) ControlNet of CAMOUFLaGE-Base.

The IDF ControlNet is conditioned on an image's own VAE latents and learns to make the
frozen UNet reconstruct that image (plain epsilon-prediction loss). At inference its
prediction is the negative branch of the identity guidance (pipelines/base.py).

    camstream train idf --data frames/ --models-dir models --output runs/idf --steps 20000

Accelerate runs it (bf16 on a GPU, fp32 on CPU); ``--resume`` continues a checkpoint.
Writes ``OUTPUT/loss.csv`` (step, loss, eval_loss), ``OUTPUT/checkpoint-STEP/`` and the
final ``OUTPUT/idf_controlnet/`` (safetensors; copy it to --models-dir/idf_controlnet).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
from pathlib import Path

log = logging.getLogger("camstream")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="folder of images and/or videos (frames are sampled)")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout (sd15, vae[, idf_controlnet])")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoints, loss.csv and the trained idf_controlnet/")
    p.add_argument("--steps", type=int, default=10000, help="optimizer steps in total (a resumed run continues to this)")
    p.add_argument("--resume", metavar="PATH", help="checkpoint folder to continue from (OUTPUT/checkpoint-STEP)")
    p.add_argument("--resolution", type=int, default=512)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--lr", type=float, default=1e-5)
    p.add_argument("--frames-per-video", type=int, default=32)
    p.add_argument("--save-every", type=int, default=1000, help="checkpoint every N steps (and at the end)")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--mixed-precision", choices=["auto", "no", "bf16", "fp16"], default="auto", help="auto: bf16 on GPU, no on CPU")
    p.add_argument("--prompt", default="", help="text condition during training (default empty)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="cpu forces CPU; auto uses a GPU when there is one")


def load_images(folder: Path, resolution: int, frames_per_video: int):  # noqa: ANN201 - torch.Tensor (N, 3, R, R) in [-1, 1]
    import av
    import numpy as np
    import torch
    from PIL import Image

    from streamer.errors import InputError

    def square(img: Image.Image) -> torch.Tensor:
        w, h = img.size
        s = min(w, h)
        img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)).resize((resolution, resolution), Image.BICUBIC)
        return torch.from_numpy(np.array(img.convert("RGB"))).permute(2, 0, 1).float() / 127.5 - 1

    files = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES)
    images = []
    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            images.append(square(Image.open(path)))
            continue
        with av.open(str(path)) as c:
            total = c.streams.video[0].frames or sum(1 for _ in av.open(str(path)).decode(video=0))
            wanted = set(np.linspace(0, total - 1, min(frames_per_video, total)).round().astype(int).tolist())
            for i, frame in enumerate(c.decode(video=0)):
                if i in wanted:
                    images.append(square(frame.to_image()))
                if i >= max(wanted, default=-1):
                    break
    if not images:
        raise InputError(f"{folder}: no images or videos to train on")
    return torch.stack(images)


def main(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..manifest import ModelResolver
    from ..pipelines.base import make_idf_controlnet

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    cpu = args.device == "cpu" or not torch.cuda.is_available()
    precision = ("no" if cpu else "bf16") if args.mixed_precision == "auto" else args.mixed_precision
    accelerator = Accelerator(mixed_precision=precision, cpu=cpu, project_dir=str(output))
    set_seed(args.seed)

    resolver = ModelResolver(models_dir=args.models_dir)
    paths = resolver.resolve_many(["sd15", "vae"])
    if resolver.random_weights:
        log.warning("RANDOM WEIGHTS: %s holds tiny random models (make-tiny); the result is meaningless", args.models_dir)
    sd = paths["sd15"]
    vae = AutoencoderKL.from_pretrained(paths["vae"], use_safetensors=True).requires_grad_(False)
    unet = UNet2DConditionModel.from_pretrained(sd / "unet", use_safetensors=True).requires_grad_(False)
    text_encoder = CLIPTextModel.from_pretrained(sd / "text_encoder", use_safetensors=True).requires_grad_(False)
    tokenizer = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    noise_scheduler = DDPMScheduler.from_pretrained(sd / "scheduler")
    idf = make_idf_controlnet(unet)
    idf.train()

    images = load_images(Path(args.data), args.resolution, args.frames_per_video)
    log.info("IDF training: %d images at %d px, %d steps, batch %d, %s", len(images), args.resolution, args.steps,
             args.batch_size, accelerator.device)
    optimizer = torch.optim.AdamW(idf.parameters(), lr=args.lr, weight_decay=1e-2)
    idf, optimizer = accelerator.prepare(idf, optimizer)
    device, weight_dtype = accelerator.device, torch.float32 if precision == "no" else (
        torch.bfloat16 if precision == "bf16" else torch.float16)
    for model in (vae, unet, text_encoder):
        model.to(device, dtype=weight_dtype)

    with torch.no_grad():
        ids = tokenizer([args.prompt], padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        text = text_encoder(ids)[0]
        latents_all = torch.cat([
            vae.encode(images[i:i + 8].to(device, weight_dtype)).latent_dist.mean * vae.config.scaling_factor
            for i in range(0, len(images), 8)
        ]).float()

    # a fixed evaluation set (same noise, same timesteps every time): a loss that can be compared
    g = torch.Generator().manual_seed(args.seed + 1)
    n_eval = min(len(latents_all), 8)
    eval_latents = latents_all[:n_eval]
    eval_noise = torch.randn(eval_latents.shape, generator=g).to(device)
    eval_t = torch.linspace(50, noise_scheduler.config.num_train_timesteps - 50, n_eval).long().to(device)

    def loss_on(latents, noise, t):  # noqa: ANN001, ANN202
        noisy = noise_scheduler.add_noise(latents, noise, t)
        cond = text.expand(len(latents), -1, -1)
        down, mid = idf(noisy.to(weight_dtype), t, encoder_hidden_states=cond, controlnet_cond=latents.to(weight_dtype),
                        return_dict=False)
        pred = unet(noisy.to(weight_dtype), t, encoder_hidden_states=cond, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid, return_dict=False)[0]
        return F.mse_loss(pred.float(), noise.float())

    def evaluate() -> float:
        idf.eval()
        with torch.no_grad(), accelerator.autocast():
            value = float(loss_on(eval_latents, eval_noise, eval_t))
        idf.train()
        return value

    step = 0
    if args.resume:
        accelerator.load_state(args.resume)
        step = json.loads((Path(args.resume) / "camstream_step.json").read_text())["step"]
        log.info("resumed from %s at step %d", args.resume, step)

    def save(tag_step: int) -> Path:
        path = output / f"checkpoint-{tag_step}"
        accelerator.save_state(str(path), safe_serialization=True)
        (path / "camstream_step.json").write_text(json.dumps({"step": tag_step}))
        return path

    loss_log = output / "loss.csv"
    if not loss_log.exists():
        loss_log.write_text("step,loss,eval_loss\n")
    if step == 0:
        with loss_log.open("a") as f:
            f.write(f"0,,{evaluate():.6f}\n")
    running = math.nan
    while step < args.steps:
        # batch and noise drawn from (seed, step): a resumed run sees exactly what an uninterrupted one would
        rng = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
        idx = torch.randint(0, len(latents_all), (args.batch_size,), generator=rng)
        latents = latents_all[idx]
        noise = torch.randn(latents.shape, generator=rng).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=rng).to(device)
        with accelerator.accumulate(idf), accelerator.autocast():
            loss = loss_on(latents, noise, t)
            accelerator.backward(loss)
            accelerator.clip_grad_norm_(idf.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad()
        step += 1
        loss = loss.detach()
        running = float(loss) if math.isnan(running) else 0.9 * running + 0.1 * float(loss)
        last = step == args.steps
        eval_loss = evaluate() if (step % args.save_every == 0 or last) else None
        if step % args.log_every == 0 or last or eval_loss is not None:
            log.info("step %d/%d loss %.5f (avg %.5f)%s", step, args.steps, float(loss), running,
                     f" eval {eval_loss:.5f}" if eval_loss is not None else "")
            with loss_log.open("a") as f:
                f.write(f"{step},{float(loss):.6f},{'' if eval_loss is None else f'{eval_loss:.6f}'}\n")
        if step % args.save_every == 0 or last:
            save(step)
    final = output / "idf_controlnet"
    accelerator.unwrap_model(idf).save_pretrained(final, safe_serialization=True)
    print(f"IDF ControlNet written to {final} (copy it to MODELS_DIR/idf_controlnet)")
    return 0
