"""Full-size RANDOM-weight models in the manifest layout, for timing and memory runs on a GPU
(benchmarks/gpu_check.sh). ``camstream models make-tiny`` writes every entry in the
publishers' formats; this replaces what sets the cost with the real architectures:

* ``sd15``: the SD1.5 U-Net (860 M parameters), the CLIP ViT-L/14 text encoder; ``vae``: the SD VAE;
* every ControlNet (the five controls, the IDF) copied from that U-Net, as the real ones are;
* the LCM-LoRA on that U-Net's modules; IP-Adapter plus-face with the ViT-H/14 image encoder (632 M);
* controlnet-aux's NormalBAE, OpenPose and lineart nets are full size in the tiny set already.

What no publisher offers (the IDF ControlNet, FaRL/FACER and the trained Light adapters,
all trained by the project) is removed: the set is what a user who fetched the public models
has, so the run is the default (identity-blind Base, Light on public adapters). Still tiny:
the depth (DPT-DINOv2) and seg (UperNet-ConvNeXt) annotators, BLIP and TAESD; the ControlNets'
conditioning embedding is narrower than the real one (a few percent of a ControlNet's cost).
The output is noise: the numbers say what the models cost, not how the faces look.

    python benchmarks/make_full.py DIR
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from bench_base import SD15_UNET, SD15_VAE  # noqa: E402

# CLIP ViT-L/14's text tower (SD1.5's text encoder) and ViT-H/14's vision tower (h94's image encoder)
SD15_TEXT = dict(
    hidden_size=768,
    intermediate_size=3072,
    num_attention_heads=12,
    num_hidden_layers=12,
    vocab_size=49408,
    max_position_embeddings=77,
    projection_dim=768,
)
VIT_H = dict(
    hidden_size=1280,
    intermediate_size=5120,
    num_attention_heads=16,
    num_hidden_layers=32,
    image_size=224,
    patch_size=14,
    projection_dim=1024,
    hidden_act="gelu",
)


def make_full(root: Path, seed: int = 0) -> Path:
    """The tiny set under ``root`` with the cost-setting models replaced by full-size ones."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    from camouflage.models.names import CAMOUFLAGE_ADAPTERS, IDF
    from camouflage.models.tiny import make_tiny, make_tiny_speed
    from camouflage.models.tiny_base import make_tiny_base
    from camouflage.models.tiny_light import make_tiny_public

    make_tiny(root, resolution=768, seed=seed)  # every entry in its format (and RANDOM_WEIGHTS.txt)
    torch.manual_seed(seed)
    sd = root / "sd15"
    UNet2DConditionModel(**SD15_UNET).save_pretrained(sd / "unet", safe_serialization=True)
    tok = CLIPTokenizer.from_pretrained(sd / "tokenizer")
    CLIPTextModel(
        CLIPTextConfig(**SD15_TEXT, bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    ).save_pretrained(sd / "text_encoder", safe_serialization=True)
    AutoencoderKL(**SD15_VAE).save_pretrained(root / "vae", safe_serialization=True)
    # the writers that read the U-Net from disk, again: ControlNets, the LoRA and the IP-Adapter at its size
    make_tiny_speed(root, seed)
    make_tiny_base(root, seed)
    make_tiny_public(root, seed, vision_config=VIT_H)
    for trained in (IDF, *CAMOUFLAGE_ADAPTERS):  # trained here, not published: not in a fetched set
        shutil.rmtree(root / trained)
    (root / "README.txt").write_text("full-size RANDOM models (benchmarks/make_full.py): timing and memory only\n")
    return root


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("dir", type=Path)
    args = p.parse_args()
    print(make_full(args.dir))


if __name__ == "__main__":
    main()
