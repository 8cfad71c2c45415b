"""Optional speed components for Base and Light, switched by ``speed:`` in the config
(``-c realtime`` turns both on):

- ``lcm_lora_sd15`` (``speed.lcm``): the LCM-LoRA for SD1.5 (latent consistency
  distillation as a LoRA, arXiv 2311.05556), fused into the U-Net and sampled with
  :class:`diffusers.LCMScheduler`: ``speed.lcm_steps`` (2-8) steps instead of 20-30.
  It wants guidance 1-2: Base then runs without text CFG (:data:`LCM_GUIDANCE_SCALE`).
- ``taesd`` (``speed.tiny_vae``): TAESD, a distilled tiny VAE (diffusers
  ``AutoencoderTiny``) in the latent space of SD's ``AutoencoderKL``, whose latents come
  already scaled (``scaling_factor`` 1.0); encode and decode cost a fraction of the full
  VAE's, at some loss of fine detail.
- ``speed.compile`` (no model): channels_last memory format and ``torch.compile`` of the
  U-Net's and the ControlNets' ``forward`` (:func:`apply_compile`), as diffusers' own speed
  guide does it; the first frames of a batch size compile (minutes), later ones run faster.

Both pipelines encode and decode through :func:`encode_latents` and :func:`decode_latents`,
which accept either VAE. This module imports no torch or diffusers at import time, so the
builders can name the models to resolve before loading anything.

>>> apply_speed(pipe, ModelResolver(models_dir="models"), lcm=True, tiny_vae=True)  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from streamer.errors import ModelError

from .models.manifest import ModelResolver
from .models.names import LCM_LORA, LCM_LORA_WEIGHTS, TINY_VAE

if TYPE_CHECKING:
    import torch
    from diffusers import AutoencoderKL, AutoencoderTiny, DiffusionPipeline

LCM_ADAPTER = "lcm"
LCM_GUIDANCE_SCALE = 1.0  # LCM-LoRA wants 1-2; 1 switches Base's text CFG off (one U-Net branch fewer)


def speed_models(lcm: bool, tiny_vae: bool) -> list[str]:
    """The manifest entries the switches need (resolve them with the method's own models)."""
    return [name for name, wanted in ((LCM_LORA, lcm), (TINY_VAE, tiny_vae)) if wanted]


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__


# -- either VAE -------------------------------------------------------------------------


def encode_latents(vae: AutoencoderKL | AutoencoderTiny, pixels: torch.Tensor,
                   generator: torch.Generator | list[torch.Generator] | None = None, sample: bool = True) -> torch.Tensor:
    """Scaled latents of ``pixels`` (B, 3, H, W in [-1, 1]), in ``vae``'s dtype.

    AutoencoderKL: a posterior sample drawn from ``generator`` (``sample=True``) or the
    posterior mean; AutoencoderTiny: its deterministic encoding. Either way times the VAE's
    ``scaling_factor`` (1.0 for TAESD).
    """
    from diffusers import AutoencoderTiny

    pixels = pixels.to(vae.dtype)
    if isinstance(vae, AutoencoderTiny):
        latents = vae.encode(pixels).latents
    else:
        posterior = vae.encode(pixels).latent_dist
        latents = posterior.sample(generator) if sample else posterior.mean
    return latents * vae.config.scaling_factor


def decode_latents(vae: AutoencoderKL | AutoencoderTiny, latents: torch.Tensor) -> torch.Tensor:
    """Pixels (B, 3, H, W, about [-1, 1]) from scaled latents, with either VAE."""
    return vae.decode((latents / vae.config.scaling_factor).to(vae.dtype)).sample


# -- loading ----------------------------------------------------------------------------


def load_tiny_vae(path: str | Path, device: torch.device | str = "cpu", dtype: torch.dtype | None = None) -> AutoencoderTiny:
    """TAESD (``AutoencoderTiny``, safetensors only) from a resolved ``taesd`` folder."""
    from diffusers import AutoencoderTiny

    try:
        vae = AutoencoderTiny.from_pretrained(path, use_safetensors=True, local_files_only=True, torch_dtype=dtype)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelError(f"{path}: cannot load the tiny VAE ({_first_line(exc)})") from exc
    return vae.to(device)


def use_tiny_vae(pipe: DiffusionPipeline, vae: AutoencoderTiny) -> None:
    """Put ``vae`` in place of ``pipe.vae``; its latents must have the shape of the full
    VAE's (channels and 1/``vae_scale_factor`` size, so ``pipe.vae_scale_factor`` holds)."""
    down = 2 ** (len(vae.config.encoder_block_out_channels) - 1)
    up = vae.config.upsampling_scaling_factor ** (len(vae.config.decoder_block_out_channels) - 1)
    channels = pipe.unet.config.in_channels
    if vae.config.latent_channels != channels or not down == up == pipe.vae_scale_factor:
        raise ModelError(
            f"the tiny VAE's latents ({vae.config.latent_channels} channels, 1/{down} size, decoded x{up}) do not match "
            f"this U-Net's ({channels} channels, 1/{pipe.vae_scale_factor} size)")
    pipe.vae = vae


def apply_lcm_lora(pipe: DiffusionPipeline, lora_folder: str | Path) -> None:
    """Fuse the LCM-LoRA in ``lora_folder`` into ``pipe.unet`` and sample with LCMScheduler.

    ``pipe`` needs ``StableDiffusionLoraLoaderMixin``. The LoRA layers are removed once
    fused: the U-Net then runs at its own speed. Raises ModelError (one line).
    """
    from diffusers import LCMScheduler

    try:
        pipe.load_lora_weights(str(lora_folder), weight_name=LCM_LORA_WEIGHTS, adapter_name=LCM_ADAPTER,
                               local_files_only=True)
        # keys for another network load nothing (diffusers only warns): refuse that
        if LCM_ADAPTER not in (getattr(pipe.unet, "peft_config", None) or {}):
            raise ModelError(f"{lora_folder}: {LCM_LORA_WEIGHTS} holds no LoRA weights for this U-Net")
        pipe.fuse_lora(components=["unet"], adapter_names=[LCM_ADAPTER])
        pipe.unload_lora_weights()
    except ModelError:
        raise
    except (OSError, ValueError, KeyError, RuntimeError, ImportError) as exc:
        raise ModelError(f"{lora_folder}: cannot load the LCM-LoRA ({_first_line(exc)})") from exc
    pipe.scheduler = LCMScheduler.from_config(pipe.scheduler.config)


def apply_speed(pipe: DiffusionPipeline, models: ModelResolver | Mapping[str, Path], lcm: bool, tiny_vae: bool) -> None:
    """Switch ``pipe`` (Base or Light) to the speed components asked for.

    ``models``: a resolver (a missing model raises the one-line ModelError naming
    ``camstream models fetch``), or the folders the builder already resolved, holding
    :func:`speed_models`. The tiny VAE takes the device and dtype of the VAE it replaces.
    """
    names = speed_models(lcm, tiny_vae)
    paths = models.resolve_many(names) if isinstance(models, ModelResolver) else models
    if tiny_vae:
        use_tiny_vae(pipe, load_tiny_vae(paths[TINY_VAE], pipe.vae.device, pipe.vae.dtype))
    if lcm:
        apply_lcm_lora(pipe, paths[LCM_LORA])


# -- channels_last + torch.compile (speed.compile) ----------------------------------------


def apply_compile(pipe: DiffusionPipeline, backend: str = "inductor", mode: str | None = "max-autotune-no-cudagraphs") -> None:
    """channels_last for the convolution-heavy networks, ``torch.compile`` of their forward.

    The compiled function replaces the module's ``forward`` (not the module), so forward
    hooks (the video method counts U-Net samples with one) stay outside the graph and the
    pipeline keeps its components. CUDA graphs stay off: the batch (faces per frame) varies.
    A module shared by two pipelines (Base's openpose ControlNet in public Light) is
    compiled once.
    """
    import torch

    modules = [getattr(pipe, name, None) for name in ("unet", "controlnet", "idf_controlnet", "adapter")]
    for module in modules:
        nets = getattr(module, "nets", None)  # MultiControlNetModel: compile each net
        for net in (nets if nets is not None else [module]):
            if net is None or getattr(net, "_camstream_compiled", False):
                continue
            net.to(memory_format=torch.channels_last)
            net.forward = torch.compile(net.forward, backend=backend, mode=mode if backend == "inductor" else None)
            net._camstream_compiled = True
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        vae.to(memory_format=torch.channels_last)
