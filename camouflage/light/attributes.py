"""Per-face attributes for Light's conditioning.

* :class:`FaRLEncoder` — FaRL's visual encoder (``transformers.CLIPVisionModelWithProjection``
  mapped at load time from FaRL's published ``.pth``, see :mod:`camouflage.models.farl`). Its projected
  embedding feeds the trained Light IP-Adapter.
* :class:`FacerAttributeModel` — FACER's face-attribute model, built with pyfacer from
  FACER's published ``face_attribute.farl.celeba.pt`` (see :mod:`.facer`, :mod:`camouflage.models.facer`): 40 CelebA
  attribute probabilities (sigmoid, multi-label) of the face aligned on its 5 landmarks.
* :func:`face_keypoints` (from :mod:`.facer`) — the 5 keypoints of a face: the detector's landmarks when
  present, else the standard 5-point template placed in the box.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn
from transformers import CLIPVisionModelWithProjection

from ..video.compositor import square_crop
from .facer import CLIP_MEAN, CLIP_STD, KEYPOINT_TEMPLATE, FacerAttributeModel, face_keypoints  # noqa: F401 - re-exported

# The 40 CelebA attributes, in CelebA's (and FACER's) order.
CELEBA_ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow", "Arched_Eyebrows", "Attractive", "Bags_Under_Eyes", "Bald", "Bangs",
    "Big_Lips", "Big_Nose", "Black_Hair", "Blond_Hair", "Blurry", "Brown_Hair", "Bushy_Eyebrows",
    "Chubby", "Double_Chin", "Eyeglasses", "Goatee", "Gray_Hair", "Heavy_Makeup", "High_Cheekbones",
    "Male", "Mouth_Slightly_Open", "Mustache", "Narrow_Eyes", "No_Beard", "Oval_Face", "Pale_Skin",
    "Pointy_Nose", "Receding_Hairline", "Rosy_Cheeks", "Sideburns", "Smiling", "Straight_Hair",
    "Wavy_Hair", "Wearing_Earrings", "Wearing_Hat", "Wearing_Lipstick", "Wearing_Necklace",
    "Wearing_Necktie", "Young",
)
NUM_ATTRIBUTES = len(CELEBA_ATTRIBUTES)

def face_crops(image: np.ndarray, boxes: list[np.ndarray], size: int, margin: float = 0.2) -> torch.Tensor:
    """Square crops around ``boxes`` (enlarged by ``margin``), CLIP-normalised, (N, 3, size, size).

    Crops that leave the image are padded with the edge, so a face at the border keeps its scale.
    """
    out = []
    for box in boxes:
        x1, y1, x2, y2 = (float(v) for v in box)
        half = max(x2 - x1, y2 - y1, 2.0) * (0.5 + margin)
        out.append(square_crop(image, (x1 + x2) / 2 - half, (y1 + y2) / 2 - half, 2 * half, size))
    if not out:
        return torch.zeros(0, 3, size, size)
    batch = torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
    return (batch - mean) / std


class FaRLEncoder(nn.Module):
    """FaRL's image encoder: ``encode(pixels) -> (N, projection_dim)`` embeddings."""

    def __init__(self, model: CLIPVisionModelWithProjection) -> None:
        super().__init__()
        self.model = model

    @property
    def image_size(self) -> int:
        return self.model.config.image_size

    @property
    def embed_dim(self) -> int:
        return self.model.config.projection_dim

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        p = next(self.model.parameters())
        return self.model(pixel_values=pixels.to(p.device, p.dtype)).image_embeds

    def embed_faces(self, image: np.ndarray, boxes: list[np.ndarray]) -> torch.Tensor:
        return self.encode(face_crops(image, boxes, self.image_size))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FaRLEncoder:
        """``path``: the folder holding FaRL's published ``.pth``."""
        from ..models.farl import load_farl_vision

        return cls(load_farl_vision(path))


@dataclass
class FaceAttributes:
    """What Light knows about one face of a frame, in that frame's pixels."""

    box: np.ndarray  # xyxy float32
    probabilities: np.ndarray  # (40,) CelebA attribute probabilities
    keypoints: np.ndarray  # (5, 2)
    embedding: torch.Tensor | None = None  # FaRL embedding of the original face (negative identity)


__all__ = ["CELEBA_ATTRIBUTES", "FaRLEncoder", "FaceAttributes", "FacerAttributeModel", "face_crops", "face_keypoints"]


class AttributeExtractor:
    """FACER attributes + keypoints (+ optional FaRL embeddings) for the faces of a frame."""

    def __init__(self, attributes: FacerAttributeModel, farl: FaRLEncoder | None = None) -> None:
        self.attributes = attributes
        self.farl = farl

    def __call__(self, image: np.ndarray, boxes: list[np.ndarray], landmarks: list[np.ndarray | None] | None = None,
                 embeddings: bool = False) -> list[FaceAttributes]:
        landmarks = landmarks if landmarks is not None else [None] * len(boxes)
        probs = self.attributes.predict_faces(image, boxes, landmarks)
        embeds = self.farl.embed_faces(image, boxes) if embeddings and self.farl is not None and boxes else None
        return [
            FaceAttributes(
                box=np.asarray(b, np.float32), probabilities=probs[i], keypoints=face_keypoints(b, landmarks[i]),
                embedding=None if embeds is None else embeds[i],
            )
            for i, b in enumerate(boxes)
        ]
