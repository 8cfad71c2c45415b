"""Random-weight Base models in their publishers' formats, for tests and demos.

``make_tiny_base(root)`` (called by ``camstream models make-tiny DIR`` after the tiny
``sd15``/``vae``, tiny.py) writes
  controlnet_{depth,normal,seg,pose,lineart}/  diffusers ControlNetModel (config.json +
                         diffusion_pytorch_model.safetensors) copied from the tiny U-Net
  idf_controlnet/        the IDF ControlNet (4-channel latent condition), same layout
  annotator_depth/       transformers DepthAnythingForDepthEstimation (safetensors)
  annotator_seg/         transformers UperNet + ConvNeXt, config.json + pytorch_model.bin
                         (openmmlab/upernet-convnext-small's main has no safetensors)
  captioner/             transformers BLIP, pytorch_model.bin + the repo's tokenizer files
  annotator_{normal,pose,lineart}/  lllyasviel/Annotators' .pth files, FULL size (their
                         architectures are fixed in controlnet-aux), from controlnet-aux's classes
The loaders read these exactly as they read the real files.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import UNet2DConditionModel

from streamer.errors import ModelError

from .adapters import make_idf_controlnet
from .names import CONTROLS, IDF


def _save_bin(model, folder: Path) -> None:  # noqa: ANN001 - a transformers model
    """config.json + pytorch_model.bin: the layout of hub repos whose main has no safetensors."""
    model.config.save_pretrained(folder)
    torch.save({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "pytorch_model.bin")


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


def make_tiny_base(root: Path, seed: int = 0) -> None:
    """The five ControlNets, the IDF ControlNet and the annotators, under ``root``."""
    root = Path(root)
    if not (root / "sd15" / "unet").is_dir():
        raise ModelError(f"{root}: write the tiny sd15 first (camouflage.models.tiny.make_tiny_sd15)")
    unet = UNet2DConditionModel.from_pretrained(root / "sd15" / "unet", local_files_only=True)
    torch.manual_seed(seed)
    for control in CONTROLS:
        tiny_controlnet(unet).save_pretrained(root / f"controlnet_{control}", safe_serialization=True)
    randomize_zero_convs(make_idf_controlnet(unet, embedding=(16,))).save_pretrained(root / IDF, safe_serialization=True)
    make_tiny_annotators(root, seed)


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

    from .annotators import controlnet_aux_module

    controlnet_aux_module()
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
