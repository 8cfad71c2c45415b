"""An independent check: CenterFace (not the pipeline's libfacedetection) looks for
faces in the output where the original had one."""

from __future__ import annotations

import numpy as np

from tracking.detectors import CenterFaceDetector

_detector: CenterFaceDetector | None = None


def faces(image: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    global _detector
    if _detector is None:
        _detector = CenterFaceDetector(threshold=threshold)
    _detector.threshold = threshold
    return _detector.detect(image).xyxy


def _overlaps(box: np.ndarray, boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    x1 = np.maximum(box[0], boxes[:, 0])
    y1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[2], boxes[:, 2])
    y2 = np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return bool((inter / ((box[2] - box[0]) * (box[3] - box[1]))).max() > 0.3)


def leaks(originals: list[np.ndarray], outputs: list[np.ndarray]) -> tuple[int, list[tuple[int, list[float]]]]:
    """(faces in the originals, [(frame, box) still found at the same place in the output])."""
    found, leaked = 0, []
    for i, (orig, out) in enumerate(zip(originals, outputs, strict=True)):
        before = faces(orig)
        if not len(before):
            continue
        found += len(before)
        after = faces(out)
        leaked += [(i, box.tolist()) for box in before if _overlaps(box, after)]
    return found, leaked
