"""``camstream data prepare SRC... --output SHARDS/``: training shards, made once.

    camstream data prepare faces/ clips/ --output shards/ --models-dir models --light --captioner

Every image, and ``--frames-per-video`` frames spread over every video, under the SRC
files and folders is searched for faces (libfacedetection). Each face of at least
``--min-face`` pixels gives one sample: the square crop Light and Base generate at
inference (``camouflage.video.compositor.crop_window``: the face and ``--context`` of its size
on every side) at ``--size`` pixels; a frame without faces gives its centre square
(skipped with ``--faces-only``). Per sample, computed once:

* its caption: ``NAME.txt`` next to the image or video, else the BLIP captioner on the
  crop (``--captioner``, what Base does at inference), else ``--caption``;
* the boxes and 5 keypoints of every face in the crop;
* with ``--light``: every face's 40 FACER attribute probabilities and the main face's
  FaRL embedding (:func:`extract_light_fields`);
* with ``--latent-resolution R``: the VAE latents of the crop at R pixels (IDF training
  at R then skips the VAE encoder).

A ``--holdout`` fraction of the samples (spread evenly) goes to ``val-*.tar``: the
held-out images the trainings validate on. Inputs are only read.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("camstream")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
VIDEO_SUFFIXES = {".mp4", ".avi", ".mkv", ".mov", ".webm"}


# -- inputs --------------------------------------------------------------------------------

def media_files(sources: list[str]) -> list[Path]:
    out: list[Path] = []
    for src in map(Path, sources):
        found = sorted(p for p in src.rglob("*") if p.is_file()) if src.is_dir() else [src]
        out += [p for p in found if p.suffix.lower() in IMAGE_SUFFIXES | VIDEO_SUFFIXES]
    return out


def sample_frames(files: list[Path], frames_per_video: int) -> Iterator[tuple[np.ndarray, Path, int]]:
    """``(RGB uint8, file, frame index)`` of every image and ``frames_per_video`` frames spread
    over each video, one at a time; what does not decode is skipped with a warning."""
    import av
    from PIL import Image, UnidentifiedImageError

    for path in files:
        if path.suffix.lower() in IMAGE_SUFFIXES:
            try:
                with Image.open(path) as img:
                    rgb = np.asarray(img.convert("RGB"))
            except (OSError, UnidentifiedImageError) as exc:
                log.warning("%s: skipped (%s)", path, exc)
                continue
            yield rgb, path, 0
            continue
        try:
            with av.open(str(path)) as c:
                total = c.streams.video[0].frames or sum(1 for _ in c.decode(video=0))
            wanted = set(np.linspace(0, total - 1, min(frames_per_video, total)).round().astype(int).tolist())
            with av.open(str(path)) as c:  # only the sampled frames are kept
                for i, f in enumerate(c.decode(video=0)):
                    if i in wanted:
                        yield f.to_ndarray(format="rgb24"), path, i
                    if i >= max(wanted, default=-1):
                        break
        except (av.error.FFmpegError, IndexError, ValueError) as exc:
            log.warning("%s: skipped (%s)", path, exc)


def sidecar_caption(path: Path) -> str | None:
    txt = path.with_suffix(".txt")
    text = txt.read_text().strip() if txt.is_file() else ""
    return text or None


# -- the models, each behind one function -------------------------------------------------

class LightFields:
    """FACER attributes, keypoints and FaRL embeddings of faces: the one place the data
    module calls the attribute model and the FaRL encoder."""

    def __init__(self, models_dir: str | None, device: str) -> None:
        from ...light.attributes import AttributeExtractor, FacerAttributeModel, FaRLEncoder
        from ...models import names

        paths = names.resolve_models(models_dir, (names.FARL, names.FACER_ATTRIBUTES))
        self.extractor = AttributeExtractor(FacerAttributeModel.from_pretrained(paths[names.FACER_ATTRIBUTES]).to(device),
                                            FaRLEncoder.from_pretrained(paths[names.FARL]).to(device))

    def __call__(self, image: np.ndarray, boxes: list[np.ndarray], landmarks: list[np.ndarray | None]) -> dict[str, Any]:
        return extract_light_fields(self.extractor, image, boxes, landmarks)


def extract_light_fields(extractor: Any, image: np.ndarray, boxes: list[np.ndarray],
                         landmarks: list[np.ndarray | None]) -> dict[str, Any]:
    """``{"attributes": (N, 40), "keypoints": (N, 5, 2), "embeddings": (N, D)}`` float32 for
    the faces ``boxes`` of ``image`` (frame pixels), through Light's AttributeExtractor."""
    faces = extractor(image, boxes, landmarks, embeddings=True)
    dim = extractor.farl.embed_dim
    return {
        "attributes": np.array([f.probabilities for f in faces], np.float32).reshape(len(faces), -1),
        "keypoints": np.array([f.keypoints for f in faces], np.float32).reshape(len(faces), 5, 2),
        "embeddings": np.stack([f.embedding.float().cpu().numpy() for f in faces]) if faces else np.zeros((0, dim), np.float32),
    }


def face_keypoints_only(boxes: list[np.ndarray], landmarks: list[np.ndarray | None]) -> np.ndarray:
    """Keypoints without the attribute model: the detector's landmarks, else the template."""
    from ...light.attributes import face_keypoints

    return np.array([face_keypoints(b, m) for b, m in zip(boxes, landmarks, strict=True)], np.float32).reshape(len(boxes), 5, 2)


class LatentEncoder:
    """The VAE latents (posterior mean, scaled) of crops at one resolution."""

    def __init__(self, models_dir: str | None, resolution: int, device: str) -> None:
        from diffusers import AutoencoderKL

        from ...models.manifest import ModelResolver

        self.vae = AutoencoderKL.from_pretrained(ModelResolver(models_dir=models_dir).resolve("vae"),
                                                 use_safetensors=True).to(device).eval()
        self.resolution = resolution

    def __call__(self, jpg: bytes) -> np.ndarray:
        import torch

        from .shards import crop_pixels

        x = crop_pixels(jpg, self.resolution)[None].to(self.vae.device)
        with torch.no_grad():
            return (self.vae.encode(x).latent_dist.mean * self.vae.config.scaling_factor)[0].cpu().numpy()


def npy(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(array), allow_pickle=False)
    return buf.getvalue()


def jpeg(rgb: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


# -- the samples -------------------------------------------------------------------------------

def frame_samples(image: np.ndarray, dets: tuple[list[np.ndarray], list[np.ndarray | None]], args: argparse.Namespace,
                  light: LightFields | None) -> Iterator[tuple[np.ndarray, dict[str, Any], np.ndarray | None]]:
    """``(crop, meta, main embedding)`` of one frame: one per face large enough, or its centre."""
    from streamer.anonymizers import Shape

    from ...video.compositor import CropWindow, crop_window

    boxes, landmarks = dets
    h, w = image.shape[:2]
    fields = light(image, boxes, landmarks) if light is not None and boxes else None
    keypoints = fields["keypoints"] if fields is not None else face_keypoints_only(boxes, landmarks)
    sizes = [max(b[2] - b[0], b[3] - b[1]) for b in boxes]
    mains = [i for i, s in enumerate(sizes) if s >= args.min_face]
    windows = [(i, crop_window(boxes[i], Shape(), args.size, args.context)) for i in mains]
    if not windows and not args.faces_only:
        side = min(h, w)
        windows = [(-1, CropWindow((w - side) / 2, (h - side) / 2, side, args.size, 0.0))]
    for main, window in windows:
        order = ([main] if main >= 0 else []) + [i for i in range(len(boxes)) if i != main]
        faces = []
        for i in order:
            box = window.to_crop(boxes[i])
            if box[2] <= 0 or box[3] <= 0 or box[0] >= args.size or box[1] >= args.size:
                continue  # not in this crop
            points = (keypoints[i].astype(np.float64) - [window.ox, window.oy]) * window.scale
            face = {"box": box.astype(np.float64).round(2).tolist(), "keypoints": points.round(2).tolist()}
            if fields is not None:
                face["attributes"] = fields["attributes"][i].astype(np.float64).round(5).tolist()
            faces.append(face)
        embed = None
        if light is not None:
            dim = light.extractor.farl.embed_dim
            embed = fields["embeddings"][main] if fields is not None and main >= 0 else np.zeros(dim, np.float32)
        yield window.crop(image), {"faces": faces}, embed


def main(args: argparse.Namespace) -> int:
    import webdataset as wds

    from streamer.errors import ConfigError, InputError, OutputError
    from tracking.detectors import build_detector

    from ...device import resolve_device
    from .shards import INFO, shard_pattern

    if args.size < 8 or not 0 <= args.holdout < 1 or args.per_shard < 1:
        raise ConfigError("--size must be >= 8, --holdout in [0, 1), --per-shard >= 1")
    files = media_files(args.sources)
    if not files:
        raise InputError(f"{' '.join(args.sources)}: no images or videos")
    out = Path(args.output)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise OutputError(f"{out}: cannot write ({exc.strerror or exc})") from None
    if any(out.glob("*.tar")):
        raise OutputError(f"{out}: already holds shards (use an empty folder)")
    device = str(resolve_device(args.device))
    detector = build_detector(args.detector, 0.5, 960)
    light = LightFields(args.models_dir, device) if args.light else None
    latents = LatentEncoder(args.models_dir, args.latent_resolution, device) if args.latent_resolution else None
    captioner = None
    if args.captioner:
        from ...base.annotators import Captioner
        from ...models.manifest import ModelResolver

        captioner = Captioner.from_pretrained(ModelResolver(models_dir=args.models_dir).resolve("captioner"), device)

    counts = {"train": 0, "val": 0, "frames": 0, "faces": 0, "captions_file": 0, "captions_model": 0, "captions_fixed": 0}
    writers: dict[str, Any] = {}  # opened on their first sample: no empty val shard
    try:
        index = 0
        for image, path, frame in sample_frames(files, args.frames_per_video):
            counts["frames"] += 1
            dets = detector.detect(image)
            boxes = [np.asarray(b, np.float32) for b in dets.xyxy]
            marks = list(dets.data["landmarks"]) if "landmarks" in dets.data else [None] * len(boxes)
            counts["faces"] += len(boxes)
            caption = sidecar_caption(path)
            for crop, meta, embed in frame_samples(image, (boxes, marks), args, light):
                text, source = (caption, "file") if caption else ((captioner(crop).strip(), "model") if captioner else ("", ""))
                if not text:  # no file, no captioner, or it said nothing
                    text, source = args.caption, "fixed"
                counts[f"captions_{source}"] += 1
                meta.update(source=str(path), frame=frame)
                sample = {"__key__": f"{index:08d}", "jpg": jpeg(crop), "txt": text, "json": json.dumps(meta)}
                if embed is not None:
                    sample["embed.npy"] = npy(np.asarray(embed, np.float32))
                if latents is not None:
                    sample["latent.npy"] = npy(latents(sample["jpg"]).astype(np.float32))  # of what training decodes
                # every 1/holdout-th sample, spread over the data, is held out
                split = "val" if args.holdout and int((index + 1) * args.holdout) > int(index * args.holdout) else "train"
                if split not in writers:
                    writers[split] = wds.ShardWriter(shard_pattern(out, split), maxcount=args.per_shard, verbose=0)
                writers[split].write(sample)
                counts[split] += 1
                index += 1
    finally:
        for w in writers.values():
            w.close()
    if not counts["train"]:
        for p in out.glob("*.tar"):
            p.unlink()
        raise InputError(f"{' '.join(args.sources)}: no training samples (no frames decoded{', no faces' if args.faces_only else ''})")
    info = {"size": args.size, "context": args.context, "light": bool(args.light), "latent_resolution": args.latent_resolution,
            "samples": counts["train"], "val_samples": counts["val"], **{k: v for k, v in counts.items() if k not in ("train", "val")}}
    (out / INFO).write_text(json.dumps(info, indent=1))
    print(f"{out}: {counts['train']} training and {counts['val']} held-out samples from {counts['frames']} frames "
          f"({counts['faces']} faces)")
    return 0
