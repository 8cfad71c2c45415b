"""The five control images of CAMOUFLaGE-Base (depth, normal, seg, pose, lineart) and the
captioner, each loaded through the manifest (entry ``annotator_<control>`` / ``captioner``).

Weight-free stand-ins exist only as explicit, named options (``base.annotators:
{lineart: lineart_standard}``); a missing checkpoint is an error, never a silent swap.

>>> annotators = load_annotators(ModelResolver(models_dir="models"))  # doctest: +SKIP
>>> controls = {name: a(image, 768) for name, a in annotators.items()}  # each (768, 768, 3) uint8
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image
from torch import nn

from streamer.errors import ConfigError, ModelError

from .manifest import ModelResolver
from .pipelines import CONTROLS

TINY_CONFIG = "camstream_tiny.json"


class Annotator(Protocol):
    name: str

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> control image (resolution, resolution, 3) uint8."""
        ...


def _square(image: np.ndarray, resolution: int) -> Image.Image:
    return Image.fromarray(image).resize((resolution, resolution), Image.BICUBIC)


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x.clamp(0, 1) * 255).round().byte().cpu().numpy()


class DepthAnnotator:
    """Relative (inverse) depth from a transformers depth model, grey, near = bright."""

    name = "depth"

    def __init__(self, model, processor) -> None:  # noqa: ANN001
        self.model, self.processor = model.eval(), processor

    @classmethod
    def from_pretrained(cls, path: Path, device: torch.device) -> DepthAnnotator:
        from transformers import AutoImageProcessor, AutoModelForDepthEstimation

        return cls(AutoModelForDepthEstimation.from_pretrained(path, use_safetensors=True).to(device),
                   AutoImageProcessor.from_pretrained(path))

    @torch.no_grad()
    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        inputs = self.processor(images=_square(image, resolution), return_tensors="pt").to(self.model.device)
        depth = self.model(**inputs).predicted_depth[:, None].float()
        depth = torch.nn.functional.interpolate(depth, (resolution, resolution), mode="bicubic")[0, 0]
        depth = (depth - depth.min()) / (depth.max() - depth.min()).clamp_min(1e-6)
        return np.repeat(_to_uint8(depth)[:, :, None], 3, axis=2)


class SegAnnotator:
    """ADE20K semantic segmentation painted with the ADE palette ControlNet seg expects."""

    name = "seg"

    def __init__(self, model, processor) -> None:  # noqa: ANN001
        self.model, self.processor = model.eval(), processor
        self.palette = np.array(_controlnet_aux_module().util.ade_palette(), np.uint8)

    @classmethod
    def from_pretrained(cls, path: Path, device: torch.device) -> SegAnnotator:
        from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

        return cls(AutoModelForSemanticSegmentation.from_pretrained(path, use_safetensors=True).to(device),
                   AutoImageProcessor.from_pretrained(path))

    @torch.no_grad()
    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        inputs = self.processor(images=_square(image, resolution), return_tensors="pt").to(self.model.device)
        logits = self.model(**inputs).logits.float()
        logits = torch.nn.functional.interpolate(logits, (resolution, resolution), mode="bilinear")
        labels = logits[0].argmax(0).cpu().numpy()
        return self.palette[labels % len(self.palette)]


class ControlnetAuxAnnotator:
    """A controlnet-aux detector (NormalBAE, OpenPose, Lineart) loaded from a local folder."""

    def __init__(self, name: str, detector, kwargs: Mapping | None = None) -> None:  # noqa: ANN001
        self.name, self.detector, self.kwargs = name, detector, dict(kwargs or {})

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        out = self.detector(_square(image, resolution), detect_resolution=resolution, image_resolution=resolution,
                            output_type="np", **self.kwargs)
        out = np.asarray(out)
        if out.ndim == 2:
            out = np.repeat(out[:, :, None], 3, axis=2)
        if out.shape[:2] != (resolution, resolution):
            out = np.asarray(Image.fromarray(out).resize((resolution, resolution), Image.BILINEAR))
        return out.astype(np.uint8)


def _controlnet_aux_module():  # noqa: ANN202
    """controlnet_aux, imported without its import-time noise (mediapipe missing, timm deprecations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux
        import controlnet_aux.util

    return controlnet_aux


def _controlnet_aux(kind: str, path: Path, device: torch.device) -> Annotator:
    controlnet_aux = _controlnet_aux_module()

    if kind == "normalbae":
        return ControlnetAuxAnnotator("normal", controlnet_aux.NormalBaeDetector.from_pretrained(str(path)).to(device))
    if kind == "openpose":
        det = controlnet_aux.OpenposeDetector.from_pretrained(str(path)).to(device)
        return ControlnetAuxAnnotator("pose", det, {"include_hand": True, "include_face": True})
    if kind == "lineart":
        return ControlnetAuxAnnotator("lineart", controlnet_aux.LineartDetector.from_pretrained(str(path)).to(device))
    raise ModelError(f"unknown annotator kind {kind!r}")


class TinyAnnotatorNet(nn.Module):
    """A two-layer conv net with RANDOM weights: the stand-in ``make-tiny`` writes for the
    annotators whose real checkpoints are fixed-size pickles (NormalBAE, OpenPose, lineart).
    Real loading path (config.json + model.safetensors), meaningless output."""

    def __init__(self, control: str, channels: int = 8) -> None:
        super().__init__()
        self.control, self.channels = control, channels
        self.net = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.ReLU(), nn.Conv2d(channels, 3, 3, padding=1), nn.Sigmoid())

    @property
    def name(self) -> str:
        return self.control

    def save_pretrained(self, path: Path) -> None:
        from safetensors.torch import save_file

        path.mkdir(parents=True, exist_ok=True)
        (path / "config.json").write_text(json.dumps({"_class_name": "TinyAnnotatorNet", "control": self.control, "channels": self.channels}))
        save_file({k: v.contiguous() for k, v in self.state_dict().items()}, str(path / "model.safetensors"))

    @classmethod
    def from_pretrained(cls, path: Path, device: torch.device) -> TinyAnnotatorNet:
        from safetensors.torch import load_file

        config = json.loads((path / "config.json").read_text())
        model = cls(config["control"], config["channels"])
        model.load_state_dict(load_file(str(path / "model.safetensors")))
        return model.to(device).eval()

    @torch.no_grad()
    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:  # type: ignore[override]
        x = torch.from_numpy(np.array(_square(image, resolution))).permute(2, 0, 1)[None].float() / 255
        return _to_uint8(self.net(x.to(next(self.parameters()).device))[0].permute(1, 2, 0))


class WeightFreeAnnotator:
    """controlnet-aux detectors that need no weights, offered only when asked for by name."""

    def __init__(self, name: str) -> None:
        controlnet_aux = _controlnet_aux_module()
        self.name = name
        self.detector = {"canny": controlnet_aux.CannyDetector, "lineart_standard": controlnet_aux.LineartStandardDetector}[name]()

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        img = np.asarray(_square(image, resolution))
        out = np.asarray(self.detector(img, detect_resolution=resolution, image_resolution=resolution, output_type="np"))
        if out.ndim == 2:
            out = np.repeat(out[:, :, None], 3, axis=2)
        return out[:resolution, :resolution].astype(np.uint8)


WEIGHT_FREE = ("canny", "lineart_standard")


def load_annotator(control: str, resolver: ModelResolver, device: torch.device | str = "cpu",
                   override: str | None = None) -> Annotator:
    """The annotator of ``control``: manifest entry ``annotator_<control>``, or a named weight-free option."""
    device = torch.device(device)
    if control not in CONTROLS:
        raise ConfigError(f"unknown control {control!r} (known: {', '.join(CONTROLS)})")
    if override:
        if override not in WEIGHT_FREE:
            raise ConfigError(f"base.annotators.{control}: {override!r} is not a weight-free annotator ({', '.join(WEIGHT_FREE)})")
        return WeightFreeAnnotator(override)
    name = f"annotator_{control}"
    path = resolver.resolve(name)
    return load_annotator_from(resolver.manifest[name].kind, path, device)


def load_annotator_from(kind: str, path: Path, device: torch.device) -> Annotator:
    config = path / "config.json"
    if config.exists() and json.loads(config.read_text()).get("_class_name") == "TinyAnnotatorNet":
        return TinyAnnotatorNet.from_pretrained(path, device)
    try:
        if kind == "transformers-depth":
            return DepthAnnotator.from_pretrained(path, device)
        if kind == "transformers-seg":
            return SegAnnotator.from_pretrained(path, device)
        return _controlnet_aux(kind, path, device)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint is a model error, one line
        raise ModelError(f"{path}: cannot load {kind} annotator ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def load_annotators(resolver: ModelResolver, device: torch.device | str = "cpu",
                    overrides: Mapping[str, str] | None = None, controls: tuple[str, ...] = CONTROLS) -> dict[str, Annotator]:
    overrides = dict(overrides or {})
    unknown = set(overrides) - set(CONTROLS)
    if unknown:
        raise ConfigError(f"base.annotators: unknown control(s) {', '.join(sorted(unknown))}")
    needed = [f"annotator_{c}" for c in controls if c not in overrides]
    resolver.resolve_many(needed)  # one error naming every missing annotator
    return {c: load_annotator(c, resolver, device, overrides.get(c)) for c in controls}


class Captioner:
    """BLIP image captioning: the prompt of CAMOUFLaGE-Base when none is given."""

    def __init__(self, model, processor, max_new_tokens: int = 30) -> None:  # noqa: ANN001
        self.model, self.processor, self.max_new_tokens = model.eval(), processor, max_new_tokens

    @classmethod
    def from_pretrained(cls, path: Path, device: torch.device | str = "cpu", max_new_tokens: int = 30) -> Captioner:
        from transformers import BlipForConditionalGeneration, BlipProcessor

        try:
            model = BlipForConditionalGeneration.from_pretrained(path, use_safetensors=True).to(device)
            return cls(model, BlipProcessor.from_pretrained(path), max_new_tokens)
        except Exception as exc:  # noqa: BLE001
            raise ModelError(f"{path}: cannot load the captioner ({type(exc).__name__})") from exc

    @torch.no_grad()
    def __call__(self, image: np.ndarray) -> str:
        inputs = self.processor(images=Image.fromarray(image), return_tensors="pt").to(self.model.device)
        ids = self.model.generate(**inputs, max_new_tokens=self.max_new_tokens, do_sample=False)
        return self.processor.decode(ids[0], skip_special_tokens=True).strip()
