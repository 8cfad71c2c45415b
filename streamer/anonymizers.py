"""Anonymizers replace the regions of a frame. The classical ones here are also the
fail-closed fallback of the diffusion methods: whatever a generator fails to deliver
in time, one of these covers.

Measured (README, ``camstream eval``): a Gaussian blur of sigma 6 leaves a face
re-identifiable by a face-recognition network, so ``blur`` here scales its sigma
with the face (default: a quarter of the face size) and the fallback is ``solid``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np

from tracking.tracker import Region, enlarge

from .frame import Frame


class Anonymizer(Protocol):
    name: str

    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame: Frame | None = None) -> np.ndarray:
        """Return a copy of ``image`` (or ``image`` itself, modified) with every region replaced."""
        ...


@dataclass(frozen=True)
class Shape:
    """The area covered around a region's box: ellipse or box, enlarged by ``margin``."""

    kind: str = "ellipse"  # "ellipse" | "box"
    margin: float = 0.25  # of the box's width/height, on every side
    min_margin_px: float = 4.0  # tiny CCTV faces: a fraction of 8 px is not enough

    def grown(self, box: np.ndarray) -> np.ndarray:
        x1, y1, x2, y2 = enlarge(box, self.margin)
        pad_x = max(0.0, self.min_margin_px - (x2 - x1 - (box[2] - box[0])) / 2)
        pad_y = max(0.0, self.min_margin_px - (y2 - y1 - (box[3] - box[1])) / 2)
        return np.array([x1 - pad_x, y1 - pad_y, x2 + pad_x, y2 + pad_y], np.float32)

    def bounds(self, box: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
        return self._bounds(self.grown(box), width, height)

    @staticmethod
    def _bounds(grown: np.ndarray, width: int, height: int) -> tuple[int, int, int, int] | None:
        x1, y1, x2, y2 = (float(v) for v in grown)
        ix1, iy1 = max(0, math.floor(x1)), max(0, math.floor(y1))
        ix2, iy2 = min(width, math.ceil(x2)), min(height, math.ceil(y2))
        if ix2 <= ix1 or iy2 <= iy1:
            return None
        return ix1, iy1, ix2, iy2

    def mask(self, box: np.ndarray, width: int, height: int) -> tuple[tuple[int, int, int, int], np.ndarray] | None:
        """The crop bounds and a boolean mask of the covered pixels inside them."""
        grown = self.grown(box)
        b = self._bounds(grown, width, height)
        if b is None:
            return None
        ix1, iy1, ix2, iy2 = b
        if self.kind == "box":
            return b, np.ones((iy2 - iy1, ix2 - ix1, 1), bool)
        mask = np.zeros((iy2 - iy1, ix2 - ix1), np.uint8)
        x1, y1, x2, y2 = (float(v) for v in grown)
        # The ellipse inscribed in the enlarged box; its extent is the whole box, so
        # an ellipse covers at least the original box plus (margin - 0.207) on each side.
        center = ((x1 + x2) / 2 - ix1, (y1 + y2) / 2 - iy1)
        axes = ((x2 - x1) / 2, (y2 - y1) / 2)
        cv2.ellipse(mask, (round(center[0] * 16), round(center[1] * 16)),
                    (max(1, round(axes[0] * 16)), max(1, round(axes[1] * 16))), 0, 0, 360, 1, -1, cv2.LINE_8, 4)
        return b, mask.astype(bool)[:, :, None]


class _ClassicalAnonymizer:
    name = "classical"

    def __init__(self, shape: Shape | None = None) -> None:
        self.shape = shape or Shape()

    def anonymize(self, image: np.ndarray, regions: Sequence[Region], frame: Frame | None = None) -> np.ndarray:
        h, w = image.shape[:2]
        for region in regions:
            m = self.shape.mask(region.box, w, h)
            if m is None:
                continue
            (x1, y1, x2, y2), mask = m
            crop = image[y1:y2, x1:x2]
            np.copyto(crop, self.cover(crop, region), where=mask)
        return image

    def cover(self, crop: np.ndarray, region: Region) -> np.ndarray:
        raise NotImplementedError


class SolidAnonymizer(_ClassicalAnonymizer):
    """A flat colour: the strongest classical cover (nothing of the face survives)."""

    name = "solid"

    def __init__(self, shape: Shape | None = None, color: tuple[int, int, int] = (0, 0, 0)) -> None:
        super().__init__(shape)
        self.color = np.array(color, np.uint8)

    def cover(self, crop: np.ndarray, region: Region) -> np.ndarray:
        return np.broadcast_to(self.color, crop.shape)


class PixelateAnonymizer(_ClassicalAnonymizer):
    """Mosaic with ``blocks`` cells across the face's longer side (few cells: strong)."""

    name = "pixelate"

    def __init__(self, shape: Shape | None = None, blocks: int = 6, min_block_px: int = 10) -> None:
        super().__init__(shape)
        self.blocks = max(1, blocks)
        self.min_block_px = min_block_px  # tiny faces: 6 cells of 2 px still look like a face (measured on vtest)

    def cover(self, crop: np.ndarray, region: Region) -> np.ndarray:
        h, w = crop.shape[:2]
        scale = min(self.blocks / max(h, w), 1.0 / self.min_block_px)
        small = cv2.resize(crop, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


class BlurAnonymizer(_ClassicalAnonymizer):
    """Gaussian blur whose sigma grows with the face: ``sigma = strength x face size``."""

    name = "blur"

    def __init__(self, shape: Shape | None = None, strength: float = 0.25) -> None:
        super().__init__(shape)
        self.strength = strength

    def cover(self, crop: np.ndarray, region: Region) -> np.ndarray:
        h, w = crop.shape[:2]
        sigma = max(2.0, self.strength * max(h, w))
        # Blur a downscaled copy: the same result for large sigmas, at a fraction of the cost.
        factor = max(1, int(sigma // 4))
        small = cv2.resize(crop, (max(1, w // factor), max(1, h // factor)), interpolation=cv2.INTER_AREA)
        small = cv2.GaussianBlur(small, (0, 0), sigma / factor, borderType=cv2.BORDER_REPLICATE)
        return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


class ImageAnonymizer(_ClassicalAnonymizer):
    """A picture (``--replace-with``) stretched over each face's covered area; opaque,
    so nothing of the face shows through."""

    name = "image"

    def __init__(self, shape: Shape | None = None, image: np.ndarray | None = None) -> None:
        super().__init__(shape)
        if image is None or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError("ImageAnonymizer needs an RGB image")
        self.image = image

    def cover(self, crop: np.ndarray, region: Region) -> np.ndarray:
        h, w = crop.shape[:2]
        return cv2.resize(self.image, (w, h), interpolation=cv2.INTER_AREA)


def load_replacement(path: str) -> np.ndarray:
    """The ``--replace-with`` image as RGB; an alpha channel is dropped (a see-through
    picture would let the face show)."""
    from .errors import InputError

    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise InputError(f"{path}: --replace-with needs an image OpenCV can read")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


CLASSICAL = {"solid": SolidAnonymizer, "pixelate": PixelateAnonymizer, "blur": BlurAnonymizer, "image": ImageAnonymizer}


def cover_frame(image: np.ndarray) -> np.ndarray:
    """Last resort when a frame cannot be checked (detector error): cover all of it."""
    image[:] = 0
    return image
