"""The components this project trains, in the layouts diffusers loads: Light's two adapters
and Base's IDF ControlNet (:func:`make_idf_controlnet`).

* T2I-Adapter: ``diffusers.T2IAdapter(in_channels=41)`` whose channels follow the
  U-Net's ``block_out_channels`` (SD1.5: 320, 640, 1280, 1280). Its features enter the
  U-Net as ``down_intrablock_additional_residuals``.
* IP-Adapter: the original (tencent-ailab) key layout, one safetensors file with
  ``image_proj.{proj,norm}.*`` (an ``ImageProjection``: FaRL embedding -> 4 tokens) and
  ``ip_adapter.{1,3,5,...}.to_{k,v}_ip.weight`` (the decoupled cross-attention of every
  ``attn2``, numbered as diffusers' loader numbers them). ``pipe.load_ip_adapter(...)``
  reads it and installs ``IPAdapterAttnProcessor2_0``; training updates those very
  processors and :func:`ip_adapter_state_dict` writes them back in the same layout.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import ControlNetModel, T2IAdapter, UNet2DConditionModel
from safetensors.torch import load_file, save_file

from .names import MAP_CHANNELS

IP_TOKENS = 4  # image tokens per face embedding (the plain IP-Adapter's ImageProjection)


def residual_layout(unet_config: dict) -> list[tuple[int, int]]:
    """(latent downscale, channels) of the residual each down block of the U-Net takes.

    A cross-attention block takes it before its downsampler, a plain block after it
    (diffusers' ``UNet2DConditionModel.forward``). SD1.5: (1, 320) (2, 640) (4, 1280) (8, 1280).
    """
    kinds, channels = unet_config["down_block_types"], unet_config["block_out_channels"]
    out, scale = [], 1
    for i, (kind, ch) in enumerate(zip(kinds, channels, strict=True)):
        downsamples = i < len(kinds) - 1
        if "CrossAttn" in kind:
            out.append((scale, ch))
        scale *= 2 if downsamples else 1
        if "CrossAttn" not in kind:
            out.append((scale, ch))
    return out


def make_t2i_adapter(unet_config: dict, vae_scale_factor: int = 8, seed: int = 0) -> T2IAdapter:
    """A randomly initialised 41-channel T2I-Adapter whose features fit ``unet_config``.

    The map is at pixel resolution; ``downscale_factor`` pixel-unshuffles it onto the
    latent grid (8 for SD1.5) or coarser when the first residual is coarser. SD1.5 gets
    the standard ``full_adapter``; a U-Net whose first block is a plain one (the tiny
    test U-Net) gets the ``full_adapter_xl`` pattern, which holds resolution for two blocks.
    """
    torch.manual_seed(seed)
    layout = residual_layout(unet_config)
    scales, channels = [s for s, _ in layout], [c for _, c in layout]
    first = scales[0]
    if scales == [first * 2**i for i in range(len(scales))]:
        adapter_type = "full_adapter"
    elif scales == [first, first, 2 * first, 2 * first][: len(scales)]:
        adapter_type = "full_adapter_xl"
    else:
        raise ValueError(f"no T2I-Adapter layout fits a U-Net taking residuals at {layout}")
    return T2IAdapter(in_channels=MAP_CHANNELS, channels=channels, num_res_blocks=2,
                      downscale_factor=vae_scale_factor * first, adapter_type=adapter_type)


def _cross_attention_processors(unet: UNet2DConditionModel) -> list[str]:
    return [n for n in unet.attn_processors if not n.endswith("attn1.processor")]


def _attention_module(unet: UNet2DConditionModel, processor_name: str) -> torch.nn.Module:
    module = unet
    for part in processor_name.removesuffix(".processor").split("."):
        module = getattr(module, part)
    return module


def init_ip_adapter_state_dict(unet: UNet2DConditionModel, embed_dim: int, seed: int = 0) -> dict[str, torch.Tensor]:
    """A fresh IP-Adapter for ``unet`` in the original layout.

    As in the IP-Adapter paper, ``to_k_ip``/``to_v_ip`` start as copies of the text
    branch's ``to_k``/``to_v``; the projection is random (std 0.02), its norm identity.
    """
    g = torch.Generator().manual_seed(seed)
    cross = unet.config.cross_attention_dim
    state = {
        "image_proj.proj.weight": torch.randn(cross * IP_TOKENS, embed_dim, generator=g) * 0.02,
        "image_proj.proj.bias": torch.zeros(cross * IP_TOKENS),
        "image_proj.norm.weight": torch.ones(cross),
        "image_proj.norm.bias": torch.zeros(cross),
    }
    for i, name in enumerate(_cross_attention_processors(unet)):
        attn = _attention_module(unet, name)
        state[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = attn.to_k.weight.detach().clone().float()
        state[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = attn.to_v.weight.detach().clone().float()
    return state


def ip_adapter_state_dict(unet: UNet2DConditionModel) -> dict[str, torch.Tensor]:
    """The IP-Adapter installed in ``unet`` (by ``load_ip_adapter``), in the original layout."""
    if unet.encoder_hid_proj is None:
        raise ValueError("the U-Net has no IP-Adapter loaded")
    proj = unet.encoder_hid_proj.image_projection_layers[0]
    state = {f"image_proj.{k.replace('image_embeds', 'proj')}": v for k, v in proj.state_dict().items()}
    for i, name in enumerate(_cross_attention_processors(unet)):
        processor = unet.attn_processors[name]
        state[f"ip_adapter.{2 * i + 1}.to_k_ip.weight"] = processor.to_k_ip[0].weight
        state[f"ip_adapter.{2 * i + 1}.to_v_ip.weight"] = processor.to_v_ip[0].weight
    return {k: v.detach().float().cpu().contiguous() for k, v in state.items()}


def ip_adapter_parameters(unet: UNet2DConditionModel) -> list[torch.nn.Parameter]:
    """The trainable parameters of the installed IP-Adapter (projection + to_k_ip/to_v_ip)."""
    params = list(unet.encoder_hid_proj.parameters())
    for name in _cross_attention_processors(unet):
        params += list(unet.attn_processors[name].parameters())
    return params


def save_ip_adapter(state: dict[str, torch.Tensor], path: str | Path) -> None:
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})


def load_ip_adapter_file(path: str | Path) -> dict[str, dict[str, torch.Tensor]]:
    """The nested dict ``load_ip_adapter`` accepts, from a flat safetensors file."""
    flat = load_file(str(path))
    nested: dict[str, dict[str, torch.Tensor]] = {"image_proj": {}, "ip_adapter": {}}
    for key, value in flat.items():
        head, _, rest = key.partition(".")
        nested[head][rest] = value
    return nested


def make_idf_controlnet(unet: UNet2DConditionModel, embedding: tuple[int, ...] = (128,)) -> ControlNetModel:
    """The IDF ControlNet, initialised from ``unet``: its condition is the 4-channel VAE latent
    itself, so the conditioning embedding has a single block (no downsampling)."""
    return ControlNetModel.from_unet(unet, conditioning_channels=unet.config.in_channels,
                                     conditioning_embedding_out_channels=embedding)
