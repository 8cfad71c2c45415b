"""Random-weight Light models in their publishers' formats, for tests and demos.

``make_tiny_light(root)`` and ``make_tiny_public(root)`` (called by ``camstream models
make-tiny DIR``, after the tiny ``sd15``/``vae``) write
  farl/                  FaRL-Base-Patch16-LAIONFace20M-ep64.pth ({"state_dict": OpenAI-CLIP keys},
                         image tower built by pyfacer's FaRL VisualTransformer)
  facer_attributes/      face_attribute.farl.celeba.pt (a plain state dict of pyfacer's
                         farl_classification, built on the CPU)
  ip_adapter_light/      ip-adapter_light.safetensors (original IP-Adapter key layout)
  t2i_adapter_light/     T2IAdapter(in_channels=41) fitted to the tiny sd15 U-Net
  ip_adapter_plus_face/  models/ip-adapter-plus-face_sd15.safetensors (the original plus
                         layout: a Resampler, image_proj.latents/proj_in/layers.N.{0,1}/proj_out/
                         norm_out, and ip_adapter.N.to_{k,v}_ip) + models/image_encoder/
                         (CLIPVisionModelWithProjection, config.json + model.safetensors)
The loaders read these exactly as they read the real files.
"""

from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKL, UNet2DConditionModel
from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

from streamer.errors import ModelError

from . import names
from .adapters import init_ip_adapter_state_dict, make_t2i_adapter, save_ip_adapter
from .facer import FILE as FACER_FILE
from .facer import random_state as facer_state
from .farl import random_checkpoint as farl_checkpoint

FARL_FILE = "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"
FARL_DIM = 32  # the tiny FaRL's projection: the tiny Light IP-Adapter's input
TINY_VIT_H = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 2, "num_attention_heads": 4,
              "image_size": 32, "patch_size": 8, "projection_dim": 32}
PLUS_HIDDEN = 64  # the Resampler's width: diffusers reads heads = width // 64
PLUS_QUERIES = 4  # image tokens (plus-face SD1.5: 16)
PLUS_DEPTH = 4  # diffusers' IPAdapterPlusImageProjection is always 4 layers deep


def _unet(root: Path) -> UNet2DConditionModel:
    if not (root / names.SD15 / "unet").is_dir() or not (root / names.VAE).is_dir():
        raise ModelError(f"{root}: write the tiny sd15 and vae first (camouflage.models.tiny.make_tiny)")
    # the IP-Adapters' to_k_ip/to_v_ip start as copies of this U-Net's to_k/to_v
    return UNet2DConditionModel.from_pretrained(root / names.SD15 / "unet", local_files_only=True)


def make_tiny_light(root: Path, seed: int = 0) -> list[Path]:
    """Write the random Light models under ``root``; returns the folders written."""
    root = Path(root)
    unet = _unet(root)
    vae_config = AutoencoderKL.load_config(root / names.VAE)
    for name in (names.FARL, names.FACER_ATTRIBUTES):
        (root / name).mkdir(parents=True, exist_ok=True)
    torch.save(farl_checkpoint(output_dim=FARL_DIM, seed=seed), root / names.FARL / FARL_FILE)
    torch.save(facer_state(seed=seed + 1), root / names.FACER_ATTRIBUTES / FACER_FILE)
    state = init_ip_adapter_state_dict(unet, embed_dim=FARL_DIM, seed=seed + 2)
    save_ip_adapter(state, root / names.IP_ADAPTER / names.IP_ADAPTER_WEIGHTS)
    vae_scale = 2 ** (len(vae_config["block_out_channels"]) - 1)
    make_t2i_adapter(unet.config, vae_scale, seed + 3).save_pretrained(root / names.T2I_ADAPTER)
    return [root / n for n in names.CAMOUFLAGE_ADAPTERS]


def plus_image_proj_state(embed_dim: int, output_dim: int, hidden: int = PLUS_HIDDEN, queries: int = PLUS_QUERIES,
                          depth: int = PLUS_DEPTH, seed: int = 0) -> dict[str, torch.Tensor]:
    """The Resampler of tencent-ailab's IP-Adapter plus (``ip_adapter/resampler.py``), keys
    and shapes as in ``ip-adapter-plus-face_sd15.safetensors``, random weights."""
    g = torch.Generator().manual_seed(seed)

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * shape[-1] ** -0.5

    inner, ff = hidden, hidden * 4  # dim_head 64 x heads; ff_mult 4
    state = {"latents": torch.randn(1, queries, hidden, generator=g) / hidden ** 0.5,
             "proj_in.weight": rand(hidden, embed_dim), "proj_in.bias": torch.zeros(hidden),
             "proj_out.weight": rand(output_dim, hidden), "proj_out.bias": torch.zeros(output_dim),
             "norm_out.weight": torch.ones(output_dim), "norm_out.bias": torch.zeros(output_dim)}
    for i in range(depth):
        a, f = f"layers.{i}.0.", f"layers.{i}.1."
        state |= {f"{a}norm1.weight": torch.ones(hidden), f"{a}norm1.bias": torch.zeros(hidden),
                  f"{a}norm2.weight": torch.ones(hidden), f"{a}norm2.bias": torch.zeros(hidden),
                  f"{a}to_q.weight": rand(inner, hidden), f"{a}to_kv.weight": rand(2 * inner, hidden),
                  f"{a}to_out.weight": rand(hidden, inner),
                  f"{f}0.weight": torch.ones(hidden), f"{f}0.bias": torch.zeros(hidden),
                  f"{f}1.weight": rand(ff, hidden), f"{f}3.weight": rand(hidden, ff)}
    return {f"image_proj.{k}": v for k, v in state.items()}


def make_tiny_public(root: Path, seed: int = 0, vision_config: dict | None = None) -> Path:
    """h94/IP-Adapter's plus-face SD1.5 layout with a tiny CLIP vision encoder, random weights
    (``vision_config``: another encoder size, e.g. the real ViT-H/14 for timing runs)."""
    root = Path(root)
    unet = _unet(root)
    folder = root / names.IP_ADAPTER_PLUS / names.IP_ADAPTER_PLUS_SUBFOLDER
    torch.manual_seed(seed + 4)
    vision = CLIPVisionConfig(**(vision_config or TINY_VIT_H))
    CLIPVisionModelWithProjection(vision).save_pretrained(folder / names.IP_ADAPTER_PLUS_ENCODER)
    ip = {k: v for k, v in init_ip_adapter_state_dict(unet, embed_dim=1, seed=seed + 5).items() if k.startswith("ip_adapter.")}
    state = plus_image_proj_state(vision.hidden_size, unet.config.cross_attention_dim, seed=seed + 6) | ip
    save_ip_adapter(state, folder / names.IP_ADAPTER_PLUS_WEIGHTS)
    return root / names.IP_ADAPTER_PLUS


def tiny_tokenizer_for_bench():  # noqa: ANN201 - CLIPTokenizer
    """A byte-level CLIP tokenizer (offline) for timing runs: token ids, not meaning."""
    import string

    from transformers import CLIPTokenizer

    chars = list(string.ascii_letters + string.digits + string.punctuation)
    vocab = {t: i for i, t in enumerate(chars + [c + "</w>" for c in chars])}
    vocab["<|startoftext|>"], vocab["<|endoftext|>"] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)
