"""``camstream models make-tiny DIR``: RANDOM-weight models for every manifest entry, in
the publisher's exact format (file names, key names, config files, dtype) under
``DIR/<name>/``, built with the publisher's own code where it is a package (diffusers,
transformers, controlnet-aux's model classes, pyfacer), so tests and demos go through the
loaders real files go through. Tiny where the architecture is read from the files; full
size where the format fixes it (controlnet-aux's NormalBAE, OpenPose and lineart nets:
about 800 MB together). ``DIR/RANDOM_WEIGHTS.txt`` marks the set; loaders warn loudly.

This module writes what both methods share (``sd15``, ``vae``, the speed components
``taesd`` and ``lcm_lora_sd15``) and calls each method's own writer after it:
tiny_base.py (ControlNets, IDF, annotators, captioner),
tiny_light.py (FaRL, FACER, the trained-adapter layouts, h94's plus-face),
tiny_detectors.py (the plate and person detectors of ``--detect``).
Those read the tiny U-Net from disk and never import this module (no import circle).
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .tiny_base import make_tiny_base
from .tiny_detectors import make_tiny_detectors
from .tiny_light import make_tiny_light, make_tiny_public

log = logging.getLogger("camstream")

MARKER_TEXT = """\
RANDOM WEIGHTS -- NOT A MODEL.
Every model under this folder was written by `camstream models make-tiny` with tiny
randomly initialised weights. Output made with them is noise. Use it for tests and demos
of the loading code only; never to anonymize real footage.
"""

CROSS_ATTENTION_DIM = 32


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP byte-level alphabet: every byte maps to a printable character."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def tiny_clip_tokenizer():  # noqa: ANN201
    """A CLIP BPE tokenizer over single bytes (no merges): offline and tiny."""
    from transformers import CLIPTokenizer

    chars = list(_bytes_to_unicode().values())
    vocab = {c: i for i, c in enumerate(chars)}
    vocab.update({c + "</w>": i + len(chars) for i, c in enumerate(chars)})
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=77)


def tiny_unet():  # noqa: ANN201
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=CROSS_ATTENTION_DIM, attention_head_dim=(2, 4), norm_num_groups=8,
    )


def make_tiny_sd15(root: Path, seed: int = 0) -> None:
    """``sd15`` (a diffusers StableDiffusionPipeline folder) and ``vae``: what both methods share."""
    from diffusers import AutoencoderKL, PNDMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    sd = root / "sd15"
    unet = tiny_unet()
    unet.save_pretrained(sd / "unet", safe_serialization=True)
    tok = tiny_clip_tokenizer()
    tok.save_pretrained(sd / "tokenizer")
    text = CLIPTextModel(CLIPTextConfig(hidden_size=CROSS_ATTENTION_DIM, intermediate_size=37, num_attention_heads=4,
                                        num_hidden_layers=2, vocab_size=len(tok), max_position_embeddings=77,
                                        projection_dim=CROSS_ATTENTION_DIM,
                                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    text.save_pretrained(sd / "text_encoder", safe_serialization=True)
    PNDMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", skip_prk_steps=True,
                  steps_offset=1, set_alpha_to_one=False).save_pretrained(sd / "scheduler")
    (sd / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "scheduler": ["diffusers", "PNDMScheduler"], "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"], "unet": ["diffusers", "UNet2DConditionModel"],
    }, indent=1))

    vae = AutoencoderKL(block_out_channels=(8, 8, 16, 16), norm_num_groups=8, latent_channels=4, sample_size=64,
                        down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1)
    vae.save_pretrained(root / "vae", safe_serialization=True)



def make_tiny_speed(root: Path, seed: int = 0) -> None:
    """``taesd`` (an AutoencoderTiny with the tiny ``vae``'s latent shape) and ``lcm_lora_sd15``
    (a LoRA for the tiny ``sd15`` U-Net on the LCM-LoRA's target modules, in the kohya key
    layout of the real file, made non-zero so that fusing it changes the U-Net). Needs the
    tiny sd15 and vae."""
    from diffusers import AutoencoderKL, AutoencoderTiny, UNet2DConditionModel
    from diffusers.utils import convert_state_dict_to_kohya
    from peft import LoraConfig
    from peft.utils import get_peft_model_state_dict
    from safetensors.torch import save_file

    from .names import LCM_LORA, LCM_LORA_WEIGHTS, TINY_VAE

    torch.manual_seed(seed)
    vae = AutoencoderKL.load_config(root / "vae")
    blocks = len(vae["block_out_channels"])  # as many halvings: latents of the same size
    AutoencoderTiny(encoder_block_out_channels=(8,) * blocks, decoder_block_out_channels=(8,) * blocks,
                    num_encoder_blocks=(1,) * blocks, num_decoder_blocks=(1,) * blocks,
                    latent_channels=vae["latent_channels"]).save_pretrained(root / TINY_VAE, safe_serialization=True)

    unet = UNet2DConditionModel.from_pretrained(root / "sd15" / "unet", local_files_only=True)
    # the modules the LCM-LoRA adapts (diffusers' train_lcm_distill_lora_sd.py)
    targets = ["to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj", "ff.net.2", "conv1", "conv2",
               "conv_shortcut", "downsamplers.0.conv", "upsamplers.0.conv", "time_emb_proj"]
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets))
    state = {f"unet.{key}": weight for key, weight in get_peft_model_state_dict(unet).items()}
    with torch.no_grad():
        for key, weight in state.items():
            if "lora_B" in key:  # peft starts B at zero: the LoRA would add nothing
                weight.normal_(0, 0.05)
    (root / LCM_LORA).mkdir(parents=True, exist_ok=True)
    # lora_unet_<module>.lora_down/lora_up/alpha, as in latent-consistency/lcm-lora-sdv1-5
    save_file({k: v.contiguous() for k, v in convert_state_dict_to_kohya(state).items()}, root / LCM_LORA / LCM_LORA_WEIGHTS)


def make_tiny(root: str | Path, resolution: int = 64, seed: int = 0) -> Path:
    """Write the tiny set under ``root`` (created) and return it."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "RANDOM_WEIGHTS.txt").write_text(MARKER_TEXT)
    make_tiny_sd15(root, seed)
    make_tiny_speed(root, seed)
    make_tiny_base(root, seed)
    make_tiny_light(root, seed)
    make_tiny_public(root, seed)
    make_tiny_detectors(root, seed)
    (root / "README.txt").write_text(f"tiny random models for {resolution} px tests; see RANDOM_WEIGHTS.txt\n")
    return root
