"""Moving cameras and large frames, made from the shared photos and faces, with exact ground truth.

A clip is a *world* image (shared photos scaled up and laid side by side, with the shared
faces pasted into it at known places and sizes) filmed by a camera that moves: per frame a
similarity transform (pan, zoom, roll) from world to frame, optional motion blur along the
camera's motion and sensor noise. The truth of a frame is every face of the world moved by
that frame's transform (its box and inner box, clipped to the frame): the pasted faces and
the photos' own faces (their reference faces, measured once with
streamer/evaluation/reference.py and written here, so the clips never depend on a
detector). What any run left exposed is known exactly, at the clip's native resolution.

The same recipes make the small test versions (tests/test_moving.py) and the full-size
benchmark clips (benchmarks/moving.py): ``scale`` shrinks the frame and every
face with it, so a test clip keeps the benchmark's geometry at a fraction of the cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from hard_clips import Clip, FaceSource, Truth, _read, sources


@dataclass
class WorldFace:
    source: int  # 0: Grace Hopper, 1: Messi (hard_clips.sources)
    box: np.ndarray  # xyxy in world pixels
    inner: np.ndarray  # eyes-nose-mouth box in world pixels
    corners: np.ndarray  # (4, 2) the face box's corners (turned faces: not axis-aligned)
    inner_corners: np.ndarray


def paste_world(world: np.ndarray, src: FaceSource, centre: tuple[float, float], size: float, angle: float = 0.0,
                face: int = 0) -> WorldFace:
    """Paste ``src`` into ``world`` (in place) with its face box ``size`` px wide at ``centre``,
    like hard_clips.paste but warping only the face's neighbourhood (worlds are large)."""
    bw = float(src.box[2] - src.box[0])
    scale = size / bw
    fc = (src.box[:2] + src.box[2:]) / 2
    m = cv2.getRotationMatrix2D((float(fc[0]), float(fc[1])), angle, scale)
    m[:, 2] += np.array(centre) - fc
    ph, pw = src.patch.shape[:2]
    corners = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32) @ m[:, :2].T + m[:, 2]
    h, w = world.shape[:2]
    x1, y1 = np.floor(corners.min(0)).astype(int) - 2
    x2, y2 = np.ceil(corners.max(0)).astype(int) + 2
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    local = m.copy()
    local[:, 2] -= (x1, y1)
    patch = cv2.warpAffine(src.patch, local, (x2 - x1, y2 - y1), flags=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    alpha = np.zeros((ph, pw), np.float32)
    cv2.ellipse(alpha, (pw // 2, ph // 2), (int(pw * 0.48), int(ph * 0.48)), 0, 0, 360, 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, 0.04 * pw))
    alpha = cv2.warpAffine(alpha, local, (x2 - x1, y2 - y1), flags=cv2.INTER_LINEAR)[:, :, None]
    roi = world[y1:y2, x1:x2].astype(np.float32)
    world[y1:y2, x1:x2] = (roi * (1 - alpha) + patch.astype(np.float32) * alpha).astype(np.uint8)

    def moved(points: np.ndarray) -> np.ndarray:
        return points @ m[:, :2].T + m[:, 2]

    b = src.box
    box_corners = moved(np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32))
    marks = moved(src.landmarks)
    pad = 0.1 * size
    inner = np.concatenate([marks.min(0) - pad, marks.max(0) + pad]).astype(np.float32)
    ic = np.array([[inner[0], inner[1]], [inner[2], inner[1]], [inner[2], inner[3]], [inner[0], inner[3]]], np.float32)
    return WorldFace(face, np.concatenate([box_corners.min(0), box_corners.max(0)]).astype(np.float32), inner,
                     box_corners.astype(np.float32), ic)


def camera(tx: float, ty: float, zoom: float = 1.0, roll: float = 0.0, centre: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """World -> frame (2x3): the world point ``(tx, ty)`` lands on frame point ``centre``, the
    world seen ``zoom`` times larger and turned by ``roll`` degrees (counter-clockwise)."""
    m = cv2.getRotationMatrix2D((float(tx), float(ty)), roll, zoom)
    m[:, 2] += np.array(centre, np.float64) - (tx, ty)
    return m.astype(np.float64)


def _hull(points: np.ndarray, m: np.ndarray) -> np.ndarray:
    p = points @ m[:, :2].T + m[:, 2]
    return np.concatenate([p.min(0), p.max(0)]).astype(np.float32)


def _blur(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """Motion blur along (dx, dy) frame pixels (the camera's motion during the exposure)."""
    length = float(np.hypot(dx, dy))
    if length < 1.5:
        return image
    k = int(np.ceil(length)) | 1
    kernel = np.zeros((k, k), np.float32)
    c = k // 2
    ux, uy = dx / length, dy / length
    cv2.line(kernel, (int(round(c - ux * c)), int(round(c - uy * c))), (int(round(c + ux * c)), int(round(c + uy * c))), 1.0, 1)
    kernel /= kernel.sum()
    return cv2.filter2D(image, -1, kernel)


def film(name: str, world: np.ndarray, faces: list[WorldFace], size: tuple[int, int], cams: list[np.ndarray],
         blur: float = 0.0, noise: float = 2.0, seed: int = 0) -> Clip:
    """Render the frames of ``world`` seen through ``cams`` (one world->frame transform each)
    at ``size`` (w, h); ``blur``: the share of the camera's motion from the frame before that
    smears the frame (0: none, 1: the whole motion)."""
    rng = np.random.default_rng(seed)
    w, h = size
    clip = Clip(name)
    frame_box = np.array([0, 0, w, h], np.float32)
    for i, m in enumerate(cams):
        image = cv2.warpAffine(world, m.astype(np.float32), (w, h), flags=cv2.INTER_AREA if m[0, 0] ** 2 + m[1, 0] ** 2 < 1 else cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        if blur and i:
            centre = np.array([w / 2, h / 2, 1.0])
            before = m @ np.append(cv2.invertAffineTransform(cams[i - 1].astype(np.float32)) @ centre, 1.0)
            image = _blur(image, blur * (w / 2 - before[0]), blur * (h / 2 - before[1]))
        if noise:
            image = np.clip(image.astype(np.int16) + rng.normal(0, noise, image.shape).astype(np.int16), 0, 255).astype(np.uint8)
        truth = []
        for f in faces:
            box, inner = _hull(f.corners, m), _hull(f.inner_corners, m)
            clipped = np.concatenate([np.maximum(inner[:2], frame_box[:2]), np.minimum(inner[2:], frame_box[2:])])
            if (clipped[2:] - clipped[:2] >= 2).all() and _share_inside(inner, frame_box) >= 0.5:
                truth.append(Truth(f.source, box, clipped.astype(np.float32)))
        clip.frames.append(image)
        clip.truth.append(truth)
    return clip


def _share_inside(box: np.ndarray, frame: np.ndarray) -> float:
    w = max(0.0, min(box[2], frame[2]) - max(box[0], frame[0]))
    h = max(0.0, min(box[3], frame[3]) - max(box[1], frame[1]))
    area = float((box[2] - box[0]) * (box[3] - box[1]))
    return w * h / area if area > 0 else 0.0


def _photo(data: Path, name: str, width: int, height: int) -> np.ndarray:
    image = _read(data / name)
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_CUBIC)


# The reference faces of the shared photos (ReferenceFinder: two detectors agree, or one is
# sure), box and inner box in the photo's pixels.
PHOTO_FACES: dict[str, list[tuple[tuple[float, ...], tuple[float, ...]]]] = {
    "messi5.jpg": [((224.9, 93.0, 254.6, 131.3), (235.1, 105.5, 254.6, 125.7))],
    "vtest.avi": [((509.8, 161.2, 515.4, 168.3), (511.1, 163.0, 515.1, 167.4)),
                  ((266.7, 225.0, 273.3, 233.9), (270.8, 228.1, 273.3, 233.6))],
}


def _corners(b: tuple[float, ...] | np.ndarray) -> np.ndarray:
    return np.array([[b[0], b[1]], [b[2], b[1]], [b[2], b[3]], [b[0], b[3]]], np.float32)


def _place(b: tuple[float, ...], zoom: float, tile_width: int, flip: bool, tx: int, ty: int) -> np.ndarray:
    """A box of the photo in the world: scaled, mirrored in its tile if ``flip``, moved to the tile."""
    x1, y1, x2, y2 = (v * zoom for v in b)
    if flip:
        x1, x2 = tile_width - x2, tile_width - x1
    return np.array([x1 + tx, y1 + ty, x2 + tx, y2 + ty], np.float32)


def mosaic(data: Path, name: str, width: int, height: int, zoom: float) -> tuple[np.ndarray, list[WorldFace]]:
    """A world of ``width`` x ``height`` px tiled with the photo ``name`` seen ``zoom`` times
    larger (every other copy mirrored, so the tiles meet at matching edges), and the photo's
    own faces in every copy."""
    photo = _read(data / name)
    ph, pw = photo.shape[:2]
    tw, th = round(pw * zoom), round(ph * zoom)
    tile = cv2.resize(photo, (tw, th), interpolation=cv2.INTER_CUBIC)
    world = np.zeros((height, width, 3), np.uint8)
    faces: list[WorldFace] = []
    for ty in range(0, height, th):
        for tx in range(0, width, tw):
            flip = (tx // tw + ty // th) % 2 == 1
            part = tile[:, ::-1] if flip else tile
            h, w = min(th, height - ty), min(tw, width - tx)
            world[ty:ty + h, tx:tx + w] = part[:h, :w]
            for box, inner in PHOTO_FACES.get(name, []):
                fb, fi = (_place(b, zoom, tw, flip, tx, ty) for b in (box, inner))
                if fb[2] <= width and fb[3] <= height:
                    faces.append(WorldFace(-1, fb, fi, _corners(fb), _corners(fi)))
    return world, faces


def _scatter(world: np.ndarray, srcs: list[FaceSource], sizes: list[float], region: tuple[float, float, float, float],
             seed: int, angles: tuple[float, float] = (0.0, 0.0)) -> list[WorldFace]:
    """Faces of ``sizes`` px on a jittered grid over ``region`` (x1, y1, x2, y2 world pixels)."""
    rng = np.random.default_rng(seed)
    n = len(sizes)
    cols = int(np.ceil(np.sqrt(n * (region[2] - region[0]) / max(1.0, region[3] - region[1]))))
    rows = int(np.ceil(n / cols))
    cw, ch = (region[2] - region[0]) / cols, (region[3] - region[1]) / rows
    order = rng.permutation(n)
    faces = []
    for k, idx in enumerate(order):
        r, c = divmod(k, cols)
        s = sizes[idx]
        jx, jy = rng.uniform(-0.25, 0.25, 2) * (cw - s, ch - s) if cw > s and ch > s else (0.0, 0.0)
        centre = (region[0] + (c + 0.5) * cw + jx, region[1] + (r + 0.5) * ch + jy)
        face = int(idx % 2)
        faces.append(paste_world(world, srcs[face], centre, s, float(rng.uniform(*angles)), face))
    return faces


ClipMaker = Callable[[Path, float], Clip]


def pan(data: Path, scale: float = 1.0, frames: int = 40) -> Clip:
    """A 4K pan over messi5.jpg (four times its size, side by side) with 20 faces of 18-120 px:
    steady at 36 px a frame, then a whip (220 px a frame for 6 frames), then steady again.
    Faces enter at the right edge."""
    w, h = round(3840 * scale), round(2160 * scale)
    world, own = mosaic(data, "messi5.jpg", round(9000 * scale), h + round(200 * scale), 4 * scale)
    grace, messi = sources(data)
    sizes = list(np.geomspace(18, 120, 20) * scale)
    faces = _scatter(world, [grace, messi], sizes, (200 * scale, 150 * scale, world.shape[1] - 200 * scale, world.shape[0] - 150 * scale), 1)
    x, xs = 0.0, []
    for i in range(frames):
        xs.append(x)
        x += (220.0 if 16 <= i < 22 else 36.0) * scale
    cams = [camera(x0, 100 * scale) for x0 in xs]
    return film("pan-4k" if scale == 1 else f"pan-{w}", world, own + faces, (w, h), cams, blur=0.3, seed=1)


def zoom(data: Path, scale: float = 1.0, frames: int = 40) -> Clip:
    """A 4K zoom out then in on messi5.jpg (four times its size, side by side; 1.6x -> 1x ->
    1.6x): faces of 16-60 px (at 1x) come in at every edge as the view widens, then leave."""
    w, h = round(3840 * scale), round(2160 * scale)
    world, own = mosaic(data, "messi5.jpg", w + round(600 * scale), h + round(340 * scale), 4 * scale)
    grace, messi = sources(data)
    sizes = list(np.geomspace(16, 60, 16) * scale)
    faces = _scatter(world, [grace, messi], sizes, (120 * scale, 120 * scale, world.shape[1] - 120 * scale, world.shape[0] - 120 * scale), 2)
    cx, cy = world.shape[1] / 2, world.shape[0] / 2
    cams = [camera(cx, cy, 1.0 + 0.6 * abs(1 - 2 * i / (frames - 1)), 0.0, (w / 2, h / 2)) for i in range(frames)]
    return film("zoom-4k" if scale == 1 else f"zoom-{w}", world, own + faces, (w, h), cams, blur=0.0, seed=2)


def handheld(data: Path, scale: float = 1.0, frames: int = 48) -> Clip:
    """A handheld camera at 960x540 over the vtest.avi street (twice its size) with 8 faces of
    24-80 px: shake (a random walk of up to 25 px a frame), roll swinging between -30 and
    +30 degrees, and motion blur from the shake."""
    w, h = round(960 * scale), round(540 * scale)
    world, own = mosaic(data, "vtest.avi", round(1400 * scale), round(1000 * scale), 2 * scale)
    grace, messi = sources(data)
    sizes = list(np.geomspace(24, 80, 8) * scale)
    faces = own + _scatter(world, [grace, messi], sizes, (300 * scale, 260 * scale, world.shape[1] - 300 * scale, world.shape[0] - 260 * scale), 3)
    rng = np.random.default_rng(3)
    pos = np.array([world.shape[1] / 2, world.shape[0] / 2])
    vel = np.zeros(2)
    cams = []
    for i in range(frames):
        vel = 0.7 * vel + rng.normal(0, 9 * scale, 2)
        vel = np.clip(vel, -25 * scale, 25 * scale)
        pos = np.clip(pos + vel, (w / 2 + 20 * scale, h / 2 + 20 * scale), (world.shape[1] - w / 2 - 20 * scale, world.shape[0] - h / 2 - 20 * scale))
        cams.append(camera(pos[0], pos[1], 1.0, 30.0 * np.sin(2 * np.pi * i / 32), (w / 2, h / 2)))
    return film("handheld" if scale == 1 else f"handheld-{w}", world, faces, (w, h), cams, blur=0.4, seed=3)


def static_4k(data: Path, scale: float = 1.0, frames: int = 24) -> Clip:
    """A still 4K camera on the vtest.avi street (five times its size) with two rows of faces
    from 16 to 200 px; nothing moves."""
    w, h = round(3840 * scale), round(2160 * scale)
    world, faces = mosaic(data, "vtest.avi", w, h, 5 * scale)
    grace, messi = sources(data)
    sizes = [16, 20, 24, 32, 40, 48, 64, 96, 128, 200]
    for k, s in enumerate(sizes):
        for j, src in enumerate((grace, messi)):
            faces.append(paste_world(world, src, ((200 + 360 * k) * scale, (500 + 900 * j) * scale), s * scale, 0.0, j))
    cams = [camera(0, 0)] * frames
    return film("static-4k" if scale == 1 else f"static-{w}", world, faces, (w, h), cams, seed=4)


def still_24mp(data: Path, scale: float = 1.0) -> Clip:
    """A 6000x4000 group photo (24 MP): messi5.jpg four times its size, side by side, with 12
    faces of 42-84 px."""
    w, h = round(6000 * scale), round(4000 * scale)
    world, own = mosaic(data, "messi5.jpg", w, h, 4 * scale)
    grace, messi = sources(data)
    faces = own + _scatter(world, [grace, messi], list(np.linspace(42, 84, 12) * scale), (300 * scale, 300 * scale, w - 300 * scale, h - 300 * scale), 5)
    return film("still-24mp" if scale == 1 else f"still-{w}", world, faces, (w, h), [camera(0, 0)], seed=5)


def static_8k(data: Path, scale: float = 1.0, frames: int = 6) -> Clip:
    """An 8K still camera (7680x4320) on messi5.jpg (four times its size, side by side) with
    4 faces of 20-40 px."""
    w, h = round(7680 * scale), round(4320 * scale)
    world, own = mosaic(data, "messi5.jpg", w, h, 4 * scale)
    grace, messi = sources(data)
    faces = own + [paste_world(world, src, (x * scale, y * scale), s * scale, 0.0, k % 2)
             for k, (src, x, y, s) in enumerate([(grace, 900, 800, 20), (messi, 3000, 2500, 26), (grace, 5200, 1200, 32), (messi, 6900, 3800, 40)])]
    return film("static-8k" if scale == 1 else f"static8k-{w}", world, faces, (w, h), [camera(0, 0)] * frames, seed=6)


CLIPS: dict[str, ClipMaker] = {
    "pan-4k": pan,
    "zoom-4k": zoom,
    "handheld": handheld,
    "static-4k": static_4k,
    "still-24mp": still_24mp,
    "static-8k": static_8k,
}


def clips(data: Path, scale: float = 1.0, only: list[str] | None = None) -> dict[str, Clip]:
    return {name: make(data, scale) for name, make in CLIPS.items() if not only or name in only}
