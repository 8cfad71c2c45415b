"""Persons with a transformers object detector (RT-DETR / D-FINE, Apache-2.0 weights).

The permissive alternative to Ultralytics YOLO (AGPL-3.0, ``camstream[yolo]``): a hub
checkpoint in the manifest (``configs/models.yaml``, section ``persons``), loaded with
``AutoModelForObjectDetection`` and its own image processor from the folder the hub ships
(``config.json``, ``model.safetensors``, ``preprocessor_config.json``). The person class is
found by its label in the config (``id2label``: COCO's ``person``), not by a number.
Needs torch and transformers (the diffusion extra).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import supervision as sv

from streamer.errors import ModelError

from .classes import PERSON, find_model


class TransformersPersonDetector:
    """Persons from a transformers object-detection checkpoint folder."""

    kind = "person"

    def __init__(self, folder: str | Path, threshold: float = 0.35) -> None:
        try:
            import torch
            from transformers import AutoImageProcessor, AutoModelForObjectDetection
        except ImportError:
            raise ModelError(
                "person detection with RT-DETR needs torch and transformers: pip install '.[diffusion]' in a clone"
            ) from None
        self.processor = AutoImageProcessor.from_pretrained(str(folder))
        self.model = AutoModelForObjectDetection.from_pretrained(str(folder)).eval()
        labels = {str(v).lower(): int(k) for k, v in self.model.config.id2label.items()}
        if "person" not in labels:
            raise ModelError(f"{folder}: the model has no 'person' label (id2label: {list(labels)[:5]}...)")
        self.label, self.threshold, self._torch = labels["person"], threshold, torch

    def detect(self, image: np.ndarray) -> sv.Detections:
        """Every query whose person score passes the threshold. Scores are read per class
        (sigmoid, as RT-DETR and D-FINE are trained) rather than through the processor's
        post-processing, which keeps only the top queries over all classes: a person
        scored under a car in the same query would be dropped there."""
        h, w = image.shape[:2]
        inputs = self.processor(images=image, return_tensors="pt")
        with self._torch.no_grad():
            outputs = self.model(**inputs)
        scores = outputs.logits[0, :, self.label].sigmoid().float().cpu().numpy()
        cx, cy, bw, bh = outputs.pred_boxes[0].float().cpu().numpy().T  # relative centre and size
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1) * np.array([w, h, w, h], np.float32)
        keep = scores >= self.threshold
        boxes = boxes[keep].clip(0, [w, h, w, h]).astype(np.float32)
        return sv.Detections(xyxy=boxes, confidence=scores[keep].astype(np.float32), class_id=np.full(len(boxes), PERSON, int))


PERSON_LOADERS = {"transformers-object-detection": TransformersPersonDetector}


def build_person_detector(name: str, models_dir: str | None, threshold: float, offline: bool | None = None):  # noqa: ANN201
    """The person detector of manifest entry ``name`` (``detection.person_model``)."""
    entry, folder = find_model(name, models_dir, "persons", PERSON_LOADERS, offline)
    return PERSON_LOADERS[entry.kind](folder, threshold)
