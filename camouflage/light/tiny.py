"""Tiny random CAMOUFLaGE-Light models in the manifest layout, for tests and demos.

``make_tiny_light(root)`` (called by ``camstream models make-tiny DIR``) writes
  farl/               CLIPVisionModelWithProjection (config.json + model.safetensors)
  facer_attributes/   backbone/ + head.safetensors + attributes.json
  ip_adapter_light/   ip-adapter_light.safetensors (original IP-Adapter key layout)
  t2i_adapter_light/  T2IAdapter(in_channels=41) fitted to the tiny sd15 U-Net
each with ``camstream_tiny.json``; it writes the shared tiny ``sd15``/``vae`` first when
``root`` lacks them. The loaders read these exactly as they read the real models.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from . import loading
from .adapters import init_ip_adapter_state_dict, make_t2i_adapter, save_ip_adapter
from .attributes import FacerAttributeModel

TINY_VISION = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
               "image_size": 32, "patch_size": 8, "projection_dim": 32}


def _declare_files(folder: Path) -> None:
    """``camstream_tiny.json``: the files a tiny stand-in has (see manifest.check_files)."""
    files = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                   if p.is_file() and p.name != "camstream_tiny.json")
    (folder / "camstream_tiny.json").write_text(json.dumps({"random_weights": True, "files": files}, indent=1))


def make_tiny_light(root: Path, seed: int = 0) -> list[Path]:
    """Write tiny random Light models under ``root``; returns the folders written."""
    root = Path(root)
    if not (root / loading.SD15 / "unet").is_dir() or not (root / loading.VAE).is_dir():
        from camouflage.tiny import make_tiny_sd15

        make_tiny_sd15(root, seed)
    unet_config = UNet2DConditionModel.load_config(root / loading.SD15 / "unet")
    vae_config = AutoencoderKL.load_config(root / loading.VAE)
    # the IP-Adapter's to_k_ip/to_v_ip start as copies of this U-Net's to_k/to_v
    unet = UNet2DConditionModel.from_pretrained(root / loading.SD15 / "unet", local_files_only=True)

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(**TINY_VISION)
    CLIPVisionModelWithProjection(vision).save_pretrained(root / loading.FARL)
    FacerAttributeModel.random(vision, seed + 1).save_pretrained(root / loading.FACER_ATTRIBUTES)
    state = init_ip_adapter_state_dict(unet, embed_dim=vision.projection_dim, seed=seed + 2)
    save_ip_adapter(state, root / loading.IP_ADAPTER / loading.IP_ADAPTER_WEIGHTS)
    vae_scale = 2 ** (len(vae_config["block_out_channels"]) - 1)
    make_t2i_adapter(unet_config, vae_scale, seed + 3).save_pretrained(root / loading.T2I_ADAPTER)
    folders = [root / n for n in (loading.FARL, loading.FACER_ATTRIBUTES, loading.IP_ADAPTER, loading.T2I_ADAPTER)]
    for folder in folders:
        _declare_files(folder)
    return folders


def tiny_tokenizer_for_bench():  # noqa: ANN201 - CLIPTokenizer
    """A byte-level CLIP tokenizer (offline) for timing runs: token ids, not meaning."""
    import string

    from transformers import CLIPTokenizer

    chars = list(string.ascii_letters + string.digits + string.punctuation)
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
