"""FACER's 40 CelebA attributes for the faces of an image: the attribute net read from FACER's
published file (camouflage/models/facer.py) run on each face aligned on its 5 landmarks to
224 px (``facer.face_attribute.farl``: ``get_face_align_matrix`` to FACER's standard points,
then a plain crop through ``make_tanh_warp_grid(warp_factor=0)``), CLIP-normalised. Our
detector's 5 landmarks (eyes, nose, mouth corners: RetinaFace's order, which FACER uses) feed it.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..blind import KEYPOINT_TEMPLATE, face_keypoints  # noqa: F401 - re-exported: the 5 points FACER aligns on
from ..models.facer import _facer, load_attribute_net

# CLIP's normalisation, which FaRL keeps.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


class FacerAttributeModel(nn.Module):
    """FACER's 40 CelebA attributes for the faces of an image (sigmoid probabilities)."""

    def __init__(self, net: nn.Module, resolution: int) -> None:
        super().__init__()
        self.net, self.resolution = net, resolution
        f = _facer()
        self._align, self._grid = f["align"], f["grid"]
        self._target = f["std_points"](out_size=resolution, mid_size=500)  # FACER's standard points, scaled

    @property
    def image_size(self) -> int:
        return self.resolution

    @classmethod
    def from_pretrained(cls, path: str | Path) -> FacerAttributeModel:
        """``path``: the folder holding ``face_attribute.farl.celeba.pt`` (or the file)."""
        return cls(*load_attribute_net(path))

    def aligned(self, image: np.ndarray, points: np.ndarray) -> torch.Tensor:
        """FACER's input: each face warped onto its standard 5 points, (N, 3, S, S), CLIP-normalised."""
        p = next(self.parameters())
        h, w = image.shape[:2]
        pixels = torch.from_numpy(np.array(image)).permute(2, 0, 1)[None].float().div(255).to(p.device)
        pts = torch.as_tensor(np.asarray(points, np.float32), device=p.device)
        matrix = self._align(pts, target_shape=(self.resolution, self.resolution), target_pts=self._target.to(p.device))
        grid = self._grid(matrix=matrix, warp_factor=0.0, warped_shape=(self.resolution, self.resolution), orig_shape=(h, w))
        warped = torch.nn.functional.grid_sample(pixels.expand(len(pts), -1, -1, -1), grid, mode="bilinear",
                                                 align_corners=False)
        mean = torch.tensor(CLIP_MEAN, device=p.device).view(1, 3, 1, 1)
        std = torch.tensor(CLIP_STD, device=p.device).view(1, 3, 1, 1)
        return ((warped - mean) / std).to(p.dtype)

    @torch.no_grad()
    def probabilities(self, pixels: torch.Tensor) -> torch.Tensor:
        """(N, 40) for aligned, CLIP-normalised faces."""
        p = next(self.parameters())
        return torch.sigmoid(self.net(pixels.to(p.device, p.dtype))).float()

    def predict_faces(self, image: np.ndarray, boxes: list[np.ndarray],
                      landmarks: list[np.ndarray | None] | None = None) -> np.ndarray:
        """(N, 40) probabilities for the faces at ``boxes`` (aligned on ``landmarks``; a face
        without them on the 5-point template placed in its box)."""
        if not len(boxes):
            return np.zeros((0, 40), np.float32)
        landmarks = landmarks if landmarks is not None else [None] * len(boxes)
        points = np.stack([face_keypoints(b, lm) for b, lm in zip(boxes, landmarks, strict=True)])
        return self.probabilities(self.aligned(image, points)).cpu().numpy()
