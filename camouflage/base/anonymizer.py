"""CAMOUFLaGE-Base behind the pipeline's Anonymizer interface (``--method base``).

Scope ``face``/``person``: each region's box, enlarged by ``anonymize.margin`` and made
square, is cropped, resized to ``base.resolution``, regenerated (all regions of a frame in
one batch) and pasted back through a feathered mask. The mask is 1 on the covered shape
(the same shape the classical methods cover) and fades to 0 over a ring outside it;
pixels outside the ring are never touched. Scope ``scene``: the whole frame is
regenerated (resized to a square, then back).

Every failure raises: the video pipeline then covers the regions with its fallback, so
an original face is never returned.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from streamer.anonymizers import Shape
from streamer.errors import ConfigError
from streamer.frame import Frame
from tracking.tracker import Region, enlarge

from ..manifest import ModelResolver
from ..speed import LCM_GUIDANCE_SCALE, apply_speed, speed_models
from . import BASE_MODELS, CONTROLS, IDF

if TYPE_CHECKING:  # torch and diffusers load only once the models are known to be there
    from .annotators import Captioner
    from .pipeline import CamouflageBasePipeline


FEATHER = 0.1  # width of the blend ring outside the covered shape, as a fraction of the box size
log = logging.getLogger("camstream")


def feathered_mask(hard: np.ndarray, width: int) -> np.ndarray:
    """float32 mask: 1 on ``hard`` (bool), fading to 0 over ``width`` pixels outside it."""
    hard = hard.astype(np.float32)
    if width < 1:
        return hard
    dist = cv2.distanceTransform((hard == 0).astype(np.uint8), cv2.DIST_L2, 5)  # distance to the covered shape
    soft = np.clip(1.0 - dist / width, 0.0, 1.0)
    return np.maximum(soft, hard)


class BaseAnonymizer:
    """``anonymize(image, regions, frame)`` with CAMOUFLaGE-Base (see module docstring)."""

    name = "base"

    def __init__(self, pipeline: CamouflageBasePipeline, annotators: dict, captioner: Captioner | None,
                 settings, scope: str = "face", shape: Shape | None = None) -> None:  # noqa: ANN001 - BaseConfig
        if scope not in ("face", "person", "scene"):
            raise ConfigError(f"anonymize.scope {scope!r}: use face, person or scene")
        if settings.prompt is None and captioner is None:
            raise ConfigError("CAMOUFLaGE-Base needs a captioner or base.prompt")
        self.pipeline, self.annotators, self.captioner = pipeline, annotators, captioner
        self.settings, self.scope, self.shape = settings, scope, shape or Shape()

    # -- one batch of square crops -> generated crops -------------------------------------

    def generate(self, crops: list[np.ndarray], seeds: list[int]) -> list[np.ndarray]:
        import torch

        s, res = self.settings, self.settings.resolution
        squares = [cv2.resize(c, (res, res), interpolation=cv2.INTER_AREA if c.shape[0] > res else cv2.INTER_CUBIC) for c in crops]
        controls = {c: [self.annotators[c](img, res) for img in squares] for c in CONTROLS}
        prompts = [s.prompt if s.prompt is not None else self.captioner(img) for img in squares]
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        out = self.pipeline(
            squares, controls, prompt=prompts, num_inference_steps=s.steps, strength=s.strength,
            anonymization_scale=s.anonymization_scale, guidance_scale=s.guidance_scale,
            controlnet_conditioning_scale=s.controls, lineart_stop=s.lineart_stop, generator=generators, output_type="np",
        ).images
        if len(out) != len(crops):
            raise RuntimeError(f"generator returned {len(out)} images for {len(crops)} crops")
        return [cv2.resize((np.clip(img, 0, 1) * 255).round().astype(np.uint8), (c.shape[1], c.shape[0]),
                           interpolation=cv2.INTER_AREA) for img, c in zip(out, crops, strict=True)]

    def seed(self, region: Region) -> int:
        # one seed per track: the same initial noise for the whole life of an identity
        return int(self.settings.seed) + max(region.track_id, 0) * 7919

    # -- the interface ------------------------------------------------------------------------

    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame: Frame | None = None) -> np.ndarray:
        if not regions:
            return image
        if self.scope == "scene":
            seed = self.seed(min(regions, key=lambda r: r.track_id if r.track_id >= 0 else 1 << 30))
            return self.generate([image], [seed])[0]
        h, w = image.shape[:2]
        jobs = []  # (bounds, blend mask (crop-sized), region)
        for region in regions:
            box = np.asarray(region.box, np.float32)
            hard = self.shape.mask(box, w, h)
            if hard is None:
                continue
            size = max(box[2] - box[0], box[3] - box[1])
            ring = max(1, int(round(FEATHER * size)))
            # the crop: the covered shape plus the ring, made square around the box centre
            x1, y1, x2, y2 = enlarge(box, self.shape.margin)
            side = max(x2 - x1, y2 - y1) + 2 * ring + 2
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            bx1, by1 = max(0, int(np.floor(cx - side / 2))), max(0, int(np.floor(cy - side / 2)))
            bx2, by2 = min(w, int(np.ceil(cx + side / 2))), min(h, int(np.ceil(cy + side / 2)))
            (hx1, hy1, hx2, hy2), hmask = hard
            covered = np.zeros((by2 - by1, bx2 - bx1), bool)
            covered[hy1 - by1:hy2 - by1, hx1 - bx1:hx2 - bx1] = hmask[:, :, 0]
            jobs.append(((bx1, by1, bx2, by2), feathered_mask(covered, ring), region))
        if not jobs:
            return image
        crops = [image[y1:y2, x1:x2].copy() for (x1, y1, x2, y2), _, _ in jobs]
        generated = self.generate(crops, [self.seed(r) for _, _, r in jobs])
        for ((x1, y1, x2, y2), mask, _), gen in zip(jobs, generated, strict=True):
            target = image[y1:y2, x1:x2]
            m = mask[:, :, None]
            blended = (m * gen.astype(np.float32) + (1 - m) * target.astype(np.float32)).round().astype(np.uint8)
            np.copyto(target, blended, where=m > 0)  # outside the ring: untouched, bit for bit
        return image


def effective_anonymization_scale(asked: float, has_idf: bool) -> float:
    """Base's a_s: as asked with a trained IDF ControlNet; without one 1.0 (the positive
    controls alone, the paper's a_s = 1), said once per run."""
    if has_idf or asked == 1.0:
        return asked
    log.warning("no trained IDF ControlNet (%s): CAMOUFLaGE-Base runs at a_s = 1 (the positive controls alone) "
                "instead of base.anonymization_scale=%g; `camstream train idf` trains one", IDF, asked)
    return 1.0


def build_base_anonymizer(config) -> BaseAnonymizer:  # noqa: ANN001 - streamer.config.Config
    """Resolve every model first (one error naming all missing ones), then load."""
    s, m, a = config.base, config.models, config.anonymize
    resolver = ModelResolver(models_dir=m.dir, offline=m.offline)
    overrides = dict(s.annotators)
    unknown = set(s.controls) - set(CONTROLS)
    if unknown:
        raise ConfigError(f"base.controls: unknown control(s) {', '.join(sorted(unknown))} (known: {', '.join(CONTROLS)})")
    needed = [*BASE_MODELS, *(f"annotator_{c}" for c in CONTROLS if c not in overrides)]
    if s.prompt is None:
        needed.append("captioner")
    speed = speed_models(config.speed.lcm, config.speed.tiny_vae)
    resolver.resolve_many([*needed, *speed], fetch_as=" ".join([config.anonymize.method, *speed]))
    resolver.warn_if_random()
    import transformers

    from ..device import resolve_device, resolve_dtype
    from .annotators import Captioner, load_annotators
    from .pipeline import CamouflageBasePipeline

    transformers.utils.logging.disable_progress_bar()  # per-checkpoint bars would bury the run's own progress

    device = resolve_device(m.device)
    dtype = resolve_dtype(m.dtype, device)
    pipeline = CamouflageBasePipeline.from_manifest(resolver, device=device, dtype=dtype, scheduler=s.scheduler)
    s = dataclasses.replace(s, anonymization_scale=effective_anonymization_scale(s.anonymization_scale, pipeline.idf_controlnet is not None))
    apply_speed(pipeline, resolver, config.speed.lcm, config.speed.tiny_vae)
    if config.speed.lcm:  # a few consistency steps, no text CFG
        s = dataclasses.replace(s, steps=config.speed.lcm_steps, guidance_scale=LCM_GUIDANCE_SCALE)
    annotators = load_annotators(resolver, device, overrides)
    captioner = Captioner.from_pretrained(resolver.resolve("captioner"), device) if s.prompt is None else None
    return BaseAnonymizer(pipeline, annotators, captioner, s, scope=a.scope, shape=Shape(kind=a.shape, margin=a.margin))
