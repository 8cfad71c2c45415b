"""Licence-plate detectors behind the :class:`~tracking.detectors.Detector` protocol.

Two publishers' formats, read as they ship them (``configs/models.yaml``, section ``plates``):

* open-image-models (MIT), the default: YOLOv9 plate detectors exported "end2end" to ONNX
  (NMS inside the graph), released as ``yolo-v9-*-license-plates-end2end.onnx``. One input
  ``float32 [batch, 3, S, S]`` (RGB, 0-1, letterboxed with grey 114 like YOLO's training),
  one output ``float32 [N, 7]``: ``[batch index, x1, y1, x2, y2, class, score]`` in the
  letterboxed pixels. The input and output names are read from the file, as the package
  itself does. Run with onnxruntime (the ``camstream[plates]`` extra): no torch.
* EgoBlur's licence-plate model (Apache-2.0 weights, Meta), a TorchScript file the user
  downloads from projectaria.com after accepting its terms (``camstream models import
  egoblur_lp FILE``). Called as EgoBlur's demo calls it: a ``uint8 [3, H, W]`` BGR tensor in,
  ``(boxes xyxy, labels, scores, image size)`` out; overlapping boxes are merged by NMS at
  IoU 0.3 afterwards, as the demo does. Needs torch (the diffusion extra).

Plates are class 2 of the run's detections (:data:`tracking.classes.PLATE`): tracked apart
from faces and always covered by a classical cover (:mod:`streamer.classes`).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import supervision as sv

from streamer.errors import ModelError

from .classes import PLATE, find_model, model_file

LETTERBOX_GREY = 114  # the pad colour YOLO trains with (open-image-models' letterbox)
EGOBLUR_NMS_IOU = 0.3  # EgoBlur's demo default


def _plates(boxes: np.ndarray, scores: np.ndarray, width: int, height: int) -> sv.Detections:
    """Boxes clipped to the frame, as class :data:`PLATE`; empty ones dropped."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    n = int(keep.sum())
    return sv.Detections(
        xyxy=boxes[keep], confidence=np.asarray(scores, np.float32).reshape(-1)[keep], class_id=np.full(n, PLATE, int)
    )


def letterbox(image: np.ndarray, size: int) -> tuple[np.ndarray, float, tuple[float, float]]:
    """``image`` scaled to fit ``size`` x ``size`` and padded evenly with grey: the
    preprocessing open-image-models' YOLOv9 models were exported for (its ``letterbox``).
    Returns the square image, the scale and the (left, top) padding."""
    h, w = image.shape[:2]
    scale = min(size / h, size / w)
    new_w, new_h = round(w * scale), round(h * scale)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    dw, dh = (size - new_w) / 2, (size - new_h) / 2
    top, bottom = round(dh - 0.1), round(dh + 0.1)
    left, right = round(dw - 0.1), round(dw + 0.1)
    grey = (LETTERBOX_GREY,) * 3
    return cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=grey), scale, (dw, dh)


class OnnxPlateDetector:
    """open-image-models' YOLOv9 end2end plate detector (ONNX), run with onnxruntime.

    ``threshold``: open-image-models' own default for its plate models is 0.25.
    One onnxruntime session, one intra-op thread: the pipeline runs detections of
    several frames side by side, and the 2-4 cores of a camera box are shared with
    decoding and encoding.
    """

    kind = "plate"
    DEFAULT_THRESHOLD = 0.25

    def __init__(self, path: str | Path, threshold: float | None = None) -> None:
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError("plate detection needs onnxruntime: pip install '.[plates]' in a clone") from None
        path = Path(path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.log_severity_level = 3  # no warnings about unused initializers on stderr
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # noqa: BLE001 - onnxruntime raises its own types
            raise ModelError(f"{path}: not an ONNX model onnxruntime can run ({str(exc).splitlines()[0][:160]})") from None
        inp, outputs = self.session.get_inputs()[0], self.session.get_outputs()
        shape = list(inp.shape)
        if len(shape) != 4 or shape[1] != 3 or not isinstance(shape[2], int) or shape[2] != shape[3]:
            raise ModelError(f"{path}: expected open-image-models' input [batch, 3, S, S] with a fixed S, got {shape}")
        if isinstance(shape[0], int) and shape[0] != 1:
            raise ModelError(f"{path}: expected a batch of 1 or a dynamic batch, got {shape[0]}")
        out_shape = list(outputs[0].shape)  # [N, 7]; [batch, N, 7] is read alike; an unknown rank is tried
        if out_shape and (len(out_shape) not in (2, 3) or (isinstance(out_shape[-1], int) and out_shape[-1] != 7)):
            raise ModelError(f"{path}: expected an end2end output [N, 7] (batch, x1, y1, x2, y2, class, score), got {out_shape}")
        self.input_name, self.output_name, self.size = inp.name, outputs[0].name, shape[2]
        self.threshold = self.DEFAULT_THRESHOLD if threshold is None else threshold

    def detect(self, image: np.ndarray) -> sv.Detections:
        h, w = image.shape[:2]
        square, scale, (dw, dh) = letterbox(image, self.size)  # frames are RGB already, as the model wants
        batch = (square.transpose(2, 0, 1)[None].astype(np.float32) / 255.0).copy()
        out = np.asarray(self.session.run([self.output_name], {self.input_name: batch})[0], np.float32).reshape(-1, 7)
        out = out[out[:, 6] >= self.threshold]  # one image per call: every row is this frame's
        boxes = (out[:, 1:5] - np.array([dw, dh, dw, dh], np.float32)) / scale
        return _plates(boxes, out[:, 6], w, h)


class EgoBlurPlateDetector:
    """EgoBlur's licence-plate TorchScript model, called as EgoBlur's demo calls it.

    ``threshold``: EgoBlur's demo default is 0.9 for plates (its models score high).
    """

    kind = "plate"
    DEFAULT_THRESHOLD = 0.9

    def __init__(self, path: str | Path, threshold: float | None = None) -> None:
        try:
            import torch
        except ImportError:
            raise ModelError(
                "EgoBlur's plate model is TorchScript: it needs torch (pip install '.[diffusion]' in a clone)"
            ) from None
        try:
            self.model = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:  # noqa: BLE001 - not a TorchScript archive, or a damaged one
            raise ModelError(f"{path}: not a TorchScript module ({str(exc).splitlines()[0][:160]})") from None
        self._torch = torch
        self.threshold = self.DEFAULT_THRESHOLD if threshold is None else threshold

    def detect(self, image: np.ndarray) -> sv.Detections:
        torch = self._torch
        h, w = image.shape[:2]
        bgr = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))
        with torch.no_grad():
            result = self.model(torch.from_numpy(bgr))
        try:
            boxes, _labels, scores, _size = result
        except (TypeError, ValueError):
            raise ModelError("EgoBlur's plate model must return (boxes, labels, scores, image size)") from None
        boxes, scores = boxes.detach().float().cpu().numpy().reshape(-1, 4), scores.detach().float().cpu().numpy().reshape(-1)
        det = _plates(boxes, scores, w, h)
        det = det.with_nms(threshold=EGOBLUR_NMS_IOU) if len(det) > 1 else det
        return det[det.confidence > self.threshold]


PLATE_LOADERS = {"onnx-plates-yolo-v9": OnnxPlateDetector, "torchscript-egoblur-lp": EgoBlurPlateDetector}


def load_plate_model(kind: str, folder: Path, threshold: float | None = None):  # noqa: ANN201 - a Detector
    """The detector of a manifest entry of ``kind`` whose files are in ``folder``
    (what ``camstream models import|check`` load to check a file)."""
    return PLATE_LOADERS[kind](model_file(kind, folder), threshold)


def build_plate_detector(name: str, models_dir: str | None, threshold: float | None = None, offline: bool | None = None):  # noqa: ANN201
    """The plate detector of manifest entry ``name`` (``detection.plate_model``)."""
    entry, folder = find_model(name, models_dir, "plates", PLATE_LOADERS, offline)
    return load_plate_model(entry.kind, folder, threshold)
