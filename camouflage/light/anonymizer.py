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
has no target: the IP-Adapter gets its own unconditional input (a blank image, as in its
training), never a random vector off the embedding manifold; the negative branch always
uses the original face's embedding.

Adapters: ``camouflage`` (trained: FaRL IP-Adapter + 41-channel T2I-Adapter on FACER's
attribute map) or ``public`` (IP-Adapter plus-face + the openpose ControlNet on this
crop's pose drawing, ``pose``: Base's openpose annotator); ``build_light_anonymizer``
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

from ..speed import apply_speed, speed_models
from ..video.compositor import crop_window, paste
from . import loading
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
        scope: str = "face",
        shape: Shape | None = None,
        context: float = 0.5,
        feather: float = 0.25,
        max_tracks: int = 256,
        pose=None,  # noqa: ANN001 - an Annotator (public adapters: the ControlNet's pose drawing)
    ) -> None:
        if scope not in ("face", "person", "scene"):
            raise ValueError(f"scope {scope!r}: use face, person or scene")
        if pipe.adapters == "public" and pose is None:
            raise ValueError("public Light adapters need a pose annotator")
        if pipe.adapters == "camouflage" and attributes is None:
            raise ValueError("the CAMOUFLaGE-Light adapters need FACER's attribute model")
        self.pipe, self.attributes, self.pose = pipe, attributes, pose
        m = pipe.size_multiple
        self.resolution = max(m, resolution // m * m)
        self.steps, self.strength, self.seed, self.prompt = steps, strength, seed, prompt
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

    def conditioning(self, crop: np.ndarray, amap: np.ndarray | None) -> dict:
        """The spatial control for a crop: the attribute map (T2I) or the pose drawing (ControlNet)."""
        if self.adapters == "public":
            return {"control_image": self.pose(crop, crop.shape[0])}
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

    def _generate(self, crop: np.ndarray, amap: np.ndarray, target: torch.Tensor | None, original: torch.Tensor,
                  seed: int) -> np.ndarray:
        out = self.pipe(
            crop, prompt=self.prompt, identity_embeds=None if target is None else target[None],
            original_embeds=original[None], **self.conditioning(crop, amap),
            strength=self.strength, num_inference_steps=self.steps, anonymization_scale=self.anonymization_scale,
            adapter_conditioning_scale=self.adapter_scale, ip_adapter_scale=self.ip_adapter_scale,
            generator=torch.Generator().manual_seed(seed),
        ).images[0]
        return (out * 255).round().astype(np.uint8)

    # ---------------------------------------------------------------- the interface
    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame=None) -> np.ndarray:  # noqa: ANN001
        if not regions:
            return image
        faces = self._faces(image, regions)
        if self.scope == "scene":
            return self._scene(image, regions, faces)
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
            self._region(image, region, faces, i, covered)
        return image

    def _region(self, image: np.ndarray, region: Region, faces: list[FaceAttributes], index: int,
                covered: np.ndarray) -> None:
        # The crop holds the covered shape (margin, and Shape's pixel minimum for tiny
        # faces) plus a band to feather over.
        window = crop_window(region.box, self.shape, self.resolution, self.context)
        crop = window.crop(image)
        # Every face visible in the crop goes into its map; the z-buffer keeps them apart.
        amap = build_attribute_map(faces, (self.resolution, self.resolution), offset=(window.ox, window.oy),
                                   scale=window.scale)
        face = faces[index]
        original = self._embed(image, face.box)
        target = self._target_identity(region.track_id, original)
        generated = self._generate(crop, amap, target, original, self._track_seed(region.track_id))
        # Raises if the covered shape does not fit the crop: never paste a partial cover.
        hard = paste(image, window, generated, region.box, self.shape, self.feather, colour_match=False)
        if hard is not None:
            covered[window.in_frame(image.shape[1], image.shape[0])] |= hard
        # The generated face is this track's identity from now on.
        self._remember(region.track_id, self._embed(generated, window.to_crop(face.box)))

    def _scene(self, image: np.ndarray, regions: Sequence[Region], faces: list[FaceAttributes]) -> np.ndarray:
        h, w = image.shape[:2]
        m = self.pipe.size_multiple
        scale = self.resolution / max(h, w)
        gw, gh = max(m, round(w * scale / m) * m), max(m, round(h * scale / m) * m)
        sx, sy = gw / w, gh / h
        small = cv2.resize(image, (gw, gh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)
        amap = build_attribute_map(faces, (gh, gw), scale=(sx, sy))
        # One IP-Adapter embedding per image: the scene's identities are the faces' mean.
        original = torch.stack([self._embed(image, f.box) for f in faces]).mean(0)
        first = min((r.track_id for r in regions if r.track_id >= 0), default=-1)
        target = self._target_identity(-1, original)
        generated = self._generate(small, amap, target, original, self._track_seed(first))
        image[:] = cv2.resize(generated, (w, h), interpolation=cv2.INTER_CUBIC if scale < 1 else cv2.INTER_AREA)
        return image


def build_light_anonymizer(config) -> LightAnonymizer:  # noqa: ANN001 - streamer.config.Config
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
    paths = loading.resolve_models(config.models.dir, (*loading.LIGHT_MODELS, *speed_models(speed.lcm, speed.tiny_vae)),
                                   config.models.offline)
    pipe = CamouflageLightPipeline.from_paths(paths, scheduler=light.scheduler, device=device, dtype=dtype)
    apply_speed(pipe, paths, speed.lcm, speed.tiny_vae)
    attributes = FacerAttributeModel.from_pretrained(paths[loading.FACER_ATTRIBUTES]).to(device, dtype)
    return light_anonymizer(config, pipe, attributes)


def build_public_light(config, pose_controlnet, pose) -> LightAnonymizer:  # noqa: ANN001 - Config, ControlNetModel, Annotator
    """Light with the public adapters for the video method: h94's IP-Adapter plus-face (its
    CLIP ViT-H encoder reads the keyframe's fake face) and the openpose ControlNet and
    annotator Base already loaded (shared, not loaded twice)."""
    from camouflage.device import resolve_device, resolve_dtype

    device = resolve_device(config.models.device)
    dtype = resolve_dtype(config.models.dtype, device)
    speed = config.speed
    paths = loading.resolve_models(config.models.dir, (loading.SD15, loading.VAE, loading.IP_ADAPTER_PLUS,
                                                       *speed_models(speed.lcm, speed.tiny_vae)), config.models.offline)
    pipe = CamouflageLightPipeline.from_public_paths(paths, scheduler=config.light.scheduler, device=device, dtype=dtype,
                                                     controlnet=pose_controlnet)
    apply_speed(pipe, paths, speed.lcm, speed.tiny_vae)
    return light_anonymizer(config, pipe, None, pose)


def light_anonymizer(config, pipe: CamouflageLightPipeline, attributes: FacerAttributeModel | None,  # noqa: ANN001
                     pose=None) -> LightAnonymizer:  # noqa: ANN001
    light, ano, speed = config.light, config.anonymize, config.speed
    return LightAnonymizer(
        pipe, attributes, pose=pose, resolution=light.resolution, steps=speed.lcm_steps if speed.lcm else light.steps, strength=light.strength,
        anonymization_scale=light.anonymization_scale, ip_adapter_scale=light.ip_adapter_scale,
        adapter_scale=light.adapter_scale, seed=light.seed, prompt=light.prompt, scope=ano.scope,
        shape=Shape(kind=ano.shape, margin=ano.margin), context=light.context, feather=light.feather,
    )
