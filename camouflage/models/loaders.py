"""One loader per manifest ``kind``: what ``camstream models check`` runs to say an entry
*loads*, through the same readers the methods use at run time (annotators.py, farl.py,
facer.py, adapters.py here; diffusers and transformers), so a file that passes the check is
read the way a run reads it.

Every loader takes the entry's resolved folder (the publisher's files under their own
names) and returns the loaded object; it raises :class:`~streamer.errors.ModelError`
(one line) when the files are not what the manifest says.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from streamer.errors import ModelError


def _sd15(path: Path) -> Any:
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    return (UNet2DConditionModel.from_pretrained(path / "unet", use_safetensors=True, local_files_only=True),
            CLIPTextModel.from_pretrained(path / "text_encoder", use_safetensors=True, local_files_only=True),
            CLIPTokenizer.from_pretrained(path / "tokenizer"))


def _diffusers(cls_name: str) -> Callable[[Path], Any]:
    def load(path: Path) -> Any:
        import diffusers

        return getattr(diffusers, cls_name).from_pretrained(path, use_safetensors=True, local_files_only=True)

    return load


def _annotator(kind: str) -> Callable[[Path], Any]:
    def load(path: Path) -> Any:
        from .annotators import read_annotator

        return read_annotator(kind, path, "cpu")

    return load


def _captioner(path: Path) -> Any:
    from .annotators import read_captioner

    return read_captioner(path)


def _lora(path: Path) -> Any:
    from safetensors.torch import load_file

    from .names import LCM_LORA_WEIGHTS

    state = load_file(str(path / LCM_LORA_WEIGHTS))
    if not any(k.startswith("lora_unet_") for k in state):
        raise ModelError(f"{path}: {LCM_LORA_WEIGHTS} holds no kohya-style U-Net LoRA keys")
    return state


def _farl(path: Path) -> Any:
    from .farl import load_farl_vision

    return load_farl_vision(path)


def _facer(path: Path) -> Any:
    from .facer import load_attribute_net

    return load_attribute_net(path)


def _ip_adapter(path: Path) -> Any:
    from .adapters import load_ip_adapter_file
    from .names import IP_ADAPTER_WEIGHTS

    nested = load_ip_adapter_file(path / IP_ADAPTER_WEIGHTS)
    if not nested["image_proj"] or not nested["ip_adapter"]:
        raise ModelError(f"{path}: {IP_ADAPTER_WEIGHTS} lacks image_proj.* or ip_adapter.* keys")
    return nested


def _ip_adapter_plus(path: Path) -> Any:
    from safetensors import safe_open
    from transformers import CLIPVisionModelWithProjection

    from . import names

    weights = path / names.IP_ADAPTER_PLUS_SUBFOLDER / names.IP_ADAPTER_PLUS_WEIGHTS
    with safe_open(str(weights), "pt") as f:
        keys = set(f.keys())
    if "image_proj.latents" not in keys or not any(k.startswith("ip_adapter.") for k in keys):
        raise ModelError(f"{weights}: not an IP-Adapter plus file (no image_proj.latents / ip_adapter.*)")
    encoder = path / names.IP_ADAPTER_PLUS_SUBFOLDER / names.IP_ADAPTER_PLUS_ENCODER
    return CLIPVisionModelWithProjection.from_pretrained(str(encoder), use_safetensors=True, local_files_only=True)


def _detector(kind: str) -> Callable[[Path], Any]:
    """The detectors of ``--detect`` (tracking/plates.py, tracking/persons.py): the ONNX plate
    model needs onnxruntime only, so a classical install can import and check it."""

    def load(path: Path) -> Any:
        from tracking.persons import PERSON_LOADERS
        from tracking.plates import load_plate_model

        return PERSON_LOADERS[kind](path) if kind in PERSON_LOADERS else load_plate_model(kind, path)

    return load


LOADERS: dict[str, Callable[[Path], Any]] = {
    "sd15": _sd15,
    "vae": _diffusers("AutoencoderKL"),
    "controlnet": _diffusers("ControlNetModel"),
    "t2i-adapter": _diffusers("T2IAdapter"),
    "diffusers-autoencoder-tiny": _diffusers("AutoencoderTiny"),
    "lora": _lora,
    "transformers-depth": _annotator("transformers-depth"),
    "transformers-seg": _annotator("transformers-seg"),
    "normalbae": _annotator("normalbae"),
    "openpose": _annotator("openpose"),
    "lineart": _annotator("lineart"),
    "transformers-caption": _captioner,
    "farl-clip": _farl,
    "facer-attributes": _facer,
    "ip-adapter": _ip_adapter,
    "ip-adapter-plus": _ip_adapter_plus,
    "onnx-plates-yolo-v9": _detector("onnx-plates-yolo-v9"),
    "torchscript-egoblur-lp": _detector("torchscript-egoblur-lp"),
    "transformers-object-detection": _detector("transformers-object-detection"),
}


def load_entry(kind: str, path: str | Path) -> Any:
    """Load the files of an entry of ``kind`` at ``path`` (CPU, fp32). Raises ModelError."""
    try:
        loader = LOADERS[kind]
    except KeyError:
        raise ModelError(f"no loader for model kind {kind!r}") from None
    try:
        import transformers
    except ImportError:  # a classical install checking a plate model: nothing to quieten
        pass
    else:
        transformers.utils.logging.disable_progress_bar()
    try:
        return loader(Path(path))
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load is this entry's, one line
        text = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
        raise ModelError(f"{path}: cannot load {kind} ({type(exc).__name__}: {text})") from None
