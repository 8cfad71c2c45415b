"""The random detectors ``make-tiny`` writes for ``--detect plates, persons``, in their
publishers' exact formats, so the tests and ``models check`` go through the loaders real
files go through (tracking/plates.py, tracking/persons.py):

* ``plate_yolo_v9_t_384``: an ONNX file shaped like open-image-models' releases
  (``yolo-v9-t-384-license-plates-end2end.onnx``): input ``images`` float32
  ``[batch, 3, S, S]``, output ``output`` float32 ``[N, 7]`` = (batch, x1, y1, x2, y2, class,
  score), NMS inside the graph (the "end2end" export). Its head is a random convolution, or,
  for the tests' synthetic plates, a fixed colour filter that scores each 8 px cell by its
  share of plate-yellow pixels (boxes that are known in advance: the plumbing around a
  detector can be checked, not a real model's recall). Written with the ``onnx`` package.
* ``egoblur_lp``: a scripted random module with EgoBlur's call signature.
* ``rtdetr_r50vd``: a tiny ``RTDetrForObjectDetection`` with COCO's first labels.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SIZE = 384  # the input side of plate_yolo_v9_t_384
CELL = 8  # the colour head's cell, in network pixels
ONNX_NAME = "yolo-v9-t-384-license-plates-end2end.onnx"
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


def rtdetr(folder: Path, seed: int = 0, tiny: bool = True) -> Path:
    """RT-DETR with random weights and COCO's labels (``person`` is 0, as in PekingU's
    configs), in the folder layout the hub ships. ``tiny=False``: transformers' default
    ``RTDetrConfig``, documented as PekingU/rtdetr_r50vd's architecture (about 43 M weights)."""
    import torch
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrImageProcessor, RTDetrResNetConfig

    torch.manual_seed(seed)
    names = COCO if tiny else COCO + [f"LABEL_{i}" for i in range(len(COCO), 80)]  # 80 classes, as the checkpoint
    labels = dict(enumerate(names))
    small = {}
    if tiny:
        backbone = RTDetrResNetConfig(
            embedding_size=16,
            hidden_sizes=[16, 32, 64, 128],
            depths=[1, 1, 1, 1],
            layer_type="basic",
            out_features=["stage2", "stage3", "stage4"],
        )
        small = {
            "backbone_config": backbone,
            "encoder_in_channels": [32, 64, 128],
            "d_model": 32,
            "encoder_hidden_dim": 32,
            "encoder_ffn_dim": 64,
            "decoder_ffn_dim": 64,
            "decoder_layers": 1,
            "num_queries": 30,
            "encoder_attention_heads": 2,
            "decoder_attention_heads": 2,
            "decoder_in_channels": [32, 32, 32],
        }
    config = RTDetrConfig(id2label=labels, label2id={v: k for k, v in labels.items()}, **small)
    RTDetrForObjectDetection(config).eval().save_pretrained(str(folder), safe_serialization=True)
    RTDetrImageProcessor().save_pretrained(str(folder))
    return folder


def make_tiny_detectors(root: Path, seed: int = 0) -> None:
    """The plate and person detectors of the manifest's ``plates`` and ``persons`` sections."""
    yolo_v9_end2end(root / "plate_yolo_v9_t_384" / ONNX_NAME, seed=seed)
    egoblur_lp(root / "egoblur_lp" / "ego_blur_lp.jit", seed=seed)
    rtdetr(root / "rtdetr_r50vd", seed=seed)
