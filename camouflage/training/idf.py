"""``camstream train idf``: train the identity-function (IDF) ControlNet of CAMOUFLaGE-Base.

The IDF ControlNet is conditioned on an image's own VAE latents and learns to make the
frozen UNet reconstruct that image (plain epsilon-prediction loss). At inference its
prediction is the negative branch of the identity guidance (pipelines/base.py).

    camstream train idf --data frames/ --models-dir models --output runs/idf --steps 20000

Accelerate runs it (bf16 on a GPU, fp32 on CPU); ``--resume`` continues a checkpoint
(bare: the latest), exactly as an uninterrupted run would (training/common.py).
Writes ``OUTPUT/loss.csv`` (step, loss, eval_loss), ``OUTPUT/checkpoint-STEP/`` and the
final ``OUTPUT/idf_controlnet/`` (safetensors; copy it to --models-dir/idf_controlnet).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from .common import add_common_arguments, sample_frames

log = logging.getLogger("camstream")



def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, metavar="DIR", help="folder of images and/or videos (frames are sampled)")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout (sd15, vae[, idf_controlnet])")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoints, loss.csv and the trained idf_controlnet/")
    add_common_arguments(p, lr=1e-5)
    p.add_argument("--prompt", default="", help="text condition during training (default empty)")


def load_images(folder: Path, resolution: int, frames_per_video: int):  # noqa: ANN201 - torch.Tensor (N, 3, R, R) in [-1, 1]
    """Centre squares of the sampled images and frames at ``resolution``."""
    import numpy as np
    import torch
    from PIL import Image

    def square(rgb: np.ndarray) -> torch.Tensor:
        h, w = rgb.shape[:2]
        s = min(w, h)
        y, x = (h - s) // 2, (w - s) // 2
        img = Image.fromarray(rgb[y:y + s, x:x + s]).resize((resolution, resolution), Image.BICUBIC)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 127.5 - 1

    return torch.stack([square(rgb) for rgb, _, _ in sample_frames(folder, frames_per_video)])


def main(args: argparse.Namespace) -> int:
    import torch
    import torch.nn.functional as F
    from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    from ..manifest import ModelResolver
    from ..pipelines.base import make_idf_controlnet
    from .common import make_accelerator, resolve_resume, train_loop

    output = Path(args.output)
    output.mkdir(parents=True, exist_ok=True)
    resume = resolve_resume(args.resume, output)
    accelerator, weight_dtype = make_accelerator(args, output)

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
    device = accelerator.device
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

    def batch_loss(rng: torch.Generator) -> torch.Tensor:
        idx = torch.randint(0, len(latents_all), (args.batch_size,), generator=rng)
        latents = latents_all[idx]
        noise = torch.randn(latents.shape, generator=rng).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=rng).to(device)
        return loss_on(latents, noise, t)

    train_loop(accelerator, idf, optimizer, output, steps=args.steps, seed=args.seed, batch_loss=batch_loss,
               evaluate=evaluate, save_every=args.save_every, log_every=args.log_every, resume=resume)
    final = output / "idf_controlnet"
    accelerator.unwrap_model(idf).save_pretrained(final, safe_serialization=True)
    print(f"IDF ControlNet written to {final} (copy it to MODELS_DIR/idf_controlnet)")
    return 0
