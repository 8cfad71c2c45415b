"""The five control images of CAMOUFLaGE-Base (depth, normal, seg, pose, lineart) and the
captioner, each loaded through the manifest (entry ``annotator_<control>`` / ``captioner``).

The networks are read by camouflage/models/annotators.py (the same code ``models check``
loads them with): the controlnet-aux annotators from lllyasviel/Annotators' ``.pth`` files
into controlnet-aux's own model classes, the transformers ones with ``from_pretrained``;
this module runs them on crops. Weight-free stand-ins exist only as explicit, named options (``base.annotators:
{lineart: lineart_standard}``); a missing checkpoint is an error, never a silent swap.

>>> annotators = load_annotators(ModelResolver(models_dir="models"))  # doctest: +SKIP
>>> controls = {name: a(image, 768) for name, a in annotators.items()}  # each (768, 768, 3) uint8
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from PIL import Image

from streamer.errors import ConfigError, ModelError

from ..models.annotators import controlnet_aux_module, read_annotator, read_captioner
from ..models.manifest import ModelResolver
from ..models.names import CONTROLS


class Annotator(Protocol):
    name: str

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        """RGB uint8 (H, W, 3) -> control image (resolution, resolution, 3) uint8."""
        ...

    def batch(self, images: list[np.ndarray], resolution: int) -> list[np.ndarray]:
        """The same for many crops, in as few network calls as the annotator allows."""
        ...


class _OneByOne:
    """``batch`` as a loop, for annotators whose post-processing is per image."""

    def batch(self, images: list[np.ndarray], resolution: int) -> list[np.ndarray]:
        return [self(image, resolution) for image in images]


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
        return cls(*read_annotator("transformers-depth", path, device))

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        return self.batch([image], resolution)[0]

    @torch.no_grad()
    def batch(self, images: list[np.ndarray], resolution: int) -> list[np.ndarray]:
        inputs = self.processor(images=[_square(i, resolution) for i in images], return_tensors="pt").to(self.model.device)
        depth = self.model(**_model_dtype(inputs, self.model)).predicted_depth[:, None].float()
        depth = torch.nn.functional.interpolate(depth, (resolution, resolution), mode="bicubic")[:, 0]
        low = depth.amin((1, 2), keepdim=True)
        depth = (depth - low) / (depth.amax((1, 2), keepdim=True) - low).clamp_min(1e-6)  # each image its own range
        return [np.repeat(_to_uint8(d)[:, :, None], 3, axis=2) for d in depth]


class SegAnnotator:
    """ADE20K semantic segmentation painted with the ADE palette ControlNet seg expects."""

    name = "seg"

    def __init__(self, model, processor) -> None:  # noqa: ANN001
        self.model, self.processor = model.eval(), processor
        self.palette = np.array(controlnet_aux_module().util.ade_palette(), np.uint8)

    @classmethod
    def from_pretrained(cls, path: Path, device: torch.device) -> SegAnnotator:
        return cls(*read_annotator("transformers-seg", path, device))

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        return self.batch([image], resolution)[0]

    @torch.no_grad()
    def batch(self, images: list[np.ndarray], resolution: int) -> list[np.ndarray]:
        inputs = self.processor(images=[_square(i, resolution) for i in images], return_tensors="pt").to(self.model.device)
        logits = self.model(**_model_dtype(inputs, self.model)).logits.float()
        logits = torch.nn.functional.interpolate(logits, (resolution, resolution), mode="bilinear")
        labels = logits.argmax(1).cpu().numpy()
        return [self.palette[lab % len(self.palette)] for lab in labels]


def _model_dtype(inputs, model):  # noqa: ANN001, ANN202 - a BatchFeature
    """The processor's float tensors in the model's dtype (fp16 models on a GPU)."""
    dtype = next(model.parameters()).dtype
    return {k: v.to(dtype) if torch.is_floating_point(v) else v for k, v in inputs.items()}


def _work_size(resolution: int) -> int:
    # controlnet-aux rounds sizes to multiples of 64 (a 32 px request became 0 px and
    # OpenCV raised): run it at the nearest such size, at least 64, and resize after.
    return max(64, int(round(resolution / 64)) * 64)


def _to_resolution(out: np.ndarray, resolution: int) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim == 2:
        out = np.repeat(out[:, :, None], 3, axis=2)
    if out.shape[:2] != (resolution, resolution):
        out = np.asarray(Image.fromarray(out).resize((resolution, resolution), Image.BILINEAR))
    return out.astype(np.uint8)


class ControlnetAuxAnnotator:
    """A controlnet-aux detector (NormalBAE, OpenPose, Lineart) loaded from a local folder.

    ``batch`` runs NormalBAE's and lineart's networks once over all crops, with
    controlnet-aux's own pre- and post-processing (same output as one call per crop);
    OpenPose's post-processing is NumPy per image, so it stays one call per crop."""

    def __init__(self, name: str, detector, kwargs: Mapping | None = None) -> None:  # noqa: ANN001
        self.name, self.detector, self.kwargs = name, detector, dict(kwargs or {})

    def __call__(self, image: np.ndarray, resolution: int) -> np.ndarray:
        work = _work_size(resolution)
        out = self.detector(_square(image, work), detect_resolution=work, image_resolution=work,
                            output_type="np", **self.kwargs)
        return _to_resolution(out, resolution)

    @torch.no_grad()
    def batch(self, images: list[np.ndarray], resolution: int) -> list[np.ndarray]:
        if self.name not in ("normal", "lineart") or len(images) < 2:
            return [self(image, resolution) for image in images]
        work = _work_size(resolution)
        model = self.detector.model
        p = next(model.parameters())
        x = torch.from_numpy(np.stack([np.asarray(_square(i, work)) for i in images])).to(p.device).float() / 255.0
        x = x.permute(0, 3, 1, 2)
        if self.name == "normal":  # NormalBaeDetector.__call__, over a batch
            normal = model(self.detector.norm(x))[0][-1][:, :3]
            maps = (((normal + 1) * 0.5).clip(0, 1).permute(0, 2, 3, 1).cpu().numpy() * 255.0).clip(0, 255).astype(np.uint8)
        else:  # LineartDetector.__call__ (fine model), over a batch
            line = model(x)[:, 0].cpu().numpy()
            maps = 255 - (line * 255.0).clip(0, 255).astype(np.uint8)
        return [_to_resolution(m, resolution) for m in maps]

    def body_with_faces(self, image: np.ndarray, resolution: int, faces: list[np.ndarray]) -> np.ndarray:
        """Pose for the identity-blind path: OpenPose's body and hands (never its 70 face
        landmarks; its head keypoints are dropped), then each face's 5 detector landmarks
        (crop pixels at ``resolution``) drawn as openpose's nose, eyes and mouth
        (camouflage/blind.py). ``image`` is the crop with the faces filled from context."""
        from controlnet_aux.open_pose import util

        from ..blind import HEAD_KEYPOINTS, NECK, draw_head_pose, head_keypoints

        work = _work_size(resolution)
        poses = self.detector.detect_poses(np.asarray(_square(image, work)), include_hand=True, include_face=False)
        canvas = np.zeros((work, work, 3), np.uint8)
        necks = []
        for pose in poses:
            keypoints = [None if k in HEAD_KEYPOINTS else p for k, p in enumerate(pose.body.keypoints)]
            canvas = util.draw_bodypose(canvas, keypoints)
            canvas = util.draw_handpose(canvas, pose.left_hand)
            canvas = util.draw_handpose(canvas, pose.right_hand)
            if keypoints[NECK] is not None:
                necks.append(np.array([keypoints[NECK].x * work, keypoints[NECK].y * work], np.float32))
        scale = work / resolution
        for landmarks in faces:
            lm = np.asarray(landmarks, np.float32).reshape(5, 2) * scale
            guess = head_keypoints(lm)[NECK]
            size = float(np.ptp(lm[:, 0]) + np.ptp(lm[:, 1])) + 1.0
            near = [n for n in necks if np.hypot(*(n - guess)) < 1.5 * size]  # this face's own body, if OpenPose found it
            draw_head_pose(canvas, lm, min(near, key=lambda n: np.hypot(*(n - guess))) if near else None)
        return _to_resolution(canvas, resolution)


def _controlnet_aux(kind: str, path: Path, device: torch.device) -> Annotator:
    if kind == "normalbae":
        return ControlnetAuxAnnotator("normal", read_annotator(kind, path, device))
    if kind == "openpose":
        return ControlnetAuxAnnotator("pose", read_annotator(kind, path, device), {"include_hand": True, "include_face": True})
    if kind == "lineart":
        return ControlnetAuxAnnotator("lineart", read_annotator(kind, path, device))
    raise ModelError(f"unknown annotator kind {kind!r}")


class WeightFreeAnnotator(_OneByOne):
    """controlnet-aux detectors that need no weights, offered only when asked for by name."""

    def __init__(self, name: str) -> None:
        controlnet_aux = controlnet_aux_module()
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


def load_annotator_from(kind: str, path: Path, device: torch.device | str) -> Annotator:
    device = torch.device(device)
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
        return cls(*read_captioner(path, device), max_new_tokens)

    def __call__(self, image: np.ndarray) -> str:
        return self.batch([image])[0]

    @torch.no_grad()
    def batch(self, images: list[np.ndarray]) -> list[str]:
        """One ``generate`` over all crops (greedy decoding: the same captions as one by one)."""
        inputs = self.processor(images=[Image.fromarray(i) for i in images], return_tensors="pt").to(self.model.device)
        ids = self.model.generate(**_model_dtype(inputs, self.model), max_new_tokens=self.max_new_tokens, do_sample=False)
        return [text.strip() for text in self.processor.batch_decode(ids, skip_special_tokens=True)]
