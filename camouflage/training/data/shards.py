"""The shard layout and the streaming reader.

A shard folder holds ``train-NNNNNN.tar`` and ``val-NNNNNN.tar`` (webdataset layout: the
files of one sample share a key, ``KEY.EXT``) and ``info.json`` (what was prepared and
how). One sample is one square crop:

  KEY.jpg         the crop (RGB) at ``info["size"]`` pixels
  KEY.txt         its caption
  KEY.json        ``{"source", "frame", "faces": [{"box", "keypoints", "attributes"?}]}``:
                  every face in the crop, in crop pixels; ``attributes`` (40 FACER
                  probabilities) only in Light shards; the first face is the main one
  KEY.embed.npy   (Light) FaRL embedding of the main face (float32)
  KEY.latent.npy  (optional) VAE latents of the crop at ``info["latent_resolution"]``

:class:`ShardStream` reads them with constant memory: shards are split between the
processes (rank, world size) and the DataLoader workers, each stream shuffles through a
bounded buffer, and a stream is endless (epochs follow each other, reshuffled), so every
process always has a next batch. Its order is a function of (seed, world size, workers,
batch size) only, and ``skip_batches`` replays it without decoding: resuming at step N
sees exactly the batches an uninterrupted run would.
"""

from __future__ import annotations

import json
import random
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import IterableDataset, get_worker_info

INFO = "info.json"
SPLITS = ("train", "val")


def shard_pattern(folder: Path, split: str) -> str:
    return str(folder / f"{split}-%06d.tar")


def shard_files(folder: Path, split: str) -> list[Path]:
    return sorted(Path(folder).glob(f"{split}-*.tar"))


def read_info(folder: Path) -> dict[str, Any]:
    """``info.json`` of a shard folder; a clear error when ``folder`` holds none."""
    from streamer.errors import InputError

    path = Path(folder) / INFO
    if not path.is_file() or not shard_files(folder, "train"):
        raise InputError(f"{folder}: no training shards (make them with: camstream data prepare SRC... --output {folder})")
    return json.loads(path.read_text())


def iter_samples(path: Path) -> Iterator[dict[str, Any]]:
    """The raw samples of one tar shard (``{"__key__", EXT: bytes}``), read as a stream.
    The files of a sample follow each other and share their name up to the first dot of
    the basename (webdataset's convention)."""
    sample: dict[str, Any] | None = None
    with tarfile.open(path, mode="r|*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            folder, _, base = member.name.rpartition("/")
            stem, _, ext = base.partition(".")
            key = f"{folder}/{stem}" if folder else stem
            if sample is not None and sample["__key__"] != key:
                yield sample
                sample = None
            if sample is None:
                sample = {"__key__": key}
            sample[ext] = tar.extractfile(member).read()
    if sample is not None:
        yield sample


def _mix(*values: int) -> int:
    """One seed from several integers (stable across runs and processes, unlike hash())."""
    out = 0x9E3779B9
    for v in values:
        out = (out * 1_000_003 + int(v) + 1) % (1 << 61)
    return out


class ShardStream(IterableDataset):
    """Samples of ``split`` from a shard folder, decoded by ``decode(raw) -> dict``.

    ``endless`` (training): every (process, worker) stream cycles over its share of the
    shards, epoch after epoch, through a shuffle buffer of ``buffer`` raw samples.
    Not endless (validation): every sample once, in order, at most ``limit``, on every
    process (all of them see the same held-out set).
    """

    def __init__(self, folder: Path, split: str, decode: Callable[[dict[str, Any]], dict[str, Any]], *, seed: int = 0,
                 rank: int = 0, world: int = 1, endless: bool = True, buffer: int = 256, batch_size: int = 1,
                 skip_batches: int = 0, limit: int | None = None) -> None:
        super().__init__()
        self.files = shard_files(Path(folder), split)
        self.decode, self.seed, self.rank, self.world = decode, seed, rank, world
        self.endless, self.buffer, self.batch_size = endless, max(1, buffer), batch_size
        self.skip_batches, self.limit = skip_batches, limit

    def _stream_id(self) -> tuple[int, int, int]:
        """(role, workers, stream). The DataLoader takes batch k from its worker k % workers,
        starting at worker 0: after ``skip_batches``, worker w plays the part of worker
        (w + skip_batches) % workers of the uninterrupted run."""
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        role = (worker + self.skip_batches) % workers
        return role, workers, self.rank * workers + role

    def _raw(self, stream: int, streams: int) -> Iterator[dict[str, Any]]:
        """This stream's raw samples, endlessly: by shard when there are enough shards for
        every stream, else every stream reads all shards and keeps every ``streams``-th sample."""
        by_shard = len(self.files) >= streams
        epoch = 0
        while True:
            order = list(self.files)
            random.Random(_mix(self.seed, epoch)).shuffle(order)  # the same order on every stream
            mine = order[stream::streams] if by_shard else order
            index = given = 0
            for path in mine:
                for sample in iter_samples(path):
                    if by_shard or index % streams == stream:
                        given += 1
                        yield sample
                    index += 1
            if not given:  # an endless loop over nothing would hang the training
                raise RuntimeError(f"stream {stream} of {streams} got no samples: fewer samples than streams")
            epoch += 1

    def _shuffled(self, raw: Iterator[dict[str, Any]], rng: random.Random) -> Iterator[dict[str, Any]]:
        pool: list[dict[str, Any]] = []
        for sample in raw:
            if len(pool) < self.buffer:
                pool.append(sample)
                continue
            i = rng.randrange(len(pool))
            pool[i], sample = sample, pool[i]
            yield sample

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if not self.endless:
            count = 0
            for path in self.files:
                for sample in iter_samples(path):
                    if self.limit is not None and count >= self.limit:
                        return
                    count += 1
                    yield self.decode(sample)
            return
        if not self.files:
            return
        role, workers, stream = self._stream_id()
        samples = self._shuffled(self._raw(stream, self.world * workers), random.Random(_mix(self.seed, stream, 7)))
        skip = len(range(role, self.skip_batches, workers)) * self.batch_size  # this role's share of the skipped batches
        for _ in range(skip):
            next(samples)
        for sample in samples:
            yield self.decode(sample)


def loader(dataset: ShardStream, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """Batches of ``dataset``: plain collation (captions become lists), ``workers`` processes."""
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=workers,
                                       persistent_workers=False, prefetch_factor=2 if workers else None)


def crop_pixels(jpg: bytes, resolution: int) -> torch.Tensor:
    """A stored crop as the trainings see it: (3, R, R) in [-1, 1] (box filter down, bicubic up).
    ``data prepare --latent-resolution`` encodes exactly this, so cached latents are the
    latents training would compute."""
    import io

    import numpy as np
    from PIL import Image

    with Image.open(io.BytesIO(jpg)) as img:
        img = img.convert("RGB")
        if img.size != (resolution, resolution):
            img = img.resize((resolution, resolution), Image.BOX if img.width > resolution else Image.BICUBIC)
        return torch.from_numpy(np.array(img)).permute(2, 0, 1).float() / 127.5 - 1


MAX_FACES = 8  # faces per crop kept for Light's map (the main one first; more is rare in a crop)


class Decoder:
    """A raw sample -> tensors at the training ``resolution`` (a class, not a closure, so
    DataLoader workers can take it under any start method).

    Always ``pixels`` (3, R, R) in [-1, 1] and ``caption``; ``latent`` when the shards hold
    latents at R; with ``light``: ``embed`` (D,), and the faces padded to :data:`MAX_FACES`:
    ``boxes`` (F, 4) and ``keypoints`` (F, 5, 2) in R pixels, ``attributes`` (F, 40), ``faces``."""

    def __init__(self, resolution: int, stored: int, latents: bool = False, light: bool = False) -> None:
        self.resolution, self.stored, self.latents, self.light = resolution, stored, latents, light

    def __call__(self, raw: dict[str, Any]) -> dict[str, Any]:
        import io

        import numpy as np

        r = self.resolution
        pixels = crop_pixels(raw["jpg"], r)
        caption = raw["txt"].decode() if isinstance(raw["txt"], bytes) else str(raw["txt"])
        out: dict[str, Any] = {"pixels": pixels, "caption": caption}
        if self.latents:
            out["latent"] = torch.from_numpy(np.load(io.BytesIO(raw["latent.npy"])))
        if self.light:
            from ...light.attributes import NUM_ATTRIBUTES

            meta = json.loads(raw["json"])
            faces = meta["faces"][:MAX_FACES]
            k = r / self.stored
            boxes, points, attrs = torch.zeros(MAX_FACES, 4), torch.zeros(MAX_FACES, 5, 2), torch.zeros(MAX_FACES, NUM_ATTRIBUTES)
            for i, f in enumerate(faces):
                boxes[i] = torch.tensor(f["box"]) * k
                points[i] = torch.tensor(f["keypoints"]) * k
                attrs[i] = torch.tensor(f["attributes"])
            out.update(embed=torch.from_numpy(np.load(io.BytesIO(raw["embed.npy"]))).float(), boxes=boxes,
                       keypoints=points, attributes=attrs, faces=len(faces))
        return out
