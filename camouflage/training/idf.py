"""``camstream train idf``: train the identity-function (IDF) ControlNet of CAMOUFLaGE-Base.

    camstream data prepare faces/ --output shards/ --captioner --models-dir models
    camstream train idf --data shards/ --models-dir models --output runs/idf --steps 20000
    accelerate launch --num_processes 4 -m streamer train idf ...     # several GPUs

The IDF ControlNet is conditioned on an image's own VAE latents and learns to make the
frozen UNet reconstruct that image (epsilon-prediction loss). At inference it is the
negative branch of Base's identity guidance (base/pipeline.py), where it gets the crop's
VAE latents as its condition and the crop's *caption* as its text: so it trains on the
caption too (``--caption-drop`` of the time on the empty prompt, the ``base.prompt: ""``
case), at the inference resolution (``base.resolution``, 768) unless told otherwise.
Latents stored by ``data prepare --latent-resolution R`` are used when R is the training
resolution (the VAE encoder then never runs).

Every ``--validate-every`` steps, on the held-out samples (``val-*.tar``): the a_s = 0
reconstruction (the IDF branch alone, which is what Base gives at a_s = 0) from
``base.strength`` with DDIM, its PSNR against the original (and LPIPS when the ``lpips``
package and its weights are there) in ``OUTPUT/validation.csv``; and
``OUTPUT/validation/step-STEP.png``: original | a_s = 0 | a_s = 1.25 (the last only when
the rest of Base, its ControlNets and annotators, are in --models-dir).

Writes ``OUTPUT/loss.csv``, ``OUTPUT/checkpoint-STEP/`` (``--resume`` continues exactly)
and the final ``OUTPUT/idf_controlnet/`` (safetensors; copy it to MODELS_DIR/idf_controlnet).
"""

from __future__ import annotations

import argparse
import logging
import math
from pathlib import Path
from typing import Any

from .loop import add_common_arguments

log = logging.getLogger("camstream")

VALIDATION_SCALE = 1.25  # the paper's a_s for Base


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamer.config import BaseConfig

    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout (sd15, vae; the rest of Base for a_s = 1.25 images)")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoints, loss.csv, validation and the trained idf_controlnet/")
    add_common_arguments(p, lr=1e-5, resolution=BaseConfig().resolution, what="")
    p.add_argument("--caption-drop", type=float, default=0.1, help="probability of training on the empty prompt (default 0.1)")
    p.add_argument("--strength", type=float, default=BaseConfig().strength,
                   help=f"img2img strength of the validation images (default {BaseConfig().strength}, base.strength)")
    p.add_argument("--no-anonymized", action="store_true", help="validate the a_s = 0 reconstruction only (no a_s = 1.25 images)")
    p.add_argument("--no-cached-latents", action="store_true", help="encode the crops with the VAE even if the shards hold latents")


def psnr(a: Any, b: Any) -> list[float]:
    """Per-image PSNR (dB) of two (N, 3, H, W) batches in [0, 1]."""
    mse = ((a.float() - b.float()) ** 2).flatten(1).mean(1).clamp_min(1e-10)
    return (10 * mse.reciprocal().log10()).tolist()


def lpips_metric(device: Any) -> Any:
    """LPIPS (AlexNet) when the ``lpips`` package and its weights load, else None."""
    try:
        import lpips

        return lpips.LPIPS(net="alex", verbose=False).to(device).eval()
    except Exception as exc:  # noqa: BLE001 - optional: not installed, or its weights cannot download
        log.info("LPIPS not measured (%s)", str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        return None


def reconstruct_as0(unet: Any, idf: Any, scheduler_config: Any, latents: Any, text: Any, steps: int, strength: float,
                    seeds: list[int]) -> Any:
    """Base at a_s = 0, i.e. the IDF branch alone (eps = eps_idf + 0 * (eps_pos - eps_idf)):
    img2img from ``strength`` on the originals' ``latents``, the IDF conditioned on them and
    on the captions' ``text``, DDIM, one seed per image as Base seeds its crops. Returns
    the final latents."""
    import torch
    from diffusers import DDIMScheduler
    from diffusers.utils.torch_utils import randn_tensor

    dtype = unet.dtype
    sched = DDIMScheduler.from_config(scheduler_config)
    sched.set_timesteps(steps, device=latents.device)
    start = steps - min(int(steps * strength), steps)
    timesteps = sched.timesteps[start:]
    gens = [torch.Generator().manual_seed(s) for s in seeds]
    with torch.no_grad():
        noise = randn_tensor(latents.shape, generator=gens, device=latents.device, dtype=latents.dtype)
        x = sched.add_noise(latents, noise, timesteps[:1].repeat(len(latents)))
        cond, text = latents.to(dtype), text.to(dtype)
        for t in timesteps:
            xin = sched.scale_model_input(x, t).to(dtype)
            down, mid = idf(xin, t, encoder_hidden_states=text, controlnet_cond=cond, return_dict=False)
            eps = unet(xin, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                       mid_block_additional_residual=mid, return_dict=False)[0]
            x = sched.step(eps.float(), t, x).prev_sample
    return x


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    import torch.nn.functional as F
    from diffusers import DDIMScheduler

    from streamer.errors import ConfigError

    from ..models.adapters import make_idf_controlnet
    from ..models.manifest import ModelResolver
    from .data.shards import Decoder, read_info
    from .loop import check_common, load_frozen_sd15, save_grid, shard_streams, start_run, to_device, train_with_args

    if not 0 <= args.caption_drop <= 1 or not 0 < args.strength <= 1:
        raise ConfigError("--caption-drop must be in [0, 1] and --strength in (0, 1]")
    info = read_info(Path(args.data))
    output, accelerator, weight_dtype, run_layout, resume = start_run(args)
    main_process, device = accelerator.is_main_process, accelerator.device

    resolver = ModelResolver(models_dir=args.models_dir)
    paths = resolver.resolve_many(["sd15", "vae"])
    if resolver.random_weights and main_process:
        log.warning("RANDOM WEIGHTS: %s holds tiny random models (make-tiny); the result is meaningless", args.models_dir)
    vae, unet, text_encoder, tokenizer, noise_scheduler = load_frozen_sd15(paths["sd15"], paths["vae"])
    check_common(args, 2 ** (len(vae.config.block_out_channels) - 1) * 2 ** (len(unet.config.block_out_channels) - 1))
    idf = make_idf_controlnet(unet)
    idf.train()

    cached = info.get("latent_resolution") == args.resolution and not args.no_cached_latents
    decoder = Decoder(args.resolution, info["size"], latents=cached)
    batches, held_stream = shard_streams(args, accelerator, decoder, info, main_process)
    held = list(held_stream)
    if main_process:
        log.info("IDF training: %d samples (%d held out) at %d px%s, %d steps, batch %d x %d x %d processes, %s",
                 info["samples"], info.get("val_samples", 0), args.resolution, " (cached latents)" if cached else "",
                 args.steps, args.batch_size, args.grad_accum, accelerator.num_processes, device)

    optimizer = torch.optim.AdamW(idf.parameters(), lr=args.lr, weight_decay=1e-2)
    idf, optimizer = accelerator.prepare(idf, optimizer)
    to_device([vae, unet, text_encoder], device, weight_dtype)

    @torch.no_grad()
    def encode_text(captions: list[str]) -> torch.Tensor:
        ids = tokenizer(captions, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        return text_encoder(ids)[0]

    @torch.no_grad()
    def encode_pixels(pixels: torch.Tensor) -> torch.Tensor:
        return (vae.encode(pixels.to(device, weight_dtype)).latent_dist.mean * vae.config.scaling_factor).float()

    def latents_of(batch: dict[str, Any]) -> torch.Tensor:
        return batch["latent"].to(device).float() if "latent" in batch else encode_pixels(batch["pixels"])

    def loss_on(net: Any, latents: torch.Tensor, text: torch.Tensor, noise: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        noisy = noise_scheduler.add_noise(latents, noise, t).to(weight_dtype)
        down, mid = net(noisy, t, encoder_hidden_states=text, controlnet_cond=latents.to(weight_dtype), return_dict=False)
        pred = unet(noisy, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid, return_dict=False)[0]
        return F.mse_loss(pred.float(), noise.float())

    def batch_loss(batch: dict[str, Any], rng: torch.Generator) -> torch.Tensor:
        latents = latents_of(batch)
        drop = torch.rand(len(latents), generator=rng) < args.caption_drop
        text = encode_text(["" if d else c for d, c in zip(drop.tolist(), batch["caption"], strict=True)])
        noise = torch.randn(latents.shape, generator=rng).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (len(latents),), generator=rng).to(device)
        return loss_on(idf, latents, text, noise, t)

    # the held-out set, fixed: the same noise and timesteps every time, so losses compare
    held_pixels = torch.stack([s["pixels"] for s in held])
    held_captions = [s["caption"] for s in held]
    held_latents = torch.cat([latents_of({k: v[None] if torch.is_tensor(v) else v for k, v in s.items()}) for s in held])
    held_text = encode_text(held_captions)
    g = torch.Generator().manual_seed(args.seed + 1)
    eval_noise = torch.randn(held_latents.shape, generator=g).to(device)
    eval_t = torch.linspace(50, noise_scheduler.config.num_train_timesteps - 50, len(held)).long().to(device)

    def evaluate() -> float:
        net = accelerator.unwrap_model(idf).eval()
        with torch.no_grad(), accelerator.autocast():
            value = float(loss_on(net, held_latents, held_text, eval_noise, eval_t))
        net.train()
        return value

    state: dict[str, Any] = {}

    def anonymized(net: Any) -> list[np.ndarray] | None:
        """The held-out crops through the real Base pipeline at a_s = 1.25 (None without Base)."""
        if args.no_anonymized:
            return None
        if "base" not in state:
            state["base"] = None
            try:
                from diffusers import ControlNetModel

                from ..base.annotators import load_annotators
                from ..base.pipeline import CamouflageBasePipeline
                from ..models.names import CONTROLS

                nets = [ControlNetModel.from_pretrained(resolver.resolve(f"controlnet_{c}"), use_safetensors=True, torch_dtype=weight_dtype)
                        .to(device) for c in CONTROLS]
                state["annotators"] = load_annotators(resolver, device)
                state["base"] = lambda idf_net: CamouflageBasePipeline(
                    vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet, controlnet=nets,
                    idf_controlnet=idf_net, scheduler=DDIMScheduler.from_config(noise_scheduler.config))
            except Exception as exc:  # noqa: BLE001 - the rest of Base is optional for training
                log.warning("no a_s = %g validation images (%s)", VALIDATION_SCALE, str(exc).splitlines()[0][:200])
        if state["base"] is None:
            return None
        from streamer.config import BaseConfig

        pipe = state["base"](net)
        pipe.set_progress_bar_config(disable=True)
        squares = [((p.permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8) for p in held_pixels]
        controls = {c: [a(img, args.resolution) for img in squares] for c, a in state["annotators"].items()}
        return list(pipe(squares, controls, prompt=held_captions, num_inference_steps=args.validation_steps,
                         strength=args.strength, anonymization_scale=VALIDATION_SCALE,
                         guidance_scale=BaseConfig().guidance_scale, output_type="np",
                         generator=[torch.Generator().manual_seed(args.seed + i) for i in range(len(held))]).images)

    def validate(step: int) -> None:
        net = accelerator.unwrap_model(idf).eval()
        if "lpips" not in state:
            state["lpips"] = lpips_metric(device)
        with accelerator.autocast():
            latents = reconstruct_as0(unet, net, noise_scheduler.config, held_latents, held_text, args.validation_steps,
                                      args.strength, [args.seed + i for i in range(len(held))])
            recon = ((vae.decode((latents / vae.config.scaling_factor).to(weight_dtype)).sample.float() + 1) / 2).clamp(0, 1)
            original = ((held_pixels.to(device) + 1) / 2).clamp(0, 1)
            scores = psnr(recon, original)
            latent_mse = float(((latents - held_latents) ** 2).mean())
            lp = float(state["lpips"](recon * 2 - 1, original * 2 - 1).mean()) if state["lpips"] is not None else math.nan
            fakes = anonymized(net)
        net.train()
        table = output / "validation.csv"
        if not table.exists():
            table.write_text("step,psnr_as0,lpips_as0,latent_mse_as0\n")
        with table.open("a") as f:
            f.write(f"{step},{np.mean(scores):.4f},{'' if math.isnan(lp) else f'{lp:.5f}'},{latent_mse:.6f}\n")
        log.info("validation step %d: a_s = 0 reconstruction PSNR %.2f dB%s on %d held-out images", step,
                 np.mean(scores), "" if math.isnan(lp) else f", LPIPS {lp:.4f}", len(held))
        rows = []
        for i in range(min(4, len(held))):
            cells = [original[i], recon[i]]
            if fakes is not None:
                cells.append(torch.from_numpy(np.asarray(fakes[i])).permute(2, 0, 1).to(device).float())
            rows.append(torch.cat(cells, dim=2))
        save_grid(rows, output, step)

    train_with_args(accelerator, idf, optimizer, output, args, batches=batches, batch_loss=batch_loss, evaluate=evaluate,
                    run_layout=run_layout, resume=resume, validate=validate)
    if main_process:
        final = output / "idf_controlnet"
        accelerator.unwrap_model(idf).save_pretrained(final, safe_serialization=True)
        print(f"IDF ControlNet written to {final} (copy it to MODELS_DIR/idf_controlnet)")
    accelerator.end_training()
    return 0
