"""LightAnonymizer: CAMOUFLaGE-Light behind the streamer's Anonymizer interface.

Scopes (``anonymize.scope``):
  face / person  every region gets a square crop around it (``light.context`` of its size
                 on each side), generated at ``light.resolution`` and pasted back through a
                 feathered mask: fully opaque over the region's shape (``anonymize.shape``
                 and ``margin``, the same area the classical methods cover), fading out
                 beyond it. Pixels outside the feathered area are not touched. In person
                 scope, a face region already inside a generated person is not redone.
  scene          the whole frame is generated (resized to ``light.resolution`` on its
                 longer side) with every face in the map; every pixel changes.

Identity over time: each track gets its own seed (same initial noise for its whole
life) and, after its first generated frame, the embedding of its own generated face as
the IP-Adapter's target identity; so a track keeps one fake face. A track's first frame
has no target: the IP-Adapter gets its own unconditional input (the zero image, as in its
training), never a random vector off the embedding manifold.

Guidance: text CFG with ``light.prompt`` / ``light.negative_prompt`` at
``light.guidance_scale``, the unconditional branch with the zero image (as IP-Adapter is
used); ``light.conditioning`` (``auto``: paper with a trained IDF, else blind):

* ``blind``: every network reads the frame with the covered shapes filled from context
  (camouflage/blind.py); the face starts from the track's seeded noise; the pose drawing
  comes from the detector's 5 landmarks. No push: there is no original face to push from.
* ``paper``: img2img from the crop at ``light.strength``, and the identity push at
  ``light.anonymization_scale`` away from the original face's own embedding.

Adapters: ``camouflage`` (trained: FaRL IP-Adapter + 41-channel T2I-Adapter on FACER's
attribute map) or ``public`` (IP-Adapter plus-face + the openpose ControlNet on the
openpose drawing of the detector's 5 landmarks: no OpenPose per crop); ``build_light_anonymizer``
builds the first (``--method light``), the video method either.
Person regions carry no face box: the head is taken as the top-centre of the box.
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Sequence

import cv2
import numpy as np
import torch

from streamer.anonymizers import Shape
from tracking.tracker import Region

from ..blind import blind_frame, landmark_pose, resolve_conditioning, shape_in_crop
from ..models import names
from ..models.names import IDF
from ..speed import LCM_GUIDANCE_SCALE, apply_speed, speed_models
from ..video.compositor import crop_window, paste
from .attribute_map import build_attribute_map
from .attributes import NUM_ATTRIBUTES, FaceAttributes, FacerAttributeModel, face_crops, face_keypoints
from .pipeline import CamouflageLightPipeline

log = logging.getLogger("camstream")


def head_box(person: np.ndarray) -> np.ndarray:
    """A person box's likely head: top-centre, 40 % of its width, as tall as wide."""
    x1, y1, x2, y2 = (float(v) for v in person)
    w = (x2 - x1) * 0.4
    h = min(w * 1.2, (y2 - y1) * 0.25)
    cx = (x1 + x2) / 2
    return np.array([cx - w / 2, y1, cx + w / 2, y1 + h], np.float32)


class LightAnonymizer:
    """Replaces regions with CAMOUFLaGE-Light generations (see the module docstring)."""

    name = "light"

    def __init__(
        self,
        pipe: CamouflageLightPipeline,
        attributes: FacerAttributeModel | None,
        resolution: int = 768,
        steps: int = 25,
        strength: float = 0.75,
        anonymization_scale: float = 1.0,
        ip_adapter_scale: float = 0.6,
        adapter_scale: float = 1.0,
        seed: int = 0,
        prompt: str = "",
        negative_prompt: str = "",
        guidance_scale: float = 1.0,
        conditioning: str = "paper",
        scope: str = "face",
        shape: Shape | None = None,
        context: float = 0.5,
        feather: float = 0.25,
        max_tracks: int = 256,
    ) -> None:
        if scope not in ("face", "person", "scene"):
            raise ValueError(f"scope {scope!r}: use face, person or scene")
        if pipe.adapters == "camouflage" and attributes is None:
            raise ValueError("the CAMOUFLaGE-Light adapters need FACER's attribute model")
        if conditioning not in ("blind", "paper"):
            raise ValueError(f"light.conditioning {conditioning!r}: use blind or paper (auto is resolved when loading)")
        self.pipe, self.attributes = pipe, attributes
        m = pipe.size_multiple
        self.resolution = max(m, resolution // m * m)
        self.steps, self.strength, self.seed, self.prompt = steps, strength, seed, prompt
        self.negative_prompt, self.guidance_scale, self.conditioning = negative_prompt, guidance_scale, conditioning
        self.anonymization_scale, self.ip_adapter_scale, self.adapter_scale = (
            anonymization_scale, ip_adapter_scale, adapter_scale)
        self.scope, self.shape = scope, shape or Shape()
        self.context = context
        self.feather = feather
        self.identities: OrderedDict[int, torch.Tensor] = OrderedDict()  # track -> target embedding
        self.max_tracks = max_tracks

    # ---------------------------------------------------------------- helpers
    @property
    def adapters(self) -> str:
        return self.pipe.adapters

    @property
    def blind(self) -> bool:
        return self.conditioning == "blind"

    @property
    def push(self) -> bool:
        """The identity push runs (a second identity branch fed the original face): paper only."""
        return not self.blind and self.anonymization_scale != 1.0

    def guidance(self) -> dict:
        """The pipeline's guidance arguments (:mod:`camouflage.guidance`)."""
        return {"prompt": self.prompt, "negative_prompt": self.negative_prompt, "guidance_scale": self.guidance_scale,
                "anonymization_scale": self.anonymization_scale if self.push else 1.0}

    def _faces(self, image: np.ndarray, regions: Sequence[Region]) -> list[FaceAttributes]:
        boxes = [r.box if r.kind == "face" else head_box(r.box) for r in regions]
        landmarks = [r.landmarks if r.kind == "face" else None for r in regions]
        if self.attributes is not None:
            probs = self.attributes.predict_faces(image, boxes, landmarks)
        else:  # public adapters: no attribute map
            probs = np.zeros((len(boxes), NUM_ATTRIBUTES), np.float32)
        return [FaceAttributes(np.asarray(b, np.float32), probs[i], face_keypoints(b, lm))
                for i, (b, lm) in enumerate(zip(boxes, landmarks, strict=True))]

    def _embed(self, image: np.ndarray, box: np.ndarray) -> torch.Tensor:
        crops = face_crops(image, [box], self.pipe.image_encoder.config.image_size)
        return self.pipe.identity_embeddings(crops)[0].float().cpu()

    def control(self, size: int, amap: np.ndarray | None, faces: list[np.ndarray]) -> dict:
        """The spatial control for a crop: the attribute map (T2I) or, public adapters, the
        openpose drawing of the faces' 5 landmarks (crop pixels; no OpenPose run per crop)."""
        if self.adapters == "public":
            return {"control_image": landmark_pose(size, faces)}
        return {"attribute_map": amap}

    def _track_seed(self, track_id: int) -> int:
        return self.seed + 1009 * max(track_id, 0)

    def _target_identity(self, track_id: int, original: torch.Tensor | None = None) -> torch.Tensor | None:
        """The track's fake identity; None before its first frame (the IP-Adapter's blank input)."""
        if track_id >= 0 and track_id in self.identities:
            self.identities.move_to_end(track_id)
            return self.identities[track_id]
        return None

    def set_keyframe(self, track_id: int, anonymized: np.ndarray, box: np.ndarray) -> None:
        """Make the face at ``box`` of an already anonymized frame (e.g. a Base keyframe)
        the target identity of ``track_id`` from now on (DESIGN: keyframes run Base,
        frames in between run Light conditioned on the anonymized keyframe)."""
        self.identities[track_id] = self._embed(anonymized, np.asarray(box, np.float32))
        self.identities.move_to_end(track_id)
        while len(self.identities) > self.max_tracks:
            self.identities.popitem(last=False)

    def _remember(self, track_id: int, embedding: torch.Tensor) -> None:
        if track_id < 0 or track_id in self.identities:
            return
        self.identities[track_id] = embedding
        while len(self.identities) > self.max_tracks:
            self.identities.popitem(last=False)

    def _generate(self, crop: np.ndarray, amap: np.ndarray, target: torch.Tensor | None, original: torch.Tensor | None,
                  seed: int, faces: list[np.ndarray], mask: np.ndarray | None = None) -> np.ndarray:
        out = self.pipe(
            crop, identity_embeds=None if target is None else target[None],
            original_embeds=None if original is None else original[None], **self.control(crop.shape[0], amap, faces),
            strength=self.strength, num_inference_steps=self.steps, **self.guidance(),
            adapter_conditioning_scale=self.adapter_scale, ip_adapter_scale=self.ip_adapter_scale,
            generator=torch.Generator().manual_seed(seed), mask_image=None if mask is None else mask[None].astype(np.float32),
        ).images[0]
        return (out * 255).round().astype(np.uint8)

    # ---------------------------------------------------------------- the interface
    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame=None) -> np.ndarray:  # noqa: ANN001
        if not regions:
            return image
        faces = self._faces(image, regions)  # FACER's coarse attributes: of the real faces
        # identity-blind: every other network reads the frame with the covered shapes filled from context
        boxes = [np.asarray(r.box, np.float32) for r in regions]
        source = blind_frame(image, boxes, self.shape)[0] if self.blind else image
        if self.scope == "scene":
            return self._scene(image, source, regions, faces, boxes)
        h, w = image.shape[:2]
        covered = np.zeros((h, w), bool)
        order = sorted(range(len(regions)), key=lambda i: regions[i].kind != "person")  # persons first
        for i in order:
            region = regions[i]
            bounds = self.shape.bounds(region.box, w, h)
            if bounds is None:
                continue
            x1, y1, x2, y2 = bounds
            if region.kind == "face" and covered[y1:y2, x1:x2].all():
                continue  # inside a person generated just now
            self._region(image, source, region, faces, i, covered, boxes)
        return image

    def _region(self, image: np.ndarray, source: np.ndarray, region: Region, faces: list[FaceAttributes], index: int,
                covered: np.ndarray, boxes: list[np.ndarray]) -> None:
        # The crop holds the covered shape (margin, and Shape's pixel minimum for tiny
        # faces) plus a band to feather over.
        window = crop_window(region.box, self.shape, self.resolution, self.context)
        crop = window.crop(source)
        # Every face visible in the crop goes into its map; the z-buffer keeps them apart.
        amap = build_attribute_map(faces, (self.resolution, self.resolution), offset=(window.ox, window.oy),
                                   scale=window.scale)
        face = faces[index]
        original = self._embed(image, face.box) if self.push else None  # the push's input: the real face
        target = self._target_identity(region.track_id, original)
        points = [(f.keypoints - (window.ox, window.oy)) * window.scale for f in faces]
        mask = None
        if self.blind:  # every region's covered shape in this crop
            mask = np.zeros((self.resolution, self.resolution), bool)
            for box in boxes:
                mask |= shape_in_crop(box, self.shape, window.ox, window.oy, window.scale, self.resolution)
        generated = self._generate(crop, amap, target, original, self._track_seed(region.track_id), points, mask)
        # Raises if the covered shape does not fit the crop: never paste a partial cover.
        hard = paste(image, window, generated, region.box, self.shape, self.feather, colour_match=False)
        if hard is not None:
            covered[window.in_frame(image.shape[1], image.shape[0])] |= hard
        # The generated face is this track's identity from now on.
        self._remember(region.track_id, self._embed(generated, window.to_crop(face.box)))

    def _scene(self, image: np.ndarray, source: np.ndarray, regions: Sequence[Region],
               faces: list[FaceAttributes], boxes: list[np.ndarray]) -> np.ndarray:
        h, w = image.shape[:2]
        m = self.pipe.size_multiple
        scale = self.resolution / max(h, w)
        gw, gh = max(m, round(w * scale / m) * m), max(m, round(h * scale / m) * m)
        sx, sy = gw / w, gh / h
        small = cv2.resize(source, (gw, gh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        amap = build_attribute_map(faces, (gh, gw), scale=(sx, sy))
        # One IP-Adapter embedding per image: the scene's identities are the faces' mean.
        original = torch.stack([self._embed(image, f.box) for f in faces]).mean(0) if self.push else None
        first = min((r.track_id for r in regions if r.track_id >= 0), default=-1)
        target = self._target_identity(-1, original)
        points = [f.keypoints * (sx, sy) for f in faces]
        mask = None
        if self.blind:
            mask = np.zeros((gh, gw), bool)
            for box in boxes:
                x1, y1, x2, y2 = self.shape.grown(box) * (sx, sy, sx, sy)
                mask[max(0, int(y1)):max(0, int(np.ceil(y2))), max(0, int(x1)):max(0, int(np.ceil(x2)))] = True
        generated = self._generate(small, amap, target, original, self._track_seed(first), points, mask)
        image[:] = cv2.resize(generated, (w, h), interpolation=cv2.INTER_CUBIC if scale < 1 else cv2.INTER_AREA)
        return image


def build_light_anonymizer(config, conditioning: str | None = None) -> LightAnonymizer:  # noqa: ANN001 - streamer.config.Config
    """``camstream run --method light``: models from ``models.*``, settings from ``light.*``.
    Light on its own runs the trained CAMOUFLaGE-Light adapters (the public ones need the
    video method's keyframes for an identity)."""
    from camouflage.device import resolve_device, resolve_dtype
    from streamer.errors import ConfigError

    light, speed = config.light, config.speed
    if light.adapters == "public":
        raise ConfigError("--method light runs the trained Light adapters; the public ones (light.adapters: public) "
                          "need keyframes: use --method camouflage")
    device = resolve_device(config.models.device)
    dtype = resolve_dtype(config.models.dtype, device)
    paths = names.resolve_models(config.models.dir, (*names.LIGHT_MODELS, *speed_models(speed.lcm, speed.tiny_vae)),
                                 config.models.offline)
    pipe = CamouflageLightPipeline.from_paths(paths, scheduler=light.scheduler, device=device, dtype=dtype)
    apply_speed(pipe, paths, speed.lcm, speed.tiny_vae)
    attributes = FacerAttributeModel.from_pretrained(paths[names.FACER_ATTRIBUTES]).to(device, dtype)
    if conditioning is None:  # on its own: auto is paper only with the paper's whole set (a trained IDF too)
        from ..models.manifest import ModelResolver

        has_idf = ModelResolver(models_dir=config.models.dir, offline=config.models.offline).available(IDF)
        conditioning = resolve_conditioning(light.conditioning, has_idf)
    return light_anonymizer(config, pipe, attributes, conditioning=conditioning)


def build_public_light(config, pose_controlnet, conditioning: str) -> LightAnonymizer:  # noqa: ANN001 - Config, ControlNetModel
    """Light with the public adapters for the video method: h94's IP-Adapter plus-face (its
    CLIP ViT-H encoder reads the keyframe's fake face) and the openpose ControlNet Base
    already loaded (shared, not loaded twice), fed the drawing of the detector's landmarks."""
    from camouflage.device import resolve_device, resolve_dtype

    device = resolve_device(config.models.device)
    dtype = resolve_dtype(config.models.dtype, device)
    speed = config.speed
    paths = names.resolve_models(config.models.dir, (names.SD15, names.VAE, names.IP_ADAPTER_PLUS,
                                                     *speed_models(speed.lcm, speed.tiny_vae)), config.models.offline)
    pipe = CamouflageLightPipeline.from_public_paths(paths, scheduler=config.light.scheduler, device=device, dtype=dtype,
                                                     controlnet=pose_controlnet)
    apply_speed(pipe, paths, speed.lcm, speed.tiny_vae)
    return light_anonymizer(config, pipe, None, conditioning=conditioning)


def light_anonymizer(config, pipe: CamouflageLightPipeline, attributes: FacerAttributeModel | None,  # noqa: ANN001
                     conditioning: str = "blind") -> LightAnonymizer:
    light, ano, speed = config.light, config.anonymize, config.speed
    return LightAnonymizer(
        pipe, attributes, resolution=light.resolution, steps=speed.lcm_steps if speed.lcm else light.steps, strength=light.strength,
        anonymization_scale=light.anonymization_scale, ip_adapter_scale=light.ip_adapter_scale,
        adapter_scale=light.adapter_scale, seed=light.seed, prompt=light.prompt, negative_prompt=light.negative_prompt,
        # LCM-LoRA samples without CFG (one branch), as Base does under speed.lcm
        guidance_scale=LCM_GUIDANCE_SCALE if speed.lcm else light.guidance_scale, conditioning=conditioning,
        scope=ano.scope, shape=Shape(kind=ano.shape, margin=ano.margin), context=light.context, feather=light.feather,
    )
