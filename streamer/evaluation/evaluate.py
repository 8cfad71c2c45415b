"""One pass over the original and any number of outputs, paired by timestamp.

The original is decoded, detected, tracked, embedded and its optical flow computed
once, however many outputs are compared with it.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import cache
from .faces import FaceEmbedder, FaceFinder, TrackLinker, identifiable, same_place
from .media import MediaInfo, TimedReader
from .privacy import Gallery, PrivacyMeter, PrivacyResult
from .reference import CoverageCount, ReferenceFinder, covered_fraction
from .utility import OriginalFlow, UtilityMeter, UtilityResult, covered_mask, warp_error_map

log = logging.getLogger("camstream")

MIN_REID_FACE = 20  # px: smaller faces give meaningless embeddings


@dataclass
class EvalResult:
    """How one output fares against the original."""

    name: str
    path: str
    privacy: PrivacyResult
    utility: UtilityResult
    media: dict
    fps: float | None = None  # anonymization speed, when ``compare`` ran the method
    cover: str | None = None  # the method that made the output, when known (``--method``, ``--compare``)
    per_frame: list[dict] = field(default_factory=list)  # frame, time, faces, leaked, warp

    @property
    def pixel_measure(self) -> bool:
        """Whether the exposed/bare figures mean something for this output: the pixel
        measure counts a face covered where its pixels changed a lot or turned the cover
        colour, which a solid cover does and a pixelate, blur or generated face need not
        (a pixelated face keeps its mean colours: "exposed" however well hidden)."""
        return self.cover in PIXEL_MEASURE_COVERS

    def to_dict(self) -> dict:
        return {**asdict(self), "pixel_measure_meaningful": self.pixel_measure}


PIXEL_MEASURE_COVERS = ("solid", "original")  # "original": nothing replaced, every face exposed (the ceiling)


@dataclass
class Evaluation:
    original: MediaInfo
    results: list[EvalResult]
    thumbnails: list[dict[str, np.ndarray]] = field(default_factory=list)  # name -> small RGB frame

    def to_dict(self) -> dict:
        return {"original": asdict(self.original), "results": [r.to_dict() for r in self.results]}


class _Output:
    def __init__(self, name: str, path: str, reader: TimedReader | None) -> None:
        self.name, self.path, self.reader = name, path, reader  # reader None: the original itself
        self.privacy, self.utility = PrivacyMeter(), UtilityMeter()
        self.coverage = CoverageCount()  # reference faces and how much of each the output replaced
        self.previous: tuple[np.ndarray, np.ndarray] | None = None  # output image, covered mask
        self.unpaired_original = 0
        self.paired = 0
        self.per_frame: list[dict] = []


def _thumbnail(image: np.ndarray, width: int = 320) -> np.ndarray:
    h, w = image.shape[:2]
    return cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_AREA)


def evaluate(
    original: str,
    outputs: dict[str, str],
    *,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    reid_every: int | None = None,
    threshold: float = 0.5,
    progress: bool = False,
    thumbnails: int = 0,
    trim_outputs: bool = True,
    reference_every: int | None = None,
    covers: dict[str, str] | None = None,
    use_cache: bool = True,
) -> Evaluation:
    """Measure privacy and utility of each ``outputs`` file (name -> path) against ``original``.

    ``start``/``end`` select a range of the original (seconds), and of each output when
    ``trim_outputs`` (an output of the whole original); an output made from that range
    only (``trim_outputs=False``) lines up too: frames pair by time from the first frame.
    Every ``reid_every``-th frame is embedded for re-identification (0: never; None:
    about 4 frames a second of video, every image): an embedding costs ~0.1 s a face.
    Every ``reference_every``-th frame (0: never; None: as re-identification, or about 4
    a second) gets the reference faces of several detectors
    (:class:`~.reference.ReferenceFinder`, ~1 s a frame) and each output the share of
    each face's inner box it replaced: the detector-independent leak figure, meaningful
    for solid covers (``covers``: output name -> the method that made it, when known).
    What is found in the original is cached (:mod:`.cache`) unless ``use_cache`` is off:
    a later evaluation of another output of the same original reads it back.
    """
    source = TimedReader(original, start=start, end=end)
    if reid_every is None:
        reid_every = max(1, round(source.info.fps / 4)) if source.info.fps else 1
    if reference_every is None:
        reference_every = reid_every or (max(1, round(source.info.fps / 4)) if source.info.fps else 1)
    key = cache.cache_key(original, start=start, end=end, max_frames=max_frames, reid_every=reid_every,
                          reference_every=reference_every, threshold=threshold,
                          dlib=importlib.util.find_spec("dlib") is not None) if use_cache else None
    cached = cache.load(key)
    facts: list[cache.FrameFacts] = []
    finder = FaceFinder(threshold)
    references = ReferenceFinder() if reference_every and cached is None else None
    detectors = cached.detectors if cached is not None else references.detectors if references is not None else []
    embedder = FaceEmbedder() if reid_every else None
    linker, gallery, flow = TrackLinker(), Gallery(), OriginalFlow()
    outs: list[_Output] = []
    try:
        for name, path in outputs.items():
            same = Path(path).resolve() == Path(original).resolve()
            reader = None if same else TimedReader(path, start=start, end=end) if trim_outputs else TimedReader(path)
            outs.append(_Output(name, path, reader))
        if cached is not None:  # said once every file opened: an error stays the only line
            log.info("the original's faces, references and embeddings: from the cache (%s)", cache.cache_dir())
        tolerance = 0.5 * source.frame_interval
        total = source.source.info.frame_count
        total = min(total, max_frames) if total and max_frames else (max_frames or total)
        bar = None
        if progress and source.info.kind != "image":
            from tqdm import tqdm

            bar = tqdm(total=total, unit="frame", desc="eval", dynamic_ncols=True, file=sys.stderr)
        stride = max(1, (total or 100) // 24)
        kept: list[dict[str, np.ndarray]] = []
        previous_original: np.ndarray | None = None
        n = unidentifiable = 0
        while (item := source.next()) is not None:
            t, frame = item
            image = frame.image
            known = cached.frames[n] if cached is not None and n < len(cached.frames) else None
            fact = known or _facts(image, n, finder, embedder, references, reid_every, reference_every)
            if cached is None:
                facts.append(fact)
            boxes = fact.boxes
            ids = linker(n, boxes)
            reid = fact.reid_index is not None and embedder is not None
            shapes, emb_original, reid_ids = [], None, ids[:0]
            if reid:
                reid_ids = ids[fact.reid_index] if fact.reid_index else ids[:0]
                shapes = cache.shapes_from_json(fact.rects, fact.points)
                emb_original = fact.embeddings if fact.embeddings is not None else np.zeros((0, 128), np.float32)
                unidentifiable += fact.unidentifiable
                for track_id, e in zip(reid_ids.tolist(), emb_original, strict=True):
                    gallery.add(track_id, e)
            reference = fact.reference or []
            motion = None  # original flow t-1 -> t, computed when some output needs it
            thumbs: dict[str, np.ndarray] | None = None
            if thumbnails and len(boxes) and n % stride == 0:
                thumbs = {"original": _thumbnail(image)}
            for out in outs:
                if out.reader is None:
                    out_image = image
                else:
                    out_frame = out.reader.at(t, tolerance)
                    if out_frame is None:
                        out.unpaired_original += 1
                        out.previous = None
                        continue
                    out_image = out_frame.image
                    if out_image.shape != image.shape:
                        out_image = cv2.resize(out_image, (image.shape[1], image.shape[0]), interpolation=cv2.INTER_AREA)
                out.paired += 1
                for face in reference:
                    out.coverage.add(frame.index, face, covered_fraction(image, out_image, face.inner))
                found = boxes if out.reader is None else finder(out_image)
                leaked = [same_place(b, found) for b in boxes]
                out.privacy.add_frame(frame.index, ids, leaked)
                distances = None
                if reid and len(shapes):
                    emb_output = emb_original if out.reader is None else embedder.embed(out_image, shapes)
                    out.privacy.add_embeddings(reid_ids, emb_original, emb_output)
                    distances = np.linalg.norm(emb_original - emb_output, axis=1).round(4).tolist()
                covered = covered_mask(image, out_image, boxes)
                out.utility.add_frame(image, out_image, covered, len(boxes), len(found))
                warp = None
                if out.previous is not None and previous_original is not None:
                    if motion is None:
                        map_x, map_y, valid = flow(previous_original, image)
                        motion = (map_x, map_y, valid, warp_error_map(previous_original, image, map_x, map_y))
                    map_x, map_y, valid, error_original = motion
                    previous_image, previous_covered = out.previous
                    error = warp_error_map(previous_image, out_image, map_x, map_y)
                    out.utility.add_warp(frame.index, error, error_original, valid, previous_covered)
                    inside = valid & previous_covered
                    warp = float(error[inside].mean()) if inside.any() else None
                out.previous = (out_image, covered)
                out.per_frame.append({"frame": frame.index, "time": round(t, 4), "faces": len(boxes),
                                      "found": len(found), "leaked": int(sum(leaked)), "reid_distances": distances, "warp_error": warp})
                if thumbs is not None:
                    thumbs[out.name] = _thumbnail(out_image)
            if thumbs is not None:
                kept.append(thumbs)
            previous_original = image
            n += 1
            if bar is not None:
                bar.update(1)
            if max_frames and n >= max_frames:
                break
        if bar is not None:
            bar.close()
        limited = bool(max_frames and n >= max_frames) or end is not None
        if cached is None and key is not None:
            saved = cache.save(key, cache.OriginalFacts(facts, detectors))
            if saved is not None:
                log.debug("eval cache written: %s", saved)
        gallery.build()
        results = []
        for out in outs:
            results.append(_result(out, source, gallery, drain=not limited))
            results[-1].privacy.reid_faces_unidentifiable = unidentifiable
            c, p = out.coverage, results[-1].privacy
            p.reference_faces, p.reference_exposed, p.reference_bare = c.faces, c.exposed, c.bare
            p.reference_faces_24, p.reference_exposed_24 = c.faces_24, c.exposed_24
            p.reference_exposed_examples = c.worst or []
            p.reference_detectors = detectors
            results[-1].cover = (covers or {}).get(out.name, "original" if out.reader is None else None)
        if thumbnails and kept:
            picks = np.linspace(0, len(kept) - 1, min(thumbnails, len(kept))).round().astype(int)
            kept = [kept[i] for i in sorted(set(picks.tolist()))]
        return Evaluation(original=source.info, results=results, thumbnails=kept if thumbnails else [])
    finally:
        source.close()
        for out in outs:
            if out.reader is not None:
                out.reader.close()


def _facts(image: np.ndarray, n: int, finder: FaceFinder, embedder: FaceEmbedder | None, references: ReferenceFinder | None,
           reid_every: int, reference_every: int) -> cache.FrameFacts:
    """What frame ``n`` of the original holds: faces, reference faces, identities."""
    boxes = finder(image)
    fact = cache.FrameFacts(boxes=boxes)
    if embedder is not None and n % reid_every == 0 and len(boxes) > 0:
        big = np.flatnonzero(np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]) >= MIN_REID_FACE)
        shapes = embedder.landmarks(image, boxes[big])
        embeddings = embedder.embed(image, shapes)
        keep = identifiable(embedder, image, boxes[big], shapes, embeddings)
        fact.unidentifiable = int((~keep).sum())
        fact.reid_index = big[keep].tolist()
        fact.rects, fact.points = cache.shapes_to_json([s for s, k in zip(shapes, keep, strict=True) if k])
        fact.embeddings = embeddings[keep]
    if references is not None and n % reference_every == 0:
        fact.reference = references(image)
    return fact


def _result(out: _Output, source: TimedReader, gallery: Gallery, drain: bool) -> EvalResult:
    o = source.info
    if out.reader is None:
        x = o
        unpaired_output = 0
    else:
        if drain:
            out.reader.drain()
        x = out.reader.info
        unpaired_output = out.reader.unpaired
    interval = source.frame_interval
    media = {
        "original_frames": o.frames,
        "output_frames": x.frames,
        "paired_frames": out.paired,
        "unpaired_original_frames": out.unpaired_original,
        "unpaired_output_frames": unpaired_output,
        "frame_count_match": o.frames == x.frames,
        "original_duration": o.duration,
        "output_duration": x.duration,
        "duration_match": (o.duration is None and x.duration is None)
        or (o.duration is not None and x.duration is not None and abs(o.duration - x.duration) <= 1.5 * interval),
        "original_audio": o.has_audio,
        "output_audio": x.has_audio,
        "audio_preserved": x.has_audio or not o.has_audio,
        "size_match": (o.width, o.height) == (x.width, x.height),
    }
    if out.unpaired_original or unpaired_output:
        log.warning("%s: %d original and %d output frames have no partner at the same time (%d vs %d frames)",
                    out.name, out.unpaired_original, unpaired_output, o.frames, x.frames)
    return EvalResult(
        name=out.name,
        path=out.path,
        privacy=out.privacy.result(gallery),
        utility=out.utility.result(),
        media=media,
        per_frame=out.per_frame,
    )
