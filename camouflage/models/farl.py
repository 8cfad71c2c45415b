"""FaRL's image encoder, read from the file its authors publish.

FaRL (FacePerceiver/FaRL, MIT) ships ``FaRL-Base-Patch16-LAIONFace20M-ep16.pth`` / ``-ep64.pth``:
``{"state_dict": ...}`` of an OpenAI-CLIP ViT-B/16 (``visual.*`` for the image tower, plus the
text tower and possibly training extras). Its ``visual.*`` part is the architecture of
pyfacer's ``facer.farl.VisualTransformer`` (QuickGELU, pre-LN, CLS -> ``ln_post`` -> ``proj``).

:func:`load_farl_vision` maps that part onto ``transformers.CLIPVisionModelWithProjection``,
the encoder the IP-Adapter takes (``image_embeds`` = ``ln_post(CLS) @ proj``). The mapping
runs at load time; :func:`converted_folder` keeps its result beside the file
(``.camstream-converted/``: ``config.json`` + ``model.safetensors``) so later loads, and
tools that read a transformers folder, skip it. The architecture (width, depth, patch,
resolution, projection) is read from the tensors, so a tiny random file in the same format
loads through the same code.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from streamer.errors import ModelError

FILE_PATTERN = "FaRL-Base-Patch16-LAIONFace20M-ep*.pth"
CONVERTED = ".camstream-converted"
HEAD_DIM = 64  # OpenAI CLIP's heads = width // 64


def farl_file(folder: str | Path) -> Path:
    """The published FaRL file in ``folder`` (ep64 before ep16 when both are there)."""
    files = sorted(Path(folder).glob(FILE_PATTERN), key=lambda p: ("ep64" not in p.name, p.name))
    if not files:
        raise ModelError(f"{folder}: no {FILE_PATTERN} (`camstream models import farl FILE`)")
    return files[0]


def visual_state(checkpoint: dict) -> dict[str, torch.Tensor]:
    """The image tower's tensors (``visual.`` stripped) of a FaRL/OpenAI-CLIP checkpoint."""
    state = checkpoint.get("state_dict", checkpoint) if isinstance(checkpoint, dict) else None
    if not isinstance(state, dict):
        raise ModelError("not a FaRL checkpoint: expected {'state_dict': {...}}")
    state = {k.removeprefix("module."): v for k, v in state.items()}
    visual = {k[len("visual."):]: v for k, v in state.items() if k.startswith("visual.")}
    if "conv1.weight" not in visual or "proj" not in visual:
        raise ModelError("not a FaRL checkpoint: no visual.conv1 / visual.proj (an OpenAI-CLIP ViT image tower)")
    return visual


def vision_config(visual: dict[str, torch.Tensor]):  # noqa: ANN201 - CLIPVisionConfig
    """The ``CLIPVisionConfig`` of an OpenAI-CLIP ViT image tower, read from its tensors."""
    from transformers import CLIPVisionConfig

    width, _, patch, _ = visual["conv1.weight"].shape
    grid = round((visual["positional_embedding"].shape[0] - 1) ** 0.5)
    layers = 1 + max(int(k.split(".")[2]) for k in visual if k.startswith("transformer.resblocks."))
    return CLIPVisionConfig(
        hidden_size=width, intermediate_size=visual["transformer.resblocks.0.mlp.c_fc.weight"].shape[0],
        num_hidden_layers=layers, num_attention_heads=max(1, width // HEAD_DIM), image_size=grid * patch,
        patch_size=patch, projection_dim=visual["proj"].shape[1], hidden_act="quick_gelu", layer_norm_eps=1e-5,
    )


def to_transformers(visual: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """OpenAI-CLIP image-tower keys -> ``CLIPVisionModelWithProjection`` keys (same numbers)."""
    out = {
        "vision_model.embeddings.patch_embedding.weight": visual["conv1.weight"],
        "vision_model.embeddings.class_embedding": visual["class_embedding"],
        "vision_model.embeddings.position_embedding.weight": visual["positional_embedding"],
        "vision_model.pre_layrnorm.weight": visual["ln_pre.weight"],
        "vision_model.pre_layrnorm.bias": visual["ln_pre.bias"],
        "vision_model.post_layernorm.weight": visual["ln_post.weight"],
        "vision_model.post_layernorm.bias": visual["ln_post.bias"],
        "visual_projection.weight": visual["proj"].t(),
    }
    layers = 1 + max(int(k.split(".")[2]) for k in visual if k.startswith("transformer.resblocks."))
    for i in range(layers):
        src, dst = f"transformer.resblocks.{i}.", f"vision_model.encoder.layers.{i}."
        for part in ("weight", "bias"):
            q, k, v = visual[f"{src}attn.in_proj_{part}"].chunk(3)
            out |= {f"{dst}self_attn.q_proj.{part}": q, f"{dst}self_attn.k_proj.{part}": k,
                    f"{dst}self_attn.v_proj.{part}": v,
                    f"{dst}self_attn.out_proj.{part}": visual[f"{src}attn.out_proj.{part}"],
                    f"{dst}layer_norm1.{part}": visual[f"{src}ln_1.{part}"],
                    f"{dst}layer_norm2.{part}": visual[f"{src}ln_2.{part}"],
                    f"{dst}mlp.fc1.{part}": visual[f"{src}mlp.c_fc.{part}"],
                    f"{dst}mlp.fc2.{part}": visual[f"{src}mlp.c_proj.{part}"]}
    return {k: v.detach().float().contiguous() for k, v in out.items()}


def converted_folder(folder: str | Path) -> Path:
    """A transformers folder (config.json + model.safetensors) converted from the published
    file in ``folder``, kept beside it and redone when the file changes."""
    from safetensors.torch import save_file

    from .manifest import load_pickle

    if Path(folder).name == CONVERTED and (Path(folder) / "model.safetensors").exists():
        return Path(folder)  # already the converted folder (what names.resolve_models hands out)
    source = farl_file(folder)
    out = Path(folder) / CONVERTED
    stamp = {"source": source.name, "size": source.stat().st_size, "mtime_ns": source.stat().st_mtime_ns}
    stamp_file = out / "source.json"
    if stamp_file.exists() and json.loads(stamp_file.read_text()) == stamp and (out / "model.safetensors").exists():
        return out
    try:
        visual = visual_state(load_pickle(source))
        config, state = vision_config(visual), to_transformers(visual)
    except ModelError as exc:
        raise ModelError(f"{source}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - a broken file: one line
        raise ModelError(f"{source}: cannot read ({type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    out.mkdir(exist_ok=True)
    config.architectures = ["CLIPVisionModelWithProjection"]
    config.save_pretrained(out)
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    stamp_file.write_text(json.dumps(stamp))
    return out


def load_farl_vision(folder: str | Path, dtype: torch.dtype | None = None):  # noqa: ANN201 - CLIPVisionModelWithProjection
    """FaRL's image encoder as ``CLIPVisionModelWithProjection``, from the published file."""
    from transformers import CLIPVisionModelWithProjection

    path = converted_folder(folder)
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(str(path), local_files_only=True, use_safetensors=True,
                                                              dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        raise ModelError(f"FaRL encoder at {folder}: cannot load ({str(exc).splitlines()[0]})") from None
    return model.eval()


def random_checkpoint(width: int = 64, patch: int = 8, resolution: int = 32, layers: int = 2, output_dim: int = 32,
                      seed: int = 0) -> dict:
    """A random-weight checkpoint in the published file's exact format: ``{"state_dict": ...}``
    with the image tower built by FaRL's own module (pyfacer's ``facer.farl.VisualTransformer``)
    under ``visual.`` and an OpenAI-CLIP text tower beside it. Tiny by default; FaRL-B/16's
    sizes with (768, 16, 224, 12, 512)."""
    from .facer import _facer

    _facer()  # imports pyfacer quietly
    from facer.farl.model import Transformer, VisualTransformer

    torch.manual_seed(seed)
    visual = VisualTransformer(input_resolution=resolution, patch_size=patch, width=width, layers=layers,
                               heads=max(1, width // HEAD_DIM), output_dim=output_dim)
    text_width, context, vocab = width, 77, 49408 if width >= 512 else 64
    text = Transformer(text_width, layers, max(1, text_width // HEAD_DIM))
    state = {f"visual.{k}": v for k, v in visual.state_dict().items()}
    state |= {f"transformer.{k}": v for k, v in text.state_dict().items()}
    state |= {"positional_embedding": torch.randn(context, text_width) * 0.01,
              "token_embedding.weight": torch.randn(vocab, text_width) * 0.02,
              "ln_final.weight": torch.ones(text_width), "ln_final.bias": torch.zeros(text_width),
              "text_projection": torch.randn(text_width, output_dim) * text_width ** -0.5,
              "logit_scale": torch.tensor(4.6052)}
    return {"state_dict": {k: v.contiguous() for k, v in state.items()}}
