"""``camstream train light``: train CAMOUFLaGE-Light's two adapters jointly, SD frozen.

    camstream data prepare faces/ --output shards/ --light --models-dir models
    camstream train light --data shards/ --models-dir models --output runs/light --steps 20000
    camstream train light ... --resume            # continue the latest OUTPUT/checkpoint-STEP
    accelerate launch --num_processes 4 -m streamer train light ...

Each sample of the shards (``data prepare --light``: the crop inference generates around
a face) brings what the frozen models computed once:
  * every face's 40 FACER attributes, box and keypoints: the 41-channel map is painted
    per batch on the training device (camouflage/training/data/maps.py, the same map as
    inference's) -> T2I-Adapter,
  * the FaRL embedding of its main face -> IP-Adapter,
  * its caption (inference runs on ``light.prompt``, empty: the caption is a training signal),
and the loss is SD's epsilon-prediction MSE. Each condition (map, identity, caption) is
dropped now and then (``--drop-rate``) as IP-Adapter training does, so each adapter also
learns alone. Both adapters sit in one module (:class:`LightAdapters`) whose forward runs
the frozen U-Net: what accelerate wraps in DDP is called as a whole.

Writes ``OUTPUT/loss.csv`` (step, loss, eval_loss on the held-out samples),
``OUTPUT/checkpoint-STEP/``, ``OUTPUT/validation/step-STEP.png`` every ``--validate-every``
steps (original | its attribute map over it | generated) and the final
``OUTPUT/ip_adapter_light/`` and ``OUTPUT/t2i_adapter_light/`` (copy both to MODELS_DIR/).
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any

import torch

from .light_args import add_arguments  # noqa: F401 - the CLI reads the arguments from light_args (no torch)

log = logging.getLogger("camstream")


class LightAdapters(torch.nn.Module):
    """The T2I-Adapter and the IP-Adapter (projection + attention processors installed in
    the U-Net) as one module; ``forward`` is one conditioned U-Net call. The frozen U-Net
    is held outside the module tree, so DDP and ``.to()`` see the trainable parts only."""

    def __init__(self, t2i: torch.nn.Module, unet: Any) -> None:
        super().__init__()
        self.t2i = t2i
        self.ip_proj = unet.encoder_hid_proj
        self.ip_attn = torch.nn.ModuleList(unet.attn_processors[n] for n in unet.attn_processors
                                           if not n.endswith("attn1.processor"))
        self._frozen = [unet]

    def forward(self, noisy: torch.Tensor, t: torch.Tensor, text: torch.Tensor, identity: torch.Tensor,
                maps: torch.Tensor) -> torch.Tensor:
        unet = self._frozen[0]
        dtype = unet.dtype
        residuals = self.t2i(maps)
        return unet(noisy.to(dtype), t, encoder_hidden_states=text.to(dtype),
                    added_cond_kwargs={"image_embeds": [identity[:, None].to(dtype)]},
                    down_intrablock_additional_residuals=[r.to(dtype) for r in residuals]).sample


def overlay(image: torch.Tensor, amap: torch.Tensor) -> torch.Tensor:
    """(3, H, W) in [0, 1]: the map over the image (red: mean attribute, green: keypoints)."""
    from ..light.attribute_map import KEYPOINT_CHANNEL

    owned = (amap[:KEYPOINT_CHANNEL].amax(0) > 0).float()
    tint = torch.stack([amap[:KEYPOINT_CHANNEL].mean(0) / amap[:KEYPOINT_CHANNEL].mean(0).amax().clamp_min(1e-6),
                        amap[KEYPOINT_CHANNEL], torch.zeros_like(owned)])
    alpha = 0.5 * torch.maximum(owned, amap[KEYPOINT_CHANNEL])
    return image * (1 - alpha) + tint * alpha


def main(args: argparse.Namespace) -> int:
    import numpy as np
    import torch.nn.functional as F
    from diffusers import DDIMScheduler
    from transformers import CLIPVisionModelWithProjection

    from streamer.config import LightConfig
    from streamer.errors import ConfigError

    from ..light.pipeline import CamouflageLightPipeline
    from ..models import names
    from ..models.adapters import (
        init_ip_adapter_state_dict,
        ip_adapter_parameters,
        ip_adapter_state_dict,
        make_t2i_adapter,
        save_ip_adapter,
    )
    from .data.maps import paint_maps
    from .data.shards import Decoder, loader, read_info
    from .loop import check_common, load_frozen_sd15, save_grid, shard_streams, start_run, to_device, train_with_args

    if not 0 <= args.drop_rate <= 1 or not 0 < args.strength <= 1:
        raise ConfigError("--drop-rate must be in [0, 1] and --strength in (0, 1]")
    info = read_info(Path(args.data))
    if not info.get("light"):
        raise ConfigError(f"{args.data}: shards without Light's attributes (make them with camstream data prepare --light)")
    output, accelerator, weight_dtype, run_layout, resume = start_run(args)
    main_process, device = accelerator.is_main_process, accelerator.device

    paths = names.resolve_models(args.models_dir, (names.SD15, names.VAE, names.FARL))
    vae, unet, text_encoder, tokenizer, noise_scheduler = load_frozen_sd15(paths[names.SD15], paths[names.VAE])
    farl = CLIPVisionModelWithProjection.from_pretrained(paths[names.FARL], use_safetensors=True).requires_grad_(False)
    vae_scale = 2 ** (len(vae.config.block_out_channels) - 1)

    # A fresh T2I-Adapter, and an IP-Adapter installed in the U-Net by diffusers' own
    # loader, so training updates the very processors inference uses.
    t2i = make_t2i_adapter(unet.config, vae_scale, seed=args.seed)
    check_common(args, max(vae_scale * 2 ** (len(unet.config.block_out_channels) - 1), t2i.total_downscale_factor))
    ip_state = init_ip_adapter_state_dict(unet, farl.config.projection_dim, seed=args.seed)
    unet._load_ip_adapter_weights([{
        "image_proj": {k.removeprefix("image_proj."): v for k, v in ip_state.items() if k.startswith("image_proj.")},
        "ip_adapter": {k.removeprefix("ip_adapter."): v for k, v in ip_state.items() if k.startswith("ip_adapter.")},
    }])
    unet.requires_grad_(False)
    to_device([vae, unet, text_encoder, farl], device, weight_dtype)  # frozen parts first: DDP must see final parameters
    for p in ip_adapter_parameters(unet):
        p.requires_grad_(True)
    adapters = LightAdapters(t2i, unet).to(device, torch.float32)  # trainable weights stay fp32 (autocast mixes)
    adapters.train()

    cached = info.get("latent_resolution") == args.resolution
    decoder = Decoder(args.resolution, info["size"], latents=cached, light=True)
    batches, held_stream = shard_streams(args, accelerator, decoder, info, main_process)
    held = next(iter(loader(held_stream, max(1, args.val_samples), 0)))
    if main_process:
        log.info("Light training: %d samples (%d held out) at %d px, %d steps, batch %d x %d x %d processes, %s",
                 info["samples"], info.get("val_samples", 0), args.resolution, args.steps, args.batch_size,
                 args.grad_accum, accelerator.num_processes, device)

    optimizer = torch.optim.AdamW([p for p in adapters.parameters() if p.requires_grad], lr=args.lr, weight_decay=1e-2)
    adapters, optimizer = accelerator.prepare(adapters, optimizer)

    @torch.no_grad()
    def encode_text(texts: list[str]) -> torch.Tensor:
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length, truncation=True,
                        return_tensors="pt").input_ids.to(device)
        return text_encoder(ids)[0].float()

    @torch.no_grad()
    def conditions(batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Latents, maps (painted here, on the device), identities, caption texts of a batch."""
        latents = batch["latent"].to(device).float() if "latent" in batch else (
            vae.encode(batch["pixels"].to(device, weight_dtype)).latent_dist.mean * vae.config.scaling_factor).float()
        maps = paint_maps(batch["boxes"].to(device), batch["keypoints"].to(device), batch["attributes"].to(device),
                          batch["faces"].to(device), args.resolution)
        return latents, maps, batch["embed"].to(device).float(), encode_text(list(batch["caption"]))

    empty_text = encode_text([""])[0]

    def loss_on(net: Any, cond: tuple, noise: torch.Tensor, t: torch.Tensor, drop: torch.Tensor | None = None) -> torch.Tensor:
        latents, maps, ident, text = cond
        if drop is not None:  # (B, 3) booleans: map, identity, caption
            maps = torch.where(drop[:, 0, None, None, None], torch.zeros_like(maps), maps)
            ident = torch.where(drop[:, 1, None], torch.zeros_like(ident), ident)
            text = torch.where(drop[:, 2, None, None], empty_text.expand_as(text), text)
        noisy = noise_scheduler.add_noise(latents, noise, t)
        return F.mse_loss(net(noisy, t, text, ident, maps).float(), noise.float())

    def batch_loss(batch: dict[str, Any], rng: torch.Generator) -> torch.Tensor:
        cond = conditions(batch)
        n = len(cond[0])
        noise = torch.randn(cond[0].shape, generator=rng).to(device)
        t = torch.randint(0, noise_scheduler.config.num_train_timesteps, (n,), generator=rng).to(device)
        drop = (torch.rand(n, 3, generator=rng) < args.drop_rate).to(device)
        return loss_on(adapters, cond, noise, t, drop)

    # the held-out set, fixed: the same noise and timesteps every time, so losses compare
    held_cond = conditions(held)
    g = torch.Generator().manual_seed(args.seed + 1)
    eval_noise = torch.randn(held_cond[0].shape, generator=g).to(device)
    eval_t = torch.linspace(50, noise_scheduler.config.num_train_timesteps - 50, len(eval_noise)).long().to(device)

    def evaluate() -> float:
        net = accelerator.unwrap_model(adapters).eval()
        with torch.no_grad(), accelerator.autocast():
            value = float(loss_on(net, held_cond, eval_noise, eval_t))
        net.train()
        return value

    def validate(step: int) -> None:
        net = accelerator.unwrap_model(adapters).eval()
        pipe = CamouflageLightPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, unet=unet,
                                       scheduler=DDIMScheduler.from_config(noise_scheduler.config), adapter=net.t2i,
                                       image_encoder=farl)
        pipe.set_progress_bar_config(disable=True)
        n = min(4, len(held_cond[0]))
        image = ((held["pixels"][:n] + 1) / 2).clamp(0, 1).to(device)
        with accelerator.autocast():
            out = pipe(image, held_cond[1][:n], prompt=LightConfig().prompt, identity_embeds=held_cond[2][:n],
                       strength=args.strength, num_inference_steps=args.validation_steps,
                       generator=torch.Generator().manual_seed(args.seed)).images
        net.train()
        rows = [torch.cat([image[i], overlay(image[i], held_cond[1][i].float()),
                           torch.from_numpy(np.asarray(out[i])).permute(2, 0, 1).to(device).float()], dim=2) for i in range(n)]
        save_grid(rows, output, step)

    train_with_args(accelerator, adapters, optimizer, output, args, batches=batches, batch_loss=batch_loss, evaluate=evaluate,
                    run_layout=run_layout, resume=resume, validate=validate)

    if main_process:
        trained = accelerator.unwrap_model(adapters)
        trained.t2i.save_pretrained(output / names.T2I_ADAPTER, safe_serialization=True)
        save_ip_adapter(ip_adapter_state_dict(unet), output / names.IP_ADAPTER / names.IP_ADAPTER_WEIGHTS)
        print(f"Light adapters written to {output / names.T2I_ADAPTER} and {output / names.IP_ADAPTER} "
              "(copy both to MODELS_DIR/)")
    accelerator.end_training()
    return 0
