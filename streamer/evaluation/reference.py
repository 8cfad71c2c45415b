"""A reference set of faces that does not share the pipeline's blind spots, and a pixel
measure of how much of each face an output really covers.

Reference faces: several detectors, each run harder than the pipeline runs its own
(every frame, a 2x upscaled pass for CCTV-size faces, a low threshold):
libfacedetection (tiled over the upscaled frame: it degrades past 960 px), CenterFace
at 1x and 2x, and dlib's HOG when dlib is installed. A face counts where two detectors
agree, or where one is sure.

Pixel measure: for each reference face, the fraction of its inner box (the box of the
eyes, nose and mouth landmarks) that the output replaced. A detector run on the output
says whether *that detector* still finds a face; this says whether the face's pixels
are still there, which is what a person looking at the frame sees.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .faces import iou_matrix

SURE = 0.7  # one detector at this confidence is enough
EXPOSED = 0.9  # an inner box less covered than this is "exposed" ...
BARE = 0.5  # ... and less than this, "bare"


@dataclass
class ReferenceFace:
    box: np.ndarray  # xyxy, frame pixels
    inner: np.ndarray  # xyxy: eyes-nose-mouth
    detectors: tuple[str, ...]
    confidence: float

    @property
    def size(self) -> float:
        return float(max(self.box[2] - self.box[0], self.box[3] - self.box[1]))


def _tiles(image: np.ndarray, tile: int = 900, overlap: int = 96) -> list[tuple[int, int, np.ndarray]]:
    h, w = image.shape[:2]
    ys = list(range(0, max(1, h - overlap), tile - overlap)) if h > tile else [0]
    xs = list(range(0, max(1, w - overlap), tile - overlap)) if w > tile else [0]
    return [(x, y, image[y:y + tile, x:x + tile]) for y in ys for x in xs]


def inner_box(box: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    """The eyes-nose-mouth box: the landmarks' bounding box padded by 10 % of the face
    width; without landmarks, the middle of the face box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    if landmarks is not None and len(landmarks) and np.isfinite(landmarks).all():
        lx1, ly1 = landmarks.min(0)
        lx2, ly2 = landmarks.max(0)
        pad = 0.1 * w
        inner = np.array([lx1 - pad, ly1 - pad, lx2 + pad, ly2 + pad], np.float32)
        return np.array([max(inner[0], x1), max(inner[1], y1), min(inner[2], x2), min(inner[3], y2)], np.float32)
    return np.array([x1 + 0.2 * w, y1 + 0.3 * h, x2 - 0.2 * w, y2 - 0.1 * h], np.float32)


class ReferenceFinder:
    """Faces per frame by consensus of several detectors (see the module docstring)."""

    def __init__(self, threshold: float = 0.3, hog: bool = True) -> None:
        from tracking.detectors import CenterFaceDetector, LibFaceDetector

        self.libface = LibFaceDetector(threshold=threshold)
        self.centerface = CenterFaceDetector(threshold=threshold, max_side=None)
        self.hog = None
        if hog:
            try:
                import dlib

                self.hog = dlib.get_frontal_face_detector()
            except ImportError:
                self.hog = None

    @property
    def detectors(self) -> list[str]:
        return ["libfacedetection", "centerface"] + (["dlib-hog"] if self.hog is not None else [])

    def _candidates(self, image: np.ndarray) -> list[tuple[str, np.ndarray, float, np.ndarray | None]]:
        out: list[tuple[str, np.ndarray, float, np.ndarray | None]] = []

        def add(name: str, det, scale: float = 1.0, dx: int = 0, dy: int = 0) -> None:  # noqa: ANN001
            marks = det.data.get("landmarks")
            for i in range(len(det)):
                box = det.xyxy[i] / scale + np.array([dx, dy, dx, dy], np.float32) / scale
                lm = None if marks is None else (marks[i] + np.array([dx, dy], np.float32)) / scale
                out.append((name, box.astype(np.float32), float(det.confidence[i]), lm))

        add("libfacedetection", self.libface.detect(image))
        big = cv2.resize(image, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC)
        for x, y, tile in _tiles(big):
            add("libfacedetection", self.libface.detect(tile), 2.0, x, y)
        add("centerface", self.centerface.detect(image))
        add("centerface", self.centerface.detect(big), 2.0)
        if self.hog is not None:
            rects, scores, _ = self.hog.run(image, 1, -0.3)
            for r, s in zip(rects, scores, strict=True):
                # HOG scores: 0 is its usual cut, ~1 is confident; mapped onto [0, 1].
                conf = float(np.clip(0.5 + s / 2, 0, 1))
                out.append(("dlib-hog", np.array([r.left(), r.top(), r.right(), r.bottom()], np.float32), conf, None))
        return out

    def __call__(self, image: np.ndarray) -> list[ReferenceFace]:
        candidates = sorted(self._candidates(image), key=lambda c: -c[2])
        clusters: list[dict] = []
        for name, box, conf, marks in candidates:
            if box[2] - box[0] < 4 or box[3] - box[1] < 4:
                continue
            for c in clusters:
                if iou_matrix(box[None], c["box"][None])[0, 0] >= 0.3:
                    c["names"].add(name)
                    if c["marks"] is None and marks is not None:
                        c["marks"] = marks
                    break
            else:
                clusters.append({"box": box, "conf": conf, "names": {name}, "marks": marks})
        faces = []
        for c in clusters:
            if len(c["names"]) >= 2 or c["conf"] >= SURE:
                faces.append(ReferenceFace(c["box"], inner_box(c["box"], c["marks"]), tuple(sorted(c["names"])), c["conf"]))
        return faces


def covered_fraction(original: np.ndarray, output: np.ndarray, box: np.ndarray, colour: tuple[int, int, int] | None = (0, 0, 0),
                     changed: int = 40, tolerance: int = 24) -> float:
    """Fraction of ``box`` (an inner box) whose pixels the output replaced.

    A pixel is covered when it changed by more than ``changed`` (any channel), or when
    it is now the solid ``colour`` (within ``tolerance``) and was not that colour
    before. Pixels that were already the cover colour cannot be told apart and are left
    out; a box with nothing left to judge counts as covered.
    """
    h, w = original.shape[:2]
    x1, y1 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x2, y2 = min(w, int(np.ceil(box[2]))), min(h, int(np.ceil(box[3])))
    if x2 <= x1 or y2 <= y1:
        return 1.0
    a = original[y1:y2, x1:x2].astype(np.int16)
    b = output[y1:y2, x1:x2].astype(np.int16)
    moved = np.abs(a - b).max(axis=2) > changed
    judge = np.ones(moved.shape, bool)
    if colour is not None:
        c = np.array(colour, np.int16)
        now = np.abs(b - c).max(axis=2) <= tolerance
        before = np.abs(a - c).max(axis=2) <= tolerance
        judge = ~before
        moved |= now
    if not judge.any():
        return 1.0
    return float(moved[judge].mean())


def covered_area(original: np.ndarray, output: np.ndarray, colour: tuple[int, int, int] = (0, 0, 0),
                 changed: int = 40, tolerance: int = 24) -> float:
    """Share of the whole frame the output replaced (the price of the cover), by the
    pixel rule of :func:`covered_fraction`; pixels already the cover colour count as not
    replaced."""
    a, b = original.astype(np.int16), output.astype(np.int16)
    c = np.array(colour, np.int16)
    moved = np.abs(a - b).max(axis=2) > changed
    moved |= (np.abs(b - c).max(axis=2) <= tolerance) & ~(np.abs(a - c).max(axis=2) <= tolerance)
    return float(moved.mean())


@dataclass
class CoverageCount:
    faces: int = 0
    exposed: int = 0  # inner box < 90 % covered
    bare: int = 0  # < 50 %
    faces_24: int = 0  # faces of 24 px or more ...
    exposed_24: int = 0  # ... and those exposed
    worst: list[tuple[int, float, list[float]]] | None = None  # (frame, fraction, box), the first few

    def add(self, frame: int, face: ReferenceFace, fraction: float) -> None:
        self.faces += 1
        big = face.size >= 24
        self.faces_24 += big
        if fraction < EXPOSED:
            self.exposed += 1
            self.exposed_24 += big
            if self.worst is None:
                self.worst = []
            if len(self.worst) < 50:
                self.worst.append((frame, round(fraction, 2), [round(float(v)) for v in face.box]))
        if fraction < BARE:
            self.bare += 1
