"""Identity-blind conditioning: what the generator may read of a frame (the default without a
trained IDF ControlNet, ``base.conditioning`` / ``light.conditioning``: ``blind``).

Before any network looks at a frame, every covered shape (each region's box enlarged by
``anonymize.margin``, as ellipse or box: exactly the area the paste replaces and the
classical methods cover) is filled from its surroundings (:func:`fill_from_context`:
push-pull, coarse to fine, from the pixels outside the shapes only). Everything the
generator reads comes from that filled frame: the crop it starts from, the annotators'
control images, the caption, the colour match of the paste. Then, per crop:

* the covered shape starts from the identity's seeded noise (strength 1) and the
  context outside it is re-imposed at every step (the pipelines' ``mask_image``);
* depth, normal, seg and lineart are cut out inside it (their ControlNet residuals are
  zero there), so nothing constrains the face but the pose and the prompt;
* the pose is drawn from the detector's 5 landmarks (eyes, nose, mouth corners) in the
  openpose convention (:func:`draw_head_pose`), over the body keypoints OpenPose finds in
  the filled crop (Base keyframes only), never OpenPose's 70 face landmarks.

So two frames that differ only inside covered shapes give the generator the same inputs,
bit for bit, and the same output (tests/test_identity_blind.py). What reaches it from the
real face is declared: the box (position and size), the 5 landmarks and, with the trained
Light adapters, FACER's 40 attribute probabilities. numpy + OpenCV only: no torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

CONDITIONINGS = ("auto", "blind", "paper")

# openpose's body colours, in its keypoint order (controlnet-aux's util.draw_bodypose)
POSE_COLOURS = [
    (255, 0, 0),
    (255, 85, 0),
    (255, 170, 0),
    (255, 255, 0),
    (170, 255, 0),
    (85, 255, 0),
    (0, 255, 0),
    (0, 255, 85),
    (0, 255, 170),
    (0, 255, 255),
    (0, 170, 255),
    (0, 85, 255),
    (0, 0, 255),
    (85, 0, 255),
    (170, 0, 255),
    (255, 0, 255),
    (255, 0, 170),
    (255, 0, 85),
]
NOSE, NECK, RIGHT_EYE, LEFT_EYE = 0, 1, 14, 15
HEAD_KEYPOINTS = (0, 14, 15, 16, 17)  # nose, eyes, ears: drawn from the detector's landmarks instead
# (from, to, colour index) of the head's limbs in openpose's limb order
HEAD_LIMBS = ((NECK, NOSE, 12), (NOSE, RIGHT_EYE, 13), (NOSE, LEFT_EYE, 15))
STICK_WIDTH = 4  # openpose's, at the drawing's resolution

# ArcFace's 5-point template (eyes, nose, mouth corners) as fractions of a face box.
KEYPOINT_TEMPLATE = np.array(
    [[0.3154, 0.4011], [0.6846, 0.4011], [0.5000, 0.5929], [0.3492, 0.7800], [0.6508, 0.7800]], np.float32
)


def face_keypoints(box: np.ndarray, landmarks: np.ndarray | None = None) -> np.ndarray:
    """(5, 2) keypoints in image pixels: the detector's landmarks, else the template placed in the box."""
    if landmarks is not None and len(landmarks) == 5 and np.isfinite(landmarks).all():
        return np.asarray(landmarks, np.float32).reshape(5, 2)
    x1, y1, x2, y2 = np.asarray(box, np.float32)
    return KEYPOINT_TEMPLATE * np.array([x2 - x1, y2 - y1], np.float32) + np.array([x1, y1], np.float32)


def resolve_conditioning(asked: str, has_idf: bool) -> str:
    """``auto``: the paper's conditioning (img2img + IDF) when a trained IDF ControlNet is
    here, else identity-blind."""
    if asked not in CONDITIONINGS:
        from streamer.errors import ConfigError

        raise ConfigError(f"conditioning {asked!r}: use {', '.join(CONDITIONINGS)}")
    if asked == "auto":
        return "paper" if has_idf else "blind"
    return asked


def covered_mask(boxes: Sequence[np.ndarray], shape, height: int, width: int) -> np.ndarray:  # noqa: ANN001 - Shape
    """(H, W) bool: the union of the covered shapes of ``boxes`` (``streamer.anonymizers.Shape``)."""
    mask = np.zeros((height, width), bool)
    for box in boxes:
        m = shape.mask(np.asarray(box, np.float32), width, height)
        if m is not None:
            (x1, y1, x2, y2), inside = m
            mask[y1:y2, x1:x2] |= inside[:, :, 0]
    return mask


def fill_from_context(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``image`` with the pixels under ``mask`` replaced by a smooth fill computed from the
    pixels outside it only (push-pull: mask-weighted means down a pyramid, then filled back
    up from the coarsest level that knows something). A pixel under the mask never
    contributes, so the fill carries nothing of what was there."""
    if not mask.any():
        return image.copy()
    known = (~mask).astype(np.float32)
    if not known.any():  # nothing but faces: a mid grey
        out = image.copy()
        out[mask] = 127
        return out
    levels = [(image.astype(np.float32) * known[:, :, None], known)]
    while min(levels[-1][1].shape) > 1:
        acc, weight = levels[-1]
        h, w = weight.shape
        size = (max(1, (w + 1) // 2), max(1, (h + 1) // 2))
        # INTER_AREA sums each 2x2 block: weights and weighted colours halve together
        levels.append(
            (cv2.resize(acc, size, interpolation=cv2.INTER_AREA), cv2.resize(weight, size, interpolation=cv2.INTER_AREA))
        )
    acc, weight = levels[-1]
    colour = acc / np.maximum(weight, 1e-12)[..., None] if acc.ndim == 3 else acc / np.maximum(weight, 1e-12)
    for acc, weight in reversed(levels[:-1]):
        h, w = weight.shape
        up = cv2.resize(colour, (w, h), interpolation=cv2.INTER_LINEAR)
        here = acc / np.maximum(weight, 1e-12)[:, :, None]
        trust = np.clip(weight, 0.0, 1.0)[:, :, None]  # 1: fully known at this level
        colour = trust * here + (1 - trust) * up
    out = image.copy()
    out[mask] = np.clip(colour[mask], 0, 255).round().astype(np.uint8)
    return out


def blind_frame(image: np.ndarray, boxes: Sequence[np.ndarray], shape) -> tuple[np.ndarray, np.ndarray]:  # noqa: ANN001
    """(the frame with every covered shape filled from its context, the covered mask)."""
    mask = covered_mask(boxes, shape, *image.shape[:2])
    return fill_from_context(image, mask), mask


def shape_in_crop(box: np.ndarray, shape, ox: float, oy: float, scale: float, size: int) -> np.ndarray:  # noqa: ANN001
    """(size, size) bool: ``box``'s covered shape in a crop whose pixel (u, v) is frame point
    ((u, v) / scale + (ox, oy)), not clipped to the frame (the crop repeats the edge there)."""
    x1, y1, x2, y2 = (np.asarray(shape.grown(np.asarray(box, np.float32)), np.float64) - [ox, oy, ox, oy]) * scale
    mask = np.zeros((size, size), np.uint8)
    if shape.kind == "box":
        ix1, iy1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
        ix2, iy2 = min(size, int(np.ceil(x2))), min(size, int(np.ceil(y2)))
        mask[iy1:iy2, ix1:ix2] = 1
    else:
        centre = (round((x1 + x2) / 2 * 16), round((y1 + y2) / 2 * 16))
        axes = (max(1, round((x2 - x1) / 2 * 16)), max(1, round((y2 - y1) / 2 * 16)))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_8, 4)
    return mask.astype(bool)


# -- the pose, in openpose's drawing convention -----------------------------------------------


def _limb(canvas: np.ndarray, a: np.ndarray, b: np.ndarray, colour: tuple[int, int, int]) -> None:
    mid = (a + b) / 2
    length = float(np.hypot(*(a - b)))
    angle = float(np.degrees(np.arctan2(a[1] - b[1], a[0] - b[0])))
    poly = cv2.ellipse2Poly((int(mid[0]), int(mid[1])), (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1)
    cv2.fillConvexPoly(canvas, poly, [int(c * 0.6) for c in colour])


def head_keypoints(landmarks: np.ndarray) -> dict[int, np.ndarray]:
    """Openpose body keypoints (nose, eyes, an estimated neck) from 5 face landmarks (eyes,
    nose, mouth corners, in any left/right order): the eye on the image's left is the
    person's right eye, as openpose names them for a face turned to the camera."""
    lm = np.asarray(landmarks, np.float32).reshape(5, 2)
    eyes = sorted(lm[:2], key=lambda p: float(p[0]))
    mouth = lm[3:5].mean(0)
    down = mouth - (eyes[0] + eyes[1]) / 2  # eyes to mouth: the face's own vertical
    return {NOSE: lm[2], RIGHT_EYE: eyes[0], LEFT_EYE: eyes[1], NECK: mouth + 2.5 * down}


def draw_head_pose(canvas: np.ndarray, landmarks: np.ndarray, neck: np.ndarray | None = None) -> np.ndarray:
    """Draw one face's 5 landmarks onto an openpose canvas (uint8 RGB, in place): nose, eyes
    and neck as openpose's body keypoints and limbs, the mouth corners as its white face
    dots. ``neck``: the body's own (OpenPose on the context), else estimated from the face."""
    points = head_keypoints(landmarks)
    if neck is not None:
        points[NECK] = np.asarray(neck, np.float32)
    for a, b, colour in HEAD_LIMBS:
        _limb(canvas, points[a], points[b], POSE_COLOURS[colour])
    for k, p in points.items():
        cv2.circle(canvas, (int(p[0]), int(p[1])), 4, POSE_COLOURS[k], thickness=-1)
    for p in np.asarray(landmarks, np.float32).reshape(5, 2)[3:5]:
        cv2.circle(canvas, (int(p[0]), int(p[1])), 3, (255, 255, 255), thickness=-1)
    return canvas


def landmark_pose(size: int, faces: Sequence[np.ndarray]) -> np.ndarray:
    """(size, size, 3) uint8: the openpose drawing of the faces' landmarks (crop pixels) alone:
    Light's pose for the public openpose ControlNet, no OpenPose run."""
    canvas = np.zeros((size, size, 3), np.uint8)
    for landmarks in faces:
        draw_head_pose(canvas, landmarks)
    return canvas
