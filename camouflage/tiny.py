"""``camstream models make-tiny DIR``: RANDOM-weight models for every manifest entry, in
the publisher's exact format (file names, key names, config files, dtype) under
``DIR/<name>/``, built with the publisher's own code where it is a package (diffusers,
transformers, controlnet-aux's model classes, pyfacer), so tests and demos go through the
loaders real files go through. Tiny where the architecture is read from the files; full
size where the format fixes it (controlnet-aux's NormalBAE, OpenPose and lineart nets:
about 800 MB together). ``DIR/RANDOM_WEIGHTS.txt`` marks the set; loaders warn loudly.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

log = logging.getLogger("camstream")

MARKER_TEXT = """\
RANDOM WEIGHTS -- NOT A MODEL.
Every model under this folder was written by `camstream models make-tiny` with tiny
randomly initialised weights. Output made with them is noise. Use it for tests and demos
of the loading code only; never to anonymize real footage.
"""

CROSS_ATTENTION_DIM = 32


def _save_bin(model, folder: Path) -> None:  # noqa: ANN001 - a transformers model
    """config.json + pytorch_model.bin: the layout of hub repos whose main has no safetensors."""
    model.config.save_pretrained(folder)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")


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


def tiny_controlnet(unet, conditioning_channels: int = 3, embedding=(8, 8, 16, 16)):  # noqa: ANN001, ANN201
    """A ControlNet copied from ``unet`` whose zero convolutions are made random, so it
    changes the prediction (a freshly initialised ControlNet adds exactly zero)."""
    from diffusers import ControlNetModel

    return randomize_zero_convs(ControlNetModel.from_unet(unet, conditioning_channels=conditioning_channels,
                                                         conditioning_embedding_out_channels=embedding))


def randomize_zero_convs(cn):  # noqa: ANN001, ANN201
    with torch.no_grad():
        for module in [*cn.controlnet_down_blocks, cn.controlnet_mid_block, cn.controlnet_cond_embedding.conv_out]:
            for p in module.parameters():
                p.normal_(0, 0.05)
    return cn


def make_tiny_sd15(root: Path, seed: int = 0) -> None:
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

    for control in ("depth", "normal", "seg", "pose", "lineart"):
        tiny_controlnet(unet).save_pretrained(root / f"controlnet_{control}", safe_serialization=True)
    from .pipelines.base import make_idf_controlnet

    randomize_zero_convs(make_idf_controlnet(unet, embedding=(16,))).save_pretrained(root / "idf_controlnet", safe_serialization=True)


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

    from .speed import LCM_LORA, LCM_LORA_WEIGHTS, TINY_VAE

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


def make_tiny_annotators(root: Path, seed: int = 0) -> None:
    from transformers import (
        BertTokenizerFast,
        BlipConfig,
        BlipForConditionalGeneration,
        BlipImageProcessor,
        ConvNextConfig,
        DepthAnythingConfig,
        DepthAnythingForDepthEstimation,
        DPTImageProcessor,
        SegformerImageProcessor,
        UperNetConfig,
        UperNetForSemanticSegmentation,
    )

    torch.manual_seed(seed)
    depth = DepthAnythingForDepthEstimation(DepthAnythingConfig(
        backbone_config={"model_type": "dinov2", "hidden_size": 16, "num_hidden_layers": 4, "num_attention_heads": 2,
                         "mlp_ratio": 2, "image_size": 28, "patch_size": 14,
                         "out_features": ["stage1", "stage2", "stage3", "stage4"], "reshape_hidden_states": False},
        reassemble_hidden_size=16, neck_hidden_sizes=(8, 8, 16, 16), fusion_hidden_size=8, head_hidden_size=8))
    depth.save_pretrained(root / "annotator_depth", safe_serialization=True)
    DPTImageProcessor(size={"height": 28, "width": 28}, keep_aspect_ratio=True, ensure_multiple_of=14,
                      do_pad=False).save_pretrained(root / "annotator_depth")

    seg = UperNetForSemanticSegmentation(UperNetConfig(
        backbone_config=ConvNextConfig(hidden_sizes=[8, 8, 16, 16], depths=[1, 1, 1, 1], out_features=["stage1", "stage2", "stage3", "stage4"]),
        hidden_size=8, auxiliary_channels=8, auxiliary_in_channels=16, num_labels=150, use_auxiliary_head=False))
    _save_bin(seg, root / "annotator_seg")
    SegformerImageProcessor(size={"height": 32, "width": 32}).save_pretrained(root / "annotator_seg")
    make_controlnet_aux_annotators(root)

    # BLIP with a word-piece vocabulary of a few words
    cap = root / "captioner"
    cap.mkdir(parents=True, exist_ok=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "person", "man", "woman", "in", "the",
             "with", "room", "street", "face", "smiling", "standing", "[DEC]"]
    (cap / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(cap / "vocab.txt"), bos_token="[DEC]", model_max_length=32)
    (cap / "vocab.txt").unlink()
    config = BlipConfig(
        text_config={"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "encoder_hidden_size": 16, "max_position_embeddings": 32,
                     "bos_token_id": words.index("[DEC]"), "eos_token_id": words.index("[SEP]"),
                     "sep_token_id": words.index("[SEP]"), "pad_token_id": 0},
        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
                       "image_size": 32, "patch_size": 8},
        projection_dim=16,
    )
    _save_bin(BlipForConditionalGeneration(config), cap)
    # the repo's layout: preprocessor_config.json + tokenizer files (no processor_config.json)
    BlipImageProcessor(size={"height": 32, "width": 32}).save_pretrained(cap)
    tokenizer.save_pretrained(cap)
    (cap / "vocab.txt").write_text("\n".join(words) + "\n")
    if not (cap / "special_tokens_map.json").exists():  # the hub repo has one; transformers 5 writes none
        (cap / "special_tokens_map.json").write_text(json.dumps({k: getattr(tokenizer, k) for k in (
            "cls_token", "mask_token", "pad_token", "sep_token", "unk_token")}))


def make_controlnet_aux_annotators(root: Path, seed: int = 0) -> None:
    """lllyasviel/Annotators' files for NormalBAE, OpenPose and lineart, full size (their
    architectures are fixed in controlnet-aux), random weights from controlnet-aux's classes."""
    import contextlib
    import io
    import types
    import warnings

    from .annotators import _controlnet_aux_module

    _controlnet_aux_module()
    from controlnet_aux.lineart import Generator
    from controlnet_aux.normalbae.nets.NNET import NNET
    from controlnet_aux.open_pose.face import FaceNet
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    torch.manual_seed(seed)
    pose = root / "annotator_pose"
    pose.mkdir(parents=True, exist_ok=True)
    # body/hand files name each conv without its block prefix (controlnet-aux's util.transfer)
    for model, file in ((bodypose_model(), "body_pose_model.pth"), (handpose_model(), "hand_pose_model.pth")):
        torch.save({k.split(".", 1)[1]: v for k, v in model.state_dict().items()}, pose / file)
    torch.save(FaceNet().state_dict(), pose / "facenet.pth")
    normal = root / "annotator_normal"
    normal.mkdir(parents=True, exist_ok=True)
    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4, importance_ratio=0.7)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        torch.save({"model": NNET(args).state_dict()}, normal / "scannet.pt")
    lineart = root / "annotator_lineart"
    lineart.mkdir(parents=True, exist_ok=True)
    for file in ("sk_model.pth", "sk_model2.pth"):
        torch.save(Generator(3, 1, 3).state_dict(), lineart / file)


def make_tiny(root: str | Path, resolution: int = 64, seed: int = 0) -> Path:
    """Write the tiny set under ``root`` (created) and return it."""
    import transformers

    transformers.utils.logging.disable_progress_bar()
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    (root / "RANDOM_WEIGHTS.txt").write_text(MARKER_TEXT)
    make_tiny_sd15(root, seed)
    make_tiny_speed(root, seed)
    make_tiny_annotators(root, seed)
    from .light.tiny import make_tiny_light, make_tiny_public

    make_tiny_light(root, seed)
    make_tiny_public(root, seed)
    (root / "README.txt").write_text(f"tiny random models for {resolution} px tests; see RANDOM_WEIGHTS.txt\n")
    return root
