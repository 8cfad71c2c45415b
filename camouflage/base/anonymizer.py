"""CAMOUFLaGE-Base behind the pipeline's Anonymizer interface (``--method base``).

Scope ``face``/``person``: each region's box, enlarged by ``anonymize.margin`` and made
square, is cropped, resized to ``base.resolution``, regenerated (all regions of a frame in
one batch) and pasted back through a feathered mask. The mask is 1 on the covered shape
(the same shape the classical methods cover) and fades to 0 over a ring outside it;
pixels outside the ring are never touched. Scope ``scene``: the whole frame is
regenerated (resized to a square, then back).

``base.conditioning`` (resolved once: ``auto`` is ``paper`` with a trained IDF ControlNet,
else ``blind``):

* ``blind``: identity-blind (camouflage/blind.py). The crops, the annotators and the
  caption read the frame with every covered shape filled from its context; the face
  starts from the seeded noise and only the pose (body + the detector's 5 landmarks)
  reaches it. a_s does not apply (there is no original to push away from).
* ``paper``: the paper's Base, img2img from the crop at ``base.strength`` with all five
  controls (OpenPose with its face landmarks) and the IDF's negative guidance at a_s.

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

from ..blind import blind_frame, face_keypoints, landmark_pose, resolve_conditioning
from ..memory import MemoryPolicy, offload_models
from ..models.manifest import ModelResolver
from ..models.names import BASE_MODELS, CONTROLS, IDF
from ..speed import LCM_GUIDANCE_SCALE, apply_speed, speed_models

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
                 settings, scope: str = "face", shape: Shape | None = None,  # noqa: ANN001 - BaseConfig
                 conditioning: str = "paper") -> None:
        if scope not in ("face", "person", "scene"):
            raise ConfigError(f"anonymize.scope {scope!r}: use face, person or scene")
        if settings.prompt is None and captioner is None:
            raise ConfigError("CAMOUFLaGE-Base needs a captioner or base.prompt")
        if conditioning not in ("blind", "paper"):
            raise ConfigError(f"base.conditioning {conditioning!r}: use blind or paper (auto is resolved when loading)")
        self.pipeline, self.annotators, self.captioner = pipeline, annotators, captioner
        self.settings, self.scope, self.shape = settings, scope, shape or Shape()
        self.conditioning = conditioning
        self.memory = MemoryPolicy(offload_models(pipeline) if hasattr(pipeline, "device") else None)

    @property
    def blind(self) -> bool:
        return self.conditioning == "blind"

    # -- one batch of square crops -> generated crops -------------------------------------

    def generate(self, crops: list[np.ndarray], seeds: list[int], masks: list[np.ndarray] | None = None,
                 faces: list[list[np.ndarray]] | None = None) -> list[np.ndarray]:
        """Base's faces for a batch of crops. Identity-blind (``masks`` given): ``crops`` come
        from the frame with its faces filled from context, ``masks`` (crop-sized bool) say
        where the face is and ``faces`` hold each crop's face landmarks (crop pixels)."""
        import torch

        s, res = self.settings, self.settings.resolution
        squares = [_square(c, res) for c in crops]
        blind = masks is not None
        if blind:
            scale = [res / c.shape[0] for c in crops]
            masks = [cv2.resize(m.astype(np.float32), (res, res), interpolation=cv2.INTER_AREA) > 0 for m in masks]
            faces = [[np.asarray(f, np.float32) * k for f in fs] for fs, k in zip(faces or [[]] * len(crops), scale, strict=True)]
        controls = {}
        for c in CONTROLS:
            if float(s.controls.get(c, 1.0)) == 0.0:  # a control at scale 0 changes nothing: do not compute it
                controls[c] = [np.zeros((res, res, 3), np.uint8)] * len(squares)
            elif blind and c == "pose":  # never OpenPose's face landmarks: body + the detector's 5 points
                body = getattr(self.annotators[c], "body_with_faces", None)
                controls[c] = [body(img, res, f) if body else landmark_pose(res, f) for img, f in zip(squares, faces, strict=True)]
            else:
                controls[c] = self.annotators[c].batch(squares, res)
        prompts = [s.prompt] * len(squares) if s.prompt is not None else self.captioner.batch(squares)
        generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds]
        out = self.pipeline(
            squares, controls, prompt=prompts, num_inference_steps=s.steps, strength=s.strength,
            anonymization_scale=1.0 if blind else s.anonymization_scale, guidance_scale=s.guidance_scale,
            controlnet_conditioning_scale=s.controls, lineart_stop=s.lineart_stop, generator=generators, output_type="np",
            mask_image=np.stack(masks).astype(np.float32) if blind else None,
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
        # identity-blind: every network reads the frame with the covered shapes filled from context
        source, covered_all = blind_frame(image, [r.box for r in regions], self.shape) if self.blind else (image, None)
        if self.scope == "scene":
            seed = self.seed(min(regions, key=lambda r: r.track_id if r.track_id >= 0 else 1 << 30))
            if not self.blind:
                return self.generate([image], [seed])[0]
            return self.generate([source], [seed], [covered_all], [_landmarks(regions, 0, 0)])[0]
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
        crops = [source[y1:y2, x1:x2].copy() for (x1, y1, x2, y2), _, _ in jobs]
        seeds = [self.seed(r) for _, _, r in jobs]
        order = list(range(len(jobs)))
        if self.blind:
            masks = [covered_all[y1:y2, x1:x2] for (x1, y1, x2, y2), _, _ in jobs]
            faces = [_landmarks(regions, x1, y1) for (x1, y1, _, _), _, _ in jobs]
            generated = self.memory.run(lambda k: self.generate([crops[i] for i in k], [seeds[i] for i in k],
                                                                [masks[i] for i in k], [faces[i] for i in k]), order)
        else:
            generated = self.memory.run(lambda k: self.generate([crops[i] for i in k], [seeds[i] for i in k]), order)
        for ((x1, y1, x2, y2), mask, _), gen in zip(jobs, generated, strict=True):
            target = image[y1:y2, x1:x2]
            m = mask[:, :, None]
            blended = (m * gen.astype(np.float32) + (1 - m) * target.astype(np.float32)).round().astype(np.uint8)
            np.copyto(target, blended, where=m > 0)  # outside the ring: untouched, bit for bit
        return image


def _square(crop: np.ndarray, res: int) -> np.ndarray:
    return cv2.resize(crop, (res, res), interpolation=cv2.INTER_AREA if crop.shape[0] > res else cv2.INTER_CUBIC)


def _landmarks(regions: Sequence[Region], x0: float, y0: float) -> list[np.ndarray]:
    """Every face's 5 points relative to ``(x0, y0)``: the detector's landmarks, else the
    template placed in its box (from the box alone)."""
    return [face_keypoints(r.box, r.landmarks) - np.array([x0, y0], np.float32) for r in regions if r.kind == "face"]


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
    has_idf = pipeline.idf_controlnet is not None
    conditioning = resolve_conditioning(s.conditioning, has_idf)
    if conditioning == "blind":
        log.info("%sCAMOUFLaGE-Base is identity-blind: each face starts from its seeded noise and only the pose "
                 "(body + 5 landmarks) reaches it (base.conditioning: paper for the paper's img2img + IDF)",
                 f"no trained IDF ControlNet ({IDF}): " if not has_idf else "")
    else:
        s = dataclasses.replace(s, anonymization_scale=effective_anonymization_scale(s.anonymization_scale, has_idf))
    apply_speed(pipeline, resolver, config.speed.lcm, config.speed.tiny_vae)
    if config.speed.lcm:  # a few consistency steps, no text CFG
        s = dataclasses.replace(s, steps=config.speed.lcm_steps, guidance_scale=LCM_GUIDANCE_SCALE)
    annotators = load_annotators(resolver, device, overrides)
    captioner = Captioner.from_pretrained(resolver.resolve("captioner"), device) if s.prompt is None else None
    return BaseAnonymizer(pipeline, annotators, captioner, s, scope=a.scope, shape=Shape(kind=a.shape, margin=a.margin),
                          conditioning=conditioning)
