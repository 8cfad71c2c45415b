"""Plate and person detectors in their publishers' exact formats, built for the tests.

* :func:`yolo_v9_end2end` writes an ONNX file shaped like open-image-models' releases
  (``yolo-v9-t-384-license-plates-end2end.onnx``): input ``images`` float32
  ``[batch, 3, S, S]``, output ``output`` float32 ``[N, 7]`` = (batch, x1, y1, x2, y2, class,
  score), NMS inside the graph. Its head is either a random convolution (``"random"``: any
  weights must load and run) or a fixed colour filter that scores each 8 px cell by its
  share of plate-yellow pixels (``"yellow"``: boxes that are known, to test the plumbing
  around the detector on synthetic plates; a real model's recall is another matter).
* :func:`egoblur_lp` scripts a random module with EgoBlur's call signature.
* :func:`rtdetr_r50vd` saves transformers' RT-DETR R50-vd configuration (the documented
  default of ``RTDetrConfig``) with COCO's labels and random weights.
* :func:`plate_clip` renders yellow plates onto shared footage at several sizes and angles.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from media import make_media

SIZE = 384  # the input side of the default entry, plate_yolo_v9_t_384
CELL = 8  # the yellow head's cell, in network pixels
YELLOW = (250, 210, 20)  # RGB; UK rear plates are this colour
COCO = ["person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light"]


def yolo_v9_end2end(path: Path, head: str = "random", size: int = SIZE, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(seed)
    nodes, inits = [], []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    g = size // CELL
    if head == "random":
        # a random convolution: 5 numbers per cell -> two corners and a score
        const("w", rng.normal(0, 0.05, (5, 3, CELL, CELL)).astype(np.float32))
        const("b", rng.normal(0, 1, 5).astype(np.float32))
        nodes.append(helper.make_node("Conv", ["images", "w", "b"], ["raw"], strides=[CELL, CELL]))
        const("shape_5g", np.array([5, g * g], np.int64))
        nodes += [helper.make_node("Reshape", ["raw", "shape_5g"], ["flat"]), helper.make_node("Sigmoid", ["flat"], ["sig"])]
        const("scale", np.array([[size], [size], [size], [size], [1]], np.float32))
        nodes.append(helper.make_node("Mul", ["sig", "scale"], ["vals"]))
        const("split5", np.array([1, 1, 1, 1, 1], np.int64))
        nodes.append(helper.make_node("Split", ["vals", "split5"], ["a", "b_", "c", "d", "score_row"], axis=0))
        nodes += [
            helper.make_node("Min", ["a", "c"], ["x1"]),
            helper.make_node("Min", ["b_", "d"], ["y1"]),
            helper.make_node("Max", ["a", "c"], ["x2"]),
            helper.make_node("Max", ["b_", "d"], ["y2"]),
            helper.make_node("Concat", ["x1", "y1", "x2", "y2"], ["corners"], axis=0),
            helper.make_node("Transpose", ["corners"], ["cell_boxes"], perm=[1, 0]),
        ]
    elif head == "yellow":
        # plate-yellow (R + G - 2B > 1.2), a near step, averaged over each cell
        const("w", np.array([1, 1, -2], np.float32).reshape(1, 3, 1, 1) * 40)
        const("b", np.array([-1.2 * 40], np.float32))
        nodes += [
            helper.make_node("Conv", ["images", "w", "b"], ["logit"]),
            helper.make_node("Sigmoid", ["logit"], ["mask"]),
            helper.make_node("AveragePool", ["mask"], ["share"], kernel_shape=[CELL, CELL], strides=[CELL, CELL]),
        ]
        const("shape_1g", np.array([1, g * g], np.int64))
        nodes.append(helper.make_node("Reshape", ["share", "shape_1g"], ["score_row"]))
        ys, xs = np.mgrid[0:g, 0:g].reshape(2, -1) * CELL
        const("cell_boxes", np.stack([xs, ys, xs + CELL, ys + CELL], 1).astype(np.float32))
    else:
        raise ValueError(head)
    # end2end: NMS in the graph, then (batch, x1, y1, x2, y2, class, score) per kept box
    const("shape_b", np.array([1, g * g, 4], np.int64))
    const("shape_s", np.array([1, 1, g * g], np.int64))
    const("max_out", np.array([300], np.int64))
    const("iou", np.array([0.45], np.float32))
    const("min_score", np.array([0.001], np.float32))
    const("col0", np.array([0], np.int64))
    const("col2", np.array([2], np.int64))
    const("scores_1d", np.array([g * g], np.int64))
    nodes += [
        helper.make_node("Reshape", ["cell_boxes", "shape_b"], ["boxes3"]),
        helper.make_node("Reshape", ["score_row", "shape_s"], ["scores3"]),
        helper.make_node("NonMaxSuppression", ["boxes3", "scores3", "max_out", "iou", "min_score"], ["selected"]),
        helper.make_node("Gather", ["selected", "col2"], ["idx2"], axis=1),
        helper.make_node("Squeeze", ["idx2", "col0_axes"], ["idx"]),
        helper.make_node("Gather", ["selected", "col0"], ["batch_i"], axis=1),
        helper.make_node("Cast", ["batch_i"], ["batch_f"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["cell_boxes", "idx"], ["kept_boxes"], axis=0),
        helper.make_node("Reshape", ["score_row", "scores_1d"], ["scores_flat"]),
        helper.make_node("Gather", ["scores_flat", "idx"], ["kept_scores_1d"], axis=0),
        helper.make_node("Unsqueeze", ["kept_scores_1d", "col1_axes"], ["kept_scores"]),
        helper.make_node("Mul", ["kept_scores", "zero"], ["cls"]),
        helper.make_node("Concat", ["batch_f", "kept_boxes", "cls", "kept_scores"], ["output"], axis=1),
    ]
    const("col0_axes", np.array([1], np.int64))
    const("col1_axes", np.array([1], np.int64))
    const("zero", np.array(0, np.float32))
    graph = helper.make_graph(
        nodes,
        f"yolo-v9-{head}",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 3, size, size])],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, ["N", 7])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def egoblur_lp(path: Path, seed: int = 0) -> Path:
    """A scripted random module called like EgoBlur's: uint8 [3, H, W] BGR -> (boxes, labels, scores, size)."""
    import torch

    class LicencePlates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.head = torch.nn.Conv2d(3, 5, kernel_size=16, stride=16)

        def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
            h, w = image.shape[1], image.shape[2]
            raw = torch.sigmoid(self.head(image.float().unsqueeze(0) / 255.0))[0].flatten(1)
            xs, ys = raw[0:2] * w, raw[2:4] * h
            boxes = torch.stack([xs.min(0).values, ys.min(0).values, xs.max(0).values, ys.max(0).values], 1)
            labels = torch.zeros(boxes.shape[0], dtype=torch.int64)
            return boxes, labels, raw[4], torch.tensor([h, w])

    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.script(LicencePlates().eval()).save(str(path))
    return path


def rtdetr_r50vd(folder: Path, seed: int = 0) -> Path:
    import torch
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor

    torch.manual_seed(seed)
    labels = COCO + [f"class_{i}" for i in range(len(COCO), 80)]
    config = RTDetrConfig(id2label=dict(enumerate(labels)), label2id={v: k for k, v in enumerate(labels)})
    RTDetrForObjectDetection(config).eval().save_pretrained(str(folder), safe_serialization=True)
    RTDetrImageProcessor().save_pretrained(str(folder))
    return folder


def draw_plate(frame: np.ndarray, centre: tuple[float, float], width: int, angle: float) -> np.ndarray:
    """A yellow plate with black characters, turned by ``angle`` degrees, drawn in place;
    returns the mask of its pixels."""
    h = max(4, round(width * 0.22))  # EU plates are 520 x 112 mm
    plate = np.zeros((h, width, 3), np.uint8)
    plate[:] = YELLOW
    cv2.putText(
        plate,
        "AB12 CDE",
        (round(width * 0.06), round(h * 0.78)),
        cv2.FONT_HERSHEY_SIMPLEX,
        h / 34,
        (0, 0, 0),
        max(1, h // 12),
        cv2.LINE_AA,
    )
    m = cv2.getRotationMatrix2D((width / 2, h / 2), angle, 1.0)
    m[:, 2] += np.array(centre) - (width / 2, h / 2)
    size = (frame.shape[1], frame.shape[0])
    warped = cv2.warpAffine(plate, m, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((h, width), 255, np.uint8), m, size, flags=cv2.INTER_NEAREST) > 0
    frame[mask] = warped[mask]
    return mask


PLATES = ((120, 0.0), (70, 12.0), (44, -20.0))  # width in px, angle in degrees: several sizes and angles


def plate_clip(source: Path, path: Path, frames: int = 24) -> tuple[Path, list[list[np.ndarray]]]:
    """``frames`` frames of ``source`` with :data:`PLATES` drawn, each moving 3 px per frame;
    returns the clip and, per frame, the mask of each plate."""
    from conftest import read_frames

    out, masks = [], []
    for i, frame in enumerate(read_frames(source, frames)):
        frame = frame.copy()
        h, w = frame.shape[:2]
        masks.append(
            [
                draw_plate(frame, (w * (0.2 + 0.3 * k) + 3 * i, h * (0.3 + 0.25 * k)), width, angle)
                for k, (width, angle) in enumerate(PLATES)
            ]
        )
        out.append(frame)
    return make_media(path, out), masks
