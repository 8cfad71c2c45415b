"""Crops in, generated crops back: the geometry shared by the video method's generators.

A region's crop is a square around its box (``context`` of the box size on every side,
at least 1.25x the covered shape), resampled to the model resolution; outside the
frame the edge is repeated. The generated crop goes back through a feathered alpha:
1 over the covered shape (``streamer.anonymizers.Shape``: the same area the classical
methods cover), falling off over the band between that shape and the crop's edge.
Pixels where alpha is 0 are not written at all, so everything outside the feathered
mask stays bit-identical. Before blending, the generated crop's colour is matched to
the frame around it: its mean over the band outside the covered shape is shifted to
the original's mean there (the band is background and hair, never the face itself).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from streamer.anonymizers import Shape

MAX_COLOUR_SHIFT = 48.0  # per channel, 0..255: a correction, not a repaint


def square_crop(image: np.ndarray, x: float, y: float, side: float, size: int) -> np.ndarray:
    """The square ``[x, x + side) x [y, y + side)`` of ``image`` resized to ``size``; outside the
    frame the edge is repeated. Shrinking goes through INTER_AREA (warpAffine alone aliases)."""
    native = max(1, round(side))
    if native > size:  # cut at native scale first, then area-average down
        m = np.array([[native / side, 0, -x * native / side], [0, native / side, -y * native / side]], np.float32)
        cut = cv2.warpAffine(image, m, (native, native), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        return cv2.resize(cut, (size, size), interpolation=cv2.INTER_AREA)
    scale = size / side
    m = np.array([[scale, 0, -x * scale], [0, scale, -y * scale]], np.float32)
    return cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)


def feathered_alpha(hard: np.ndarray, feather: float) -> np.ndarray:
    """1 on ``hard`` and a smooth fall-off outside it (never below 1 inside)."""
    if feather <= 0:
        return hard.astype(np.float32)
    k = max(1, round(feather))
    grown = cv2.dilate(hard.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
    soft = cv2.GaussianBlur(grown.astype(np.float32), (0, 0), feather)
    return np.maximum(hard.astype(np.float32), soft)


@dataclass(frozen=True)
class CropWindow:
    """The square ``[ox, ox + side) x [oy, oy + side)`` of a frame, generated at ``resolution``."""

    ox: float
    oy: float
    side: float
    resolution: int
    band: float  # pixels between the covered shape and the crop's edge

    @property
    def scale(self) -> float:
        return self.resolution / self.side

    def crop(self, image: np.ndarray) -> np.ndarray:
        return square_crop(image, self.ox, self.oy, self.side, self.resolution)

    def in_frame(self, width: int, height: int) -> tuple[slice, slice] | None:
        """The (rows, columns) of a ``width`` x ``height`` frame the window covers; None if none."""
        x1, y1 = max(0, int(np.floor(self.ox))), max(0, int(np.floor(self.oy)))
        x2, y2 = min(width, int(np.ceil(self.ox + self.side))), min(height, int(np.ceil(self.oy + self.side)))
        return (slice(y1, y2), slice(x1, x2)) if x2 > x1 and y2 > y1 else None

    def to_crop(self, box: np.ndarray) -> np.ndarray:
        """A frame box in the generated crop's pixels."""
        s = self.scale
        return np.array([(box[0] - self.ox) * s, (box[1] - self.oy) * s, (box[2] - self.ox) * s,
                         (box[3] - self.oy) * s], np.float32)


def crop_window(box: np.ndarray, shape: Shape, resolution: int, context: float = 0.5) -> CropWindow:
    x1, y1, x2, y2 = (float(v) for v in box)
    gx1, gy1, gx2, gy2 = shape.grown(np.asarray(box, np.float32))
    covered = max(gx2 - gx1, gy2 - gy1)
    side = max(max(x2 - x1, y2 - y1, 4.0) * (1 + 2 * context), covered * 1.25)
    return CropWindow((x1 + x2) / 2 - side / 2, (y1 + y2) / 2 - side / 2, side, resolution, (side - covered) / 2)


def paste(image: np.ndarray, window: CropWindow, generated: np.ndarray, box: np.ndarray, shape: Shape,
          feather: float = 0.25, colour_match: bool = True, reference: np.ndarray | None = None) -> np.ndarray | None:
    """Blend ``generated`` (the window at model resolution) into ``image`` in place.

    Returns the covered (hard) mask over the frame-clipped window, or None when the window
    lies outside the frame. Raises if the covered shape does not fit the window: a partial
    cover must never be pasted (the caller then covers the region another way).
    ``reference``: the frame the colour match reads (identity-blind: the frame with every
    covered shape filled from context, so another face in the band cannot tint this one).
    """
    h, w = image.shape[:2]
    ox, oy, side = window.ox, window.oy, window.side
    rows_cols = window.in_frame(w, h)
    if rows_cols is None:
        return None
    (wy1, wy2), (wx1, wx2) = ((s.start, s.stop) for s in rows_cols)
    # to about the frame's scale first (area-averaged when shrinking), then place
    native = max(1, round(side))
    resized = cv2.resize(generated, (native, native),
                         interpolation=cv2.INTER_AREA if native < window.resolution else cv2.INTER_CUBIC)
    k = side / native
    to_window = np.array([[k, 0, ox - wx1], [0, k, oy - wy1]], np.float32)
    back = cv2.warpAffine(resized, to_window, (wx2 - wx1, wy2 - wy1), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE).astype(np.float32)
    hard = np.zeros((wy2 - wy1, wx2 - wx1), bool)
    m = shape.mask(np.asarray(box, np.float32), w, h)
    if m is not None:
        (bx1, by1, bx2, by2), mask = m
        if bx1 < wx1 or by1 < wy1 or bx2 > wx2 or by2 > wy2:
            raise RuntimeError("covered shape larger than its crop")
        hard[by1 - wy1:by2 - wy1, bx1 - wx1:bx2 - wx1] = mask[:, :, 0]
    target = image[wy1:wy2, wx1:wx2]
    alpha = feathered_alpha(hard, feather * window.band)
    if colour_match:
        ring = (~hard) & (alpha < 1.0)  # surroundings inside the crop: what the paste must blend into
        if ring.sum() >= 16:
            around = target if reference is None else reference[wy1:wy2, wx1:wx2]
            shift = around[ring].astype(np.float32).mean(0) - back[ring].mean(0)
            back += np.clip(shift, -MAX_COLOUR_SHIFT, MAX_COLOUR_SHIFT)
    a = alpha[:, :, None]
    blended = (a * back + (1 - a) * target.astype(np.float32)).round().clip(0, 255).astype(np.uint8)
    np.copyto(target, blended, where=a > 0)  # alpha 0: untouched, bit for bit
    return hard
