"""The 41-channel conditioning map of CAMOUFLaGE-Light.

Channels 0-39: the 40 CelebA attribute probabilities of a face, painted flat over
that face's box. Channel 40: that face's keypoints, as discs of value 1.

Resolution: the map is painted at the *pixel* resolution of the generated image
(e.g. 768x768). diffusers' ``T2IAdapter`` (``full_adapter``, ``downscale_factor=8``)
pixel-unshuffles its input by 8 onto the U-Net's latent grid, so one 8x8 block of
the map feeds one latent cell of the U-Net input: the map is "at U-Net input
resolution" in the adapter's own convention.

Several faces: every pixel belongs to at most one face, so the attributes of
different people never mix. Where boxes overlap, the face with the larger box wins
(a z-buffer on box area: the larger face is the closer one in camera footage);
equal areas go to the face listed last. No face: an all-zero map, which the adapter
reads as "nothing to condition on".
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from ..models.names import MAP_CHANNELS
from .attributes import NUM_ATTRIBUTES, FaceAttributes

KEYPOINT_CHANNEL = NUM_ATTRIBUTES


def face_owner(boxes: Sequence[np.ndarray], size: tuple[int, int]) -> np.ndarray:
    """(H, W) int32: index of the face owning each pixel, -1 for none (z-buffer on box area)."""
    h, w = size
    owner = np.full((h, w), -1, np.int32)
    areas = [max(0.0, float(b[2] - b[0])) * max(0.0, float(b[3] - b[1])) for b in boxes]
    # Paint from the smallest to the largest face: the larger one overwrites.
    for i in sorted(range(len(boxes)), key=lambda k: areas[k]):
        x1, y1, x2, y2 = boxes[i]
        ix1, iy1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        ix2, iy2 = min(w, int(np.ceil(x2))), min(h, int(np.ceil(y2)))
        if ix2 > ix1 and iy2 > iy1:
            owner[iy1:iy2, ix1:ix2] = i
    return owner


def build_attribute_map(
    faces: Sequence[FaceAttributes],
    size: tuple[int, int],
    offset: tuple[float, float] = (0.0, 0.0),
    scale: float | tuple[float, float] = 1.0,
    keypoint_radius: float = 0.04,
) -> np.ndarray:
    """Paint ``faces`` into a (41, H, W) float32 map.

    Args:
        faces: attributes, boxes and keypoints in source-image pixels.
        size: (H, W) of the map, i.e. of the image that will be generated.
        offset, scale: source pixel ``p`` lands at ``(p - offset) * scale`` in the map
            (a crop's origin and resize factor; identity for a whole frame at its size).
        keypoint_radius: keypoint disc radius as a fraction of the face's longer side.
    """
    h, w = size
    sx, sy = (scale, scale) if np.isscalar(scale) else scale
    off = np.array(offset, np.float32)
    mul = np.array([sx, sy], np.float32)
    boxes = [np.concatenate([(f.box[:2] - off) * mul, (f.box[2:] - off) * mul]) for f in faces]
    out = np.zeros((MAP_CHANNELS, h, w), np.float32)
    if not faces:
        return out
    owner = face_owner(boxes, (h, w))
    for i, face in enumerate(faces):
        mine = owner == i
        if not mine.any():
            continue
        out[:NUM_ATTRIBUTES, mine] = np.asarray(face.probabilities, np.float32)[:, None]
        side = max(boxes[i][2] - boxes[i][0], boxes[i][3] - boxes[i][1])
        radius = max(1, round(keypoint_radius * side))
        dots = np.zeros((h, w), np.uint8)
        for x, y in (np.asarray(face.keypoints, np.float32) - off) * mul:
            if -radius <= x < w + radius and -radius <= y < h + radius:
                cv2.circle(dots, (round(float(x)), round(float(y))), radius, 1, -1)
        out[KEYPOINT_CHANNEL][mine & (dots > 0)] = 1.0
    return out
