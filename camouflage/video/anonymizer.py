"""CAMOUFLaGE for video (``--method camouflage``): one fake person per track, Base keyframes,
Light in between, within a latency budget on live streams.

Per frame, for every region (a tracked face or person):

1. its track's :class:`~tracking.identity.Identity` (IdentityBank): a seed, the same for
   the track's whole life, and the face of its latest keyframe;
2. the :class:`~tracking.identity.KeyframePolicy` decides: at track birth, a scene cut,
   a large pose/expression change or every N frames the crop is rendered by
   CAMOUFLaGE-Base, and the embedding of the fake face it drew becomes the identity's
   IP-Adapter target; on every other frame CAMOUFLaGE-Light renders the crop from the
   identity's seeded noise, conditioned on that keyframe face (IP-Adapter) and on this
   frame's pose (the trained T2I-Adapter on the attribute/keypoint map, or with the public
   adapters the openpose ControlNet on the drawing of the detector's 5 landmarks), so the
   fake person follows the real one's pose and expression but keeps one face. An identity
   never gets a random target: before its first keyframe face exists, a file frame
   (quality) renders that keyframe first; a live frame (realtime) gets the identity's
   latest fake face or the fallback while the keyframe renders in the background.
   A region the tracker has not confirmed gets a short-lived identity (a tracklet: matched
   to the previous frames' untracked regions by overlap, forgotten after
   ``tracklet_frames`` unseen), so it too runs Base once and Light after; with
   ``tracklet_frames: 0`` it gets the fallback. Never Base on every frame;
3. all crops of a kind are generated in one batch (``max_batch`` at a time) and pasted
   back by :mod:`camouflage.video.compositor` (feathered, colour-matched; nothing outside the
   feathered mask changes).

Identity-blind (``base.conditioning: blind``, the default without a trained IDF,
camouflage/blind.py): everything the generators read comes from the frame with every
covered shape filled from its context (crops, annotators, caption, colour match); the
faces start from the identity's noise; Light gets the keyframe's fake face as its target
and no push from the real one. ``paper``: Base img2img + IDF, Light img2img + the push.

Memory (camouflage/memory.py): out of GPU memory, a batch is retried in halves after
``empty_cache``, then with the models offloaded, before the fallback covers it. Realtime
workers render on their own CUDA streams (:func:`camouflage.device.worker_stream`).

Fail-closed: a region whose generation fails (error, out of memory) is covered by the
fallback (solid by default) for that frame and counted in the report; the original
never passes. ``mode: quality`` (files) waits for every frame; ``realtime`` (live
streams under ``auto``) renders in a worker thread and never waits longer than
``latency`` seconds: a late region gets its identity's latest generated face (at most
``reuse_for`` frames old), fitted to this frame's box, else the fallback.

Measures in the run report (``anonymizer``): keyframes by reason, regions rendered by
Light, covered by the fallback (failed / late); UNet evaluations per face per frame
against per-frame Base (always); with ``measure`` flicker as the warping error (Lai et al. 2018: flow on the
ORIGINAL frames, output t+1 warped onto t, mean squared difference over non-occluded
covered pixels of each track); identity drift as the distance of consecutive fake faces
of a track in dlib's face-recognition embedding, next to the real person's own drift.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

import cv2
import numpy as np

from streamer.anonymizers import Anonymizer, Shape
from streamer.errors import ConfigError
from streamer.frame import Frame
from tracking.identity import Identity, IdentityBank, KeyframePolicy, normalised_landmarks
from tracking.tracker import Region

from ..blind import blind_frame, landmark_pose, shape_in_crop
from ..memory import MemoryPolicy, offload_models
from .compositor import CropWindow, crop_window, paste

if TYPE_CHECKING:
    from ..base.anonymizer import BaseAnonymizer
    from ..light.anonymizer import LightAnonymizer

log = logging.getLogger("camstream")

MODES = ("auto", "quality", "realtime")
TRACKLET_IDS = 1 << 40  # tracklets' keys in the IdentityBank: above any tracker's ids
TRACKLET_IOU = 0.2  # an untracked region continues the tracklet it overlaps this much
T = TypeVar("T")


def _keep_latest(identity: Identity, crop: np.ndarray, index: int) -> None:
    """The identity's newest generated crop (what a late frame reuses); renders landing out
    of order (a background keyframe after a later Light frame) never replace a newer one."""
    if identity.latest_index is None or index >= identity.latest_index:
        identity.latest_crop, identity.latest_index = crop, index


class _Stopped(Exception):
    """Raised inside a worker's render once the anonymizer is closing."""


@dataclass
class _Job:
    """One region of one frame to render."""

    region: Region
    window: CropWindow
    identity: Identity | None  # None: not (yet) a confirmed track
    seed: int
    keyframe: str | None  # the policy's reason, or None: Light
    landmarks: np.ndarray | None  # normalised to the box
    primary: bool = True  # False: a track's second region this frame (its identity, read only)


@dataclass
class _Rendered:
    crops: list[np.ndarray | None]  # per job; None: failed (covered by the fallback)
    errors: list[str] = field(default_factory=list)
    waiting: set[int] = field(default_factory=set)  # jobs with no identity target yet: not rendered

    def attempt(self, stage: str, clock: _Clock, work: Callable[..., T], *args: Any) -> T | None:
        """``work(*args)``, its time counted as ``stage``; None when it failed, the failure kept
        in ``errors`` (the fallback covers those crops). A closing anonymizer's stop passes."""
        try:
            return work(*args)
        except _Stopped:
            raise
        except Exception as exc:  # noqa: BLE001 - covered by the fallback
            self.errors.append(f"{stage}: {exc}")
            return None
        finally:
            clock(stage)


@dataclass
class VideoStats:
    """What ``camstream run --report`` shows under ``anonymizer``."""

    frames: int = 0
    regions: int = 0
    keyframes: Counter = field(default_factory=Counter)  # reason -> regions rendered by Base
    light_regions: int = 0  # rendered by Light (realtime: also renders that came too late to be used)
    generated_regions: int = 0  # pasted from this frame's own render
    failed_regions: int = 0  # generator error: fallback
    late_regions: int = 0  # latency budget blown: fallback
    waiting_regions: int = 0  # of late_regions: no keyframe face yet (or untracked) to render from
    reused_regions: int = 0  # latency budget blown: the identity's latest fake face, re-fitted to the box
    tracklets: int = 0  # short-lived identities given to untracked regions
    memory_retries: int = 0  # out of GPU memory: batches split
    offloaded: bool = False  # out of GPU memory with one crop: models offloaded to the CPU between uses
    unet_evals: Counter = field(default_factory=Counter)  # "base" / "light" -> UNet sample evaluations
    controlnet_evals: Counter = field(default_factory=Counter)  # "base" / "light" -> ControlNet sample evaluations
    flicker_sum: float = 0.0
    flicker_pixels: int = 0
    drift: list[float] = field(default_factory=list)
    drift_original: list[float] = field(default_factory=list)
    seconds: Counter = field(default_factory=Counter)  # stage -> wall seconds (attributes, base, light, paste, measure)

    def to_dict(self, identities: int) -> dict[str, Any]:
        keyframes = sum(self.keyframes.values())
        rendered = keyframes + self.light_regions
        evals = sum(self.unet_evals.values())
        per_face = evals / rendered if rendered else None
        base_per_face = self.unet_evals["base"] / keyframes if keyframes else None
        return {
            "frames_with_regions": self.frames,
            "regions": self.regions,
            "identities": identities,
            "tracklets": self.tracklets,
            "keyframes": keyframes,
            "keyframes_by_reason": dict(self.keyframes),
            "light_regions": self.light_regions,
            "generated_regions": self.generated_regions,
            "fallback_failed_regions": self.failed_regions,
            "fallback_late_regions": self.late_regions,
            "fallback_waiting_regions": self.waiting_regions,
            "reused_late_regions": self.reused_regions,
            "unet_evals": dict(self.unet_evals),
            "unet_evals_per_face_frame": round(per_face, 2) if per_face is not None else None,
            "per_frame_base_unet_evals_per_face_frame": round(base_per_face, 2) if base_per_face is not None else None,
            "unet_cost_vs_per_frame_base": round(per_face / base_per_face, 3) if per_face and base_per_face else None,
            "controlnet_evals": dict(self.controlnet_evals),
            "controlnet_evals_per_face_frame": round(sum(self.controlnet_evals.values()) / rendered, 2) if rendered else None,
            "per_frame_base_controlnet_evals_per_face_frame":
                round(self.controlnet_evals["base"] / keyframes, 2) if keyframes else None,
            "flicker_warping_error": round(self.flicker_sum / self.flicker_pixels, 6) if self.flicker_pixels else None,
            "flicker_pixels": self.flicker_pixels,
            "identity_drift": round(float(np.mean(self.drift)), 4) if self.drift else None,
            "identity_drift_original": round(float(np.mean(self.drift_original)), 4) if self.drift_original else None,
            "seconds_by_stage": {k: round(v, 3) for k, v in self.seconds.items()},
            "memory_retries": self.memory_retries,
            "models_offloaded": self.offloaded,
        }


class _Measures:
    """Flicker and identity drift of the anonymized regions, per track, frame to frame."""

    def __init__(self, drift: bool = True) -> None:
        from streamer.evaluation.utility import OriginalFlow

        self.flow = OriginalFlow()
        self.embedder = None
        if drift:
            try:
                from streamer.evaluation.faces import FaceEmbedder

                self.embedder = FaceEmbedder()
            except Exception as exc:  # noqa: BLE001 - a measure, not the product: say so and go on
                log.warning("identity drift not measured: %s", exc)
        self.previous: tuple[np.ndarray, np.ndarray, dict[int, np.ndarray]] | None = None
        self.embeddings: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # track -> (fake, real) of the previous frame

    def add(self, stats: VideoStats, original: np.ndarray, output: np.ndarray, covered: dict[int, np.ndarray],
            faces: dict[int, np.ndarray]) -> None:
        """``covered``: track -> full-frame bool mask of its pasted cover; ``faces``: track -> face box."""
        from streamer.evaluation.utility import warp_error_map

        if self.previous is not None:
            prev_original, prev_output, prev_covered = self.previous
            h, w = original.shape[:2]
            for track, mask in prev_covered.items():
                if track not in covered:
                    continue
                ys, xs = np.nonzero(mask | covered[track])
                x1, y1 = max(0, xs.min() - 8), max(0, ys.min() - 8)
                x2, y2 = min(w, xs.max() + 9), min(h, ys.max() + 9)
                if x2 - x1 < 16 or y2 - y1 < 16:
                    continue
                map_x, map_y, valid = self.flow(prev_original[y1:y2, x1:x2], original[y1:y2, x1:x2])
                error = warp_error_map(prev_output[y1:y2, x1:x2], output[y1:y2, x1:x2], map_x, map_y)
                use = valid & mask[y1:y2, x1:x2]
                stats.flicker_sum += float(error[use].sum())
                stats.flicker_pixels += int(use.sum())
        self.previous = (original, output, covered)
        if self.embedder is None:
            return
        tracks = [t for t, b in faces.items() if min(b[2] - b[0], b[3] - b[1]) >= 24]
        now: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        if tracks:
            shapes = self.embedder.landmarks(original, np.array([faces[t] for t in tracks]))
            fake = self.embedder.embed(output, shapes)  # at the original's landmarks: where the face was
            real = self.embedder.embed(original, shapes)
            for i, t in enumerate(tracks):
                now[t] = (fake[i], real[i])
                if t in self.embeddings:
                    stats.drift.append(float(np.linalg.norm(fake[i] - self.embeddings[t][0])))
                    stats.drift_original.append(float(np.linalg.norm(real[i] - self.embeddings[t][1])))
        self.embeddings = now


class CamouflageVideoAnonymizer:
    """``anonymize(image, regions, frame)`` for video; see the module docstring."""

    name = "camouflage"

    def __init__(
        self,
        base: BaseAnonymizer,
        light: LightAnonymizer,
        fallback: Anonymizer,
        policy: KeyframePolicy | None = None,
        *,
        shape: Shape | None = None,
        seed: int = 0,
        mode: str = "auto",
        latency: float = 0.5,
        reuse_for: int = 12,
        context: float = 0.5,
        feather: float = 0.25,
        colour_match: bool = True,
        max_batch: int = 8,
        scene_cut: float = 0.25,
        fresh_noise: bool = False,
        measure: bool = False,
        measure_identity: bool = False,
        tracklet_frames: int = 12,
        memory: MemoryPolicy | None = None,
    ) -> None:
        if mode not in MODES:
            raise ConfigError(f"camouflage.mode {mode!r}: use {', '.join(MODES)}")
        if latency <= 0:
            raise ConfigError("camouflage.latency must be > 0 seconds")
        self.base, self.light, self.fallback = base, light, fallback
        self.policy = policy or KeyframePolicy()
        self.bank = IdentityBank(seed=seed)
        self.shape = shape or Shape()
        self.mode, self.latency, self.reuse_for = mode, latency, max(0, reuse_for)
        self.context, self.feather, self.colour_match = context, feather, colour_match
        self.max_batch, self.scene_cut, self.fresh_noise = max(1, max_batch), scene_cut, fresh_noise
        self.resolution = light.resolution
        self.blind = base.blind
        if light.blind != self.blind:
            raise ConfigError("base.conditioning and light.conditioning must agree in the video method (both blind or both paper)")
        self.tracklet_frames = tracklet_frames
        self._tracklets: dict[int, tuple[np.ndarray, int]] = {}  # key -> (box, last frame)
        self.memory = memory or MemoryPolicy()
        self.live = False  # set by the runner for live sources (mode auto -> realtime)
        self.stats = VideoStats()
        self._measures = _Measures(drift=measure_identity) if measure or measure_identity else None
        self._thumb: np.ndarray | None = None
        self._frames = 0
        self._lock = threading.Lock()
        self._worker: ThreadPoolExecutor | None = None  # realtime: this frame's renders
        self._pending: Future | None = None
        self._key_worker: ThreadPoolExecutor | None = None  # realtime: Base keyframes, in the background
        self._keying: Future | None = None
        self._stop = threading.Event()  # close(): worker renders stop at their next U-Net evaluation
        self._hooks = [base.pipeline.unet.register_forward_pre_hook(self._count("base"), with_kwargs=True),
                       light.pipe.unet.register_forward_pre_hook(self._count("light"), with_kwargs=True)]
        # ControlNet samples too (Base's five and its IDF; public Light's openpose net, shared with Base):
        # by the phase of the thread that runs them
        self._phase = threading.local()
        nets = {id(n): n for n in [*base.pipeline.controlnet.nets, base.pipeline.idf_controlnet,
                                   getattr(light.pipe, "controlnet", None)] if n is not None}
        self._hooks += [n.register_forward_pre_hook(self._count_controlnet, with_kwargs=True) for n in nets.values()]

    @property
    def realtime(self) -> bool:
        return self.mode == "realtime" or (self.mode == "auto" and self.live)

    def _count(self, phase: str):  # noqa: ANN202
        def hook(_module, args, kwargs):  # noqa: ANN001, ANN202
            if self._stop.is_set():
                raise _Stopped("render stopped: the run is closing")
            sample = args[0] if args else kwargs["sample"]
            self.stats.unet_evals[phase] += int(sample.shape[0])

        return hook

    def _count_controlnet(self, _module, args, kwargs) -> None:  # noqa: ANN001
        sample = args[0] if args else kwargs["sample"]
        self.stats.controlnet_evals[getattr(self._phase, "name", "base")] += int(sample.shape[0])

    def report(self) -> dict[str, Any]:
        """The run report's ``anonymizer`` section."""
        from ..guidance import unet_branches

        self.stats.memory_retries, self.stats.offloaded = self.memory.retries, self.memory.offloaded
        b = self.base.settings
        return {"mode": "realtime" if self.realtime else "quality", "light_adapters": self.light.adapters,
                "conditioning": "blind" if self.blind else "paper",
                # U-Net samples per image per denoising step: cond + uncond (CFG) + the identity branch
                "unet_branches": {"base": unet_branches(b.guidance_scale, not self.blind and b.anonymization_scale != 1.0),
                                  "light": unet_branches(self.light.guidance_scale, self.light.push)},
                **self.stats.to_dict(self.bank.created)}

    def stop(self) -> None:
        """Any running render stops at its next U-Net evaluation (its regions get the
        fallback). Safe in a signal handler: it only sets a flag."""
        self._stop.set()

    def close(self) -> None:
        """Stops the realtime workers: queued renders are cancelled and a running one stops
        at its next U-Net evaluation, so the end of a run (Ctrl-C, a stream's end) never
        waits for a whole render (minutes on a CPU)."""
        self.stop()
        for worker in (self._worker, self._key_worker):
            if worker is not None:
                worker.shutdown(wait=True, cancel_futures=True)
        self._worker = self._key_worker = None
        # The U-Nets outlive this anonymizer when a worker keeps its models for the next
        # file: a stopped run's hooks left on them would stop every later render.
        for hook in self._hooks:
            hook.remove()
        self._hooks = []

    # -- planning (cheap, in the caller's thread) ----------------------------------------

    def _is_scene_cut(self, image: np.ndarray) -> bool:
        thumb = cv2.resize(image, (32, 18), interpolation=cv2.INTER_AREA).astype(np.int16)
        previous, self._thumb = self._thumb, thumb
        return previous is not None and float(np.abs(thumb - previous).mean()) / 255.0 > self.scene_cut

    def _tracklet(self, box: np.ndarray, index: int, taken: set[int]) -> Identity | None:
        """The short-lived identity of an untracked region: the tracklet whose last box it
        overlaps most (IoU >= TRACKLET_IOU, unseen for at most ``tracklet_frames``), else a
        new one. None with ``tracklet_frames`` <= 0 (the region gets the fallback)."""
        if self.tracklet_frames <= 0:
            return None
        best, best_iou = None, TRACKLET_IOU
        for key, (last_box, _) in self._tracklets.items():
            overlap = _iou(last_box, box)
            if key not in taken and overlap >= best_iou:
                best, best_iou = key, overlap
        if best is None:
            best = TRACKLET_IDS + self.stats.tracklets
            self.stats.tracklets += 1
        self._tracklets[best] = (box, index)
        taken.add(best)
        with self._lock:
            return self.bank.get(best, index)

    def _forget_tracklets(self, index: int) -> None:
        stale = [k for k, (_, last) in self._tracklets.items() if index - last > self.tracklet_frames]
        for key in stale:
            del self._tracklets[key]
            with self._lock:
                self.bank.identities.pop(key, None)

    def plan(self, image: np.ndarray, regions: Sequence[Region], index: int) -> list[_Job]:
        scene_cut = self._is_scene_cut(image)
        if scene_cut:  # nothing before a cut says who is where after it
            self._forget_tracklets(index + self.tracklet_frames + 1)
        self._forget_tracklets(index)
        h, w = image.shape[:2]
        jobs: list[_Job] = []
        seen: dict[int, Identity] = {}
        taken: set[int] = set()
        for region in regions:
            if self.shape.bounds(region.box, w, h) is None:
                continue  # entirely outside the frame
            box = np.asarray(region.box, np.float32)
            landmarks = normalised_landmarks(region.landmarks, box)
            primary = True
            if region.track_id >= 0 and region.track_id in seen:  # a track's second region: its identity, read only
                identity, primary = seen[region.track_id], False
            elif region.track_id >= 0:
                with self._lock:
                    identity = seen[region.track_id] = self.bank.get(region.track_id, index)
            else:
                identity = self._tracklet(box, index, taken)
            if identity is None:
                reason = None  # no identity (tracklets off): never per-frame Base; the fallback covers it
                seed = 0
            elif not primary:
                reason, seed = None, identity.seed
            else:
                reason = self.policy.reason(identity, index, scene_cut, landmarks)
                if reason is None and identity.embedding is None:  # no keyframe face yet (its birth's failed)
                    reason = "first"
                seed = identity.seed
            if self.fresh_noise:  # the flicker baseline: new noise every frame
                seed = int(np.random.SeedSequence([seed, index]).generate_state(1)[0]) & 0x7FFFFFFF
            jobs.append(_Job(region, crop_window(box, self.shape, self.resolution, self.context), identity, seed,
                             reason, landmarks, primary))
        return jobs

    # -- rendering (expensive; a worker thread in realtime mode) -------------------------

    def _masks_and_points(self, jobs: list[_Job], chunk: list[int], faces: list,
                          boxes: list[np.ndarray]) -> tuple[list | None, list]:
        """Per job of ``chunk``: the covered shapes of every region of the frame (``boxes``) in
        its crop (identity-blind: where faces are generated; None otherwise) and every face's
        5 points in crop pixels."""
        masks = [] if self.blind else None
        points = []
        for i in chunk:
            w = jobs[i].window
            points.append([(f.keypoints - (w.ox, w.oy)) * w.scale for f in faces])
            if masks is not None:
                mask = np.zeros((w.resolution, w.resolution), bool)
                for box in boxes:
                    mask |= shape_in_crop(box, self.shape, w.ox, w.oy, w.scale, w.resolution)
                masks.append(mask)
        return masks, points

    def render(self, source: np.ndarray, jobs: list[_Job], index: int, faces: list,
               boxes: list[np.ndarray] | None = None) -> _Rendered:
        """The crops of ``jobs``, from ``source``: the frame itself (paper), or with every
        covered shape filled from its context (identity-blind). ``faces``: each job's
        FaceAttributes (box, 5 points, FACER's attributes of the real face); ``boxes``: every
        region of the frame (default: the jobs')."""
        boxes = [j.region.box for j in jobs] if boxes is None else boxes
        clock = _Clock(self.stats.seconds)
        out = _Rendered([None] * len(jobs))
        crops = [j.window.crop(source) for j in jobs]
        clock("attributes")
        keyed = [i for i, j in enumerate(jobs) if j.keyframe]
        for chunk in _chunks(keyed, self.max_batch):
            work = partial(self._keyframes, crops, faces, jobs, boxes)
            done = out.attempt("base", clock, self.memory.run, work, chunk)
            if done is None:
                continue
            for i, (g, e) in zip(chunk, done, strict=True):
                out.crops[i] = g
                ident = jobs[i].identity
                if ident is not None:
                    with self._lock:
                        ident.keyframe_index, ident.keyframe_crop, ident.embedding = index, g, e
                        ident.keyframe_landmarks = jobs[i].landmarks
                        ident.keyframes += 1
                        _keep_latest(ident, g, index)
                self.stats.keyframes[jobs[i].keyframe] += 1
        rest = []
        for i, job in enumerate(jobs):
            if job.keyframe:
                continue
            with self._lock:
                target = job.identity.embedding if job.identity is not None else None
            if target is None:  # never a random identity: wait for the keyframe face (reuse/fallback meanwhile)
                out.waiting.add(i)
            else:
                rest.append((i, target))
        for chunk_items in _chunks(rest, self.max_batch):
            work = partial(self._light_faces, source, crops, faces, jobs, boxes)
            images = out.attempt("light", clock, self.memory.run, work, chunk_items)
            if images is None:
                continue
            for (i, _), img in zip(chunk_items, images, strict=True):
                out.crops[i] = (np.clip(img, 0, 1) * 255).round().astype(np.uint8)
                self.stats.light_regions += 1
                ident = jobs[i].identity
                if ident is not None and jobs[i].primary:
                    with self._lock:
                        _keep_latest(ident, out.crops[i], index)
        return out

    def _keyframes(self, crops: list[np.ndarray], faces: list, jobs: list[_Job], boxes: list[np.ndarray],
                   chunk: list[int]) -> list[tuple]:
        """Base's faces for the jobs ``chunk``, each with what Light's IP-Adapter takes for it."""
        self._phase.name = "base"
        masks, points = self._masks_and_points(jobs, chunk, faces, boxes)
        seeds = [jobs[i].seed for i in chunk]
        if self.blind:
            generated = self.base.generate([crops[i] for i in chunk], seeds, masks, points)
        else:
            generated = self.base.generate([crops[i] for i in chunk], seeds)
        embeds = self._embed([(g, jobs[i].window.to_crop(faces[i].box)) for g, i in zip(generated, chunk, strict=True)])
        return list(zip(generated, embeds, strict=True))

    def _light_faces(self, source: np.ndarray, crops: list[np.ndarray], faces: list, jobs: list[_Job],
                     boxes: list[np.ndarray], chunk_items: list[tuple[int, Any]]) -> list[np.ndarray]:
        """Light's faces for the jobs of ``chunk_items`` ((job, target embedding) pairs); each
        job's identity keeps the control and landmarks it was generated with."""
        import torch

        from ..light.attribute_map import build_attribute_map

        self._phase.name = "light"
        light = self.light
        public = light.adapters == "public"
        chunk = [i for i, _ in chunk_items]
        masks, points = self._masks_and_points(jobs, chunk, faces, boxes)
        # the push's negative branch: the original face (paper only; never computed when blind)
        originals = torch.stack(self._embed([(source, faces[i].box) for i in chunk])) if light.push else None
        controls = []
        for i, p in zip(chunk, points, strict=True):
            ident, w = jobs[i].identity, jobs[i].window
            if public:  # the openpose drawing of the detector's landmarks: no OpenPose per crop
                controls.append(landmark_pose(w.resolution, p))
            else:  # every face visible in the crop is in its map; the z-buffer keeps them apart
                controls.append(build_attribute_map(faces, (w.resolution, w.resolution), offset=(w.ox, w.oy),
                                                    scale=w.scale))
            if jobs[i].primary:
                ident.attribute_map = None if public else controls[-1]
                ident.landmarks = jobs[i].landmarks
        condition = {"control_image" if public else "attribute_map": np.stack(controls)}
        return list(light.pipe(
            np.stack([crops[i] for i in chunk]), identity_embeds=torch.stack([t for _, t in chunk_items]),
            original_embeds=originals, strength=light.strength, num_inference_steps=light.steps, **light.guidance(),
            adapter_conditioning_scale=light.adapter_scale, ip_adapter_scale=light.ip_adapter_scale,
            generator=[torch.Generator().manual_seed(jobs[i].seed) for i in chunk],
            mask_image=None if masks is None else np.stack(masks).astype(np.float32), **condition,
        ).images)

    def _embed(self, items: list[tuple[np.ndarray, np.ndarray]]) -> list:
        """What Light's IP-Adapter takes for the faces at ``(image, box)`` (FaRL's embedding, or
        the ViT-H hidden states of IP-Adapter plus), one encoder call."""
        import torch

        from ..light.attributes import face_crops

        size = self.light.pipe.image_encoder.config.image_size
        crops = torch.cat([face_crops(img, [box], size) for img, box in items])
        return list(self.light.pipe.identity_embeddings(crops).float().cpu())

    # -- the interface ---------------------------------------------------------------------

    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame: Frame | None = None) -> np.ndarray:
        index = frame.index if frame is not None else self._frames
        self._frames += 1
        self.stats.frames += 1
        # identity-blind: what the generators (and the keyframe policy's scene cut) read has
        # every covered shape filled from its context; FACER's coarse attributes (trained
        # adapters) are the one thing read from the real faces
        source = blind_frame(image, [r.box for r in regions], self.shape)[0] if self.blind and regions else image
        jobs = self.plan(source, regions, index)
        self.stats.regions += len(jobs)
        if not jobs:
            return image
        clock = _Clock(self.stats.seconds)
        faces = self.light._faces(image, [j.region for j in jobs])
        clock("attributes")
        rendered = self._rendered(source, jobs, index, faces)
        clock = _Clock(self.stats.seconds)
        original = image.copy() if self._measures is not None else None
        failed: list[Region] = []
        covered: dict[int, np.ndarray] = {}
        late = rendered is None  # then each region gets its identity's latest face, else the fallback
        waiting = set() if late else rendered.waiting
        crops = [self._reusable(job, index) if late or k in waiting else rendered.crops[k] for k, job in enumerate(jobs)]
        errors = [] if late else rendered.errors
        waited = 0
        reference = source if self.blind else None
        for k, (job, crop) in enumerate(zip(jobs, crops, strict=True)):
            hard = None
            if crop is not None:
                try:
                    hard = paste(image, job.window, crop, job.region.box, self.shape, self.feather, self.colour_match,
                                 reference)
                except RuntimeError as exc:
                    errors.append(str(exc))
            if hard is None:
                failed.append(job.region)
                waited += k in waiting
            elif k in waiting:
                self.stats.reused_regions += 1
            elif job.identity is not None and job.primary and original is not None:
                full = np.zeros(image.shape[:2], bool)
                full[job.window.in_frame(image.shape[1], image.shape[0])] = hard
                covered[job.identity.track_id] = full
        pasted = len(jobs) - len(failed)
        if late:
            self.stats.late_regions += len(failed)
            self.stats.reused_regions += pasted
        else:
            reused = sum(1 for k in waiting if crops[k] is not None)
            self.stats.waiting_regions += waited  # late for their keyframe: counted as late too
            self.stats.late_regions += waited
            self.stats.failed_regions += len(failed) - waited
            self.stats.generated_regions += pasted - reused
        if errors:  # a render's or a paste's (a reused face's too)
            log.warning("frame %d: %s; %d region(s) covered with %s", index, "; ".join(errors)[:300],
                        len(failed), self.fallback.name)
        if failed:
            image = self.fallback.anonymize(image, failed, frame)
        clock("paste")
        if self._measures is not None and original is not None:
            faces = {j.identity.track_id: np.asarray(j.region.box, np.float32) for j in jobs
                     if j.identity is not None and j.region.kind == "face" and j.identity.track_id in covered}
            self._measures.add(self.stats, original, image, covered, faces)
            clock("measure")
        return image

    def _reusable(self, job: _Job, index: int) -> np.ndarray | None:
        """A late region's stand-in: its identity's latest generated crop, if recent enough.
        It is pasted into this frame's window (scaled and moved with the box): a fake face
        a few frames stale in expression, never the original."""
        ident = job.identity
        if ident is None or self.reuse_for <= 0:
            return None
        with self._lock:
            crop, at = ident.latest_crop, ident.latest_index
        if crop is None or at is None or not 0 <= index - at <= self.reuse_for:
            return None
        return crop

    def _rendered(self, source: np.ndarray, jobs: list[_Job], index: int, faces: list) -> _Rendered | None:
        """Quality: render now. Realtime: in the worker, waiting at most ``latency`` seconds;
        None when it is late (or still busy with an earlier frame). Realtime keyframes run
        Base in a second worker, in the background: the frame itself gets Light with the
        identity's last keyframe face (before the first one lands: its latest face, else
        the fallback). Each worker renders on its own CUDA stream (Light's of high priority)."""
        if not self.realtime:
            return self.render(source, jobs, index, faces)
        boxes = [j.region.box for j in jobs]
        if any(j.keyframe for j in jobs):
            keyed = [k for k, j in enumerate(jobs) if j.keyframe and j.identity is not None]
            self._start_keyframes(source, [jobs[k] for k in keyed], index, [faces[k] for k in keyed], boxes)
            jobs = [dataclasses.replace(j, keyframe=None) if j.keyframe else j for j in jobs]
        if self._worker is None:
            self._worker = ThreadPoolExecutor(1, thread_name_prefix="camstream-generate")
        if self._pending is not None and not self._pending.done():
            return None  # still on an earlier frame: this one is covered, not queued behind it
        self._pending = self._worker.submit(self._on_stream, True, source.copy(), jobs, index, faces, boxes)
        try:
            return self._pending.result(timeout=self.latency)
        except FutureTimeout:
            self._pending.add_done_callback(partial(_log_background_errors, index, "late"))
            return None

    def _start_keyframes(self, source: np.ndarray, jobs: list[_Job], index: int, faces: list,
                         boxes: list[np.ndarray]) -> None:
        """Base for ``jobs`` in the keyframe worker, one batch at a time: identities that miss
        this one ask again on their next frame (their keyframe is still due)."""
        if not jobs or (self._keying is not None and not self._keying.done()):
            return
        if self._key_worker is None:
            self._key_worker = ThreadPoolExecutor(1, thread_name_prefix="camstream-keyframe")
        self._keying = self._key_worker.submit(self._on_stream, False, source.copy(), jobs, index, faces, boxes)
        self._keying.add_done_callback(partial(_log_background_errors, index, "keyframe"))

    def _on_stream(self, high_priority: bool, *args: Any) -> _Rendered:
        """``render(*args)`` on this worker's own CUDA stream (:func:`camouflage.device.worker_stream`)."""
        from ..device import worker_stream

        with worker_stream(self.base.pipeline.device, high_priority):
            return self.render(*args)


def _log_background_errors(index: int, what: str, future: Future) -> None:
    """A render nobody waits for (late, or a background keyframe) still says why it failed."""
    if future.cancelled():
        return
    exc = future.exception()
    if isinstance(exc, _Stopped):
        return
    errors = [f"{type(exc).__name__}: {exc}"] if exc is not None else future.result().errors
    if errors:
        log.warning("frame %d (%s): %s", index, what, "; ".join(errors)[:300])


class _Clock:
    """Adds the time since the previous call to ``totals[stage]``."""

    def __init__(self, totals: Counter) -> None:
        self.totals, self.last = totals, time.perf_counter()

    def __call__(self, stage: str) -> None:
        now = time.perf_counter()
        self.totals[stage] += now - self.last
        self.last = now


def _chunks(items: list[int], size: int) -> list[list[int]]:
    return [items[k:k + size] for k in range(0, len(items), size)]


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - w * h
    return w * h / union if union > 0 else 0.0


ADAPTERS = ("auto", "camouflage", "public")


def choose_adapters(asked: str, resolver) -> str:  # noqa: ANN001 - ModelResolver
    """``light.adapters``: ``auto`` takes the trained CAMOUFLaGE-Light adapters when every
    one of them is here, else the public ones (IP-Adapter plus-face + openpose ControlNet)."""
    from ..models import names

    if asked not in ADAPTERS:
        raise ConfigError(f"light.adapters {asked!r}: use {', '.join(ADAPTERS)}")
    if asked != "auto":
        return asked
    return "camouflage" if all(resolver.available(n) for n in names.CAMOUFLAGE_ADAPTERS) else "public"


def build_camouflage_anonymizer(config) -> CamouflageVideoAnonymizer:  # noqa: ANN001 - streamer.config.Config
    """``--method camouflage``: every model of Base and Light resolved first (one error
    naming all missing ones and the fetch command), then both loaded. Light's adapters:
    ``light.adapters`` (see :func:`choose_adapters`), logged and in the run report."""
    from streamer.runner import build_classical

    from ..base.anonymizer import build_base_anonymizer
    from ..light.anonymizer import build_light_anonymizer, build_public_light
    from ..models import names
    from ..models.manifest import ModelResolver
    from ..models.names import BASE_MODELS, CONTROLS
    from ..speed import speed_models

    a, c = config.anonymize, config.camouflage
    if a.scope == "scene":
        raise ConfigError("--method camouflage renders crops per identity: use --scope face or person")
    resolver = ModelResolver(models_dir=config.models.dir, offline=config.models.offline)
    adapters = choose_adapters(config.light.adapters, resolver)
    needed = [*BASE_MODELS, *(f"annotator_{k}" for k in CONTROLS if k not in config.base.annotators)]
    if config.base.prompt is None:
        needed.append("captioner")
    light_models = names.LIGHT_MODELS if adapters == "camouflage" else names.PUBLIC_MODELS
    needed += [n for n in light_models if n not in needed]
    speed = speed_models(config.speed.lcm, config.speed.tiny_vae)
    resolver.resolve_many([*needed, *speed], fetch_as=" ".join(["camouflage", *speed]))
    # Base renders the keyframes at the crops' resolution: no 512 -> 768 upsampling in -c realtime
    config = dataclasses.replace(config, base=dataclasses.replace(config.base, resolution=config.light.resolution))
    base = build_base_anonymizer(config)
    if adapters == "camouflage":
        light = build_light_anonymizer(config, conditioning=base.conditioning)
        log.info("Light in-between frames: trained CAMOUFLaGE-Light adapters (light.adapters: %s)", config.light.adapters)
    else:
        light = build_public_light(config, base.pipeline.controlnet.nets[CONTROLS.index("pose")], base.conditioning)
        log.info("Light in-between frames: public adapters, IP-Adapter plus-face fed the keyframe face + openpose "
                 "ControlNet on the detector's landmarks (light.adapters: %s%s)", config.light.adapters,
                 "; trained adapters not all here" if config.light.adapters == "auto" else "")
    if config.speed.compile:
        from ..speed import apply_compile

        apply_compile(base.pipeline)
        apply_compile(light.pipe)
    policy = KeyframePolicy(every=c.keyframe_every, on_birth=c.keyframe_on_birth, on_scene_cut=c.keyframe_on_scene_cut,
                            pose_change=c.keyframe_pose_change)
    return CamouflageVideoAnonymizer(
        base, light, build_classical(a.fallback, config), policy, shape=Shape(kind=a.shape, margin=a.margin),
        seed=config.light.seed, mode=c.mode, latency=c.latency, reuse_for=c.reuse_for, context=c.context, feather=c.feather,
        colour_match=c.colour_match, max_batch=c.max_batch, scene_cut=config.detection.scene_cut,
        fresh_noise=c.fresh_noise, measure=c.measure, measure_identity=c.measure_identity,
        tracklet_frames=c.tracklet_frames, memory=MemoryPolicy(offload_models(base.pipeline, light.pipe)),
    )

