"""Identity-blind by construction (camouflage/blind.py): without a trained IDF ControlNet, two
frames that differ only inside a face (another person's face pasted in the same box) give
every network the same inputs, bit for bit, and give the same output.

The check records the inputs of every ``nn.Module`` call (a global forward pre-hook: the
U-Nets, ControlNets, VAE, text and image encoders, annotators, captioner, and all their
submodules) while the default video method renders a Base keyframe and a Light frame."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import camstream, read_frames, read_image
from tiny_models import RESOLUTION, STEPS, one_torch_thread, public_models, tiny_config, tiny_models  # noqa: F401 - fixtures

from camouflage.blind import blind_frame, fill_from_context, landmark_pose, shape_in_crop
from streamer.anonymizers import Shape
from streamer.frame import Frame
from tracking.tracker import Region

# -- the pieces, no model ---------------------------------------------------------------------


def test_the_fill_never_reads_under_the_mask() -> None:
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (90, 130, 3), np.uint8)
    mask = np.zeros((90, 130), bool)
    mask[20:60, 30:70] = True
    mask[0:10, 120:130] = True  # at the border too
    b = a.copy()
    b[mask] = rng.integers(0, 256, (int(mask.sum()), 3), np.uint8)
    fa, fb = fill_from_context(a, mask), fill_from_context(b, mask)
    np.testing.assert_array_equal(fa, fb)
    np.testing.assert_array_equal(fa[~mask], a[~mask])  # the context is kept as it is
    # smooth from its surroundings: a uniform context fills with its own colour
    flat = np.full((40, 40, 3), 77, np.uint8)
    flat[10:30, 10:30] = 255
    inner = np.zeros((40, 40), bool)
    inner[10:30, 10:30] = True
    assert (fill_from_context(flat, inner) == 77).all()


def test_blind_frame_fills_exactly_the_covered_shapes() -> None:
    image = np.random.default_rng(1).integers(0, 256, (120, 160, 3), np.uint8)
    shape = Shape(margin=0.3)
    box = np.array([40, 30, 80, 80], np.float32)
    filled, mask = blind_frame(image, [box], shape)
    (x1, y1, x2, y2), inside = shape.mask(box, 160, 120)
    expect = np.zeros((120, 160), bool)
    expect[y1:y2, x1:x2] = inside[:, :, 0]
    np.testing.assert_array_equal(mask, expect)
    np.testing.assert_array_equal(filled[~mask], image[~mask])
    # the covered shape in a crop: the same ellipse, at the crop's scale
    crop = shape_in_crop(box, shape, ox=20, oy=10, scale=2.0, size=200)
    grown = (shape.grown(box) - [20, 10, 20, 10]) * 2
    ys, xs = np.nonzero(crop)
    assert abs(xs.min() - grown[0]) <= 1 and abs(xs.max() + 1 - grown[2]) <= 1 and abs(ys.min() - grown[1]) <= 1


def test_the_pose_is_drawn_from_the_five_landmarks_alone() -> None:
    landmarks = np.array([[20, 24], [40, 24], [30, 34], [23, 44], [37, 44]], np.float32)
    pose = landmark_pose(64, [landmarks])
    assert pose.shape == (64, 64, 3) and pose.dtype == np.uint8
    assert tuple(pose[34, 30]) == (255, 0, 0)  # the nose, in openpose's colour
    assert tuple(pose[44, 23]) == (255, 255, 255)  # a mouth corner: openpose's white face dot
    np.testing.assert_array_equal(pose, landmark_pose(64, [landmarks]))
    assert not landmark_pose(64, []).any()


# -- the default video method on the tiny public set ---------------------------------------------


class _InputLog:
    """Hashes of every nn.Module call's tensor inputs, in call order (a global pre-hook)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __enter__(self) -> _InputLog:
        import torch

        def hook(module, args, kwargs=None):  # noqa: ANN001, ANN202
            digest = hashlib.sha1()
            for value in [*args, *(kwargs or {}).values()]:
                for t in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(t, torch.Tensor):
                        digest.update(t.detach().float().cpu().contiguous().numpy().tobytes())
            self.calls.append((type(module).__name__, digest.hexdigest()))

        self.handle = torch.nn.modules.module.register_module_forward_pre_hook(hook)
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def _method(models: Path, folder: Path, conditioning: str = "auto"):  # noqa: ANN202
    """``--method camouflage`` from the public weights alone (no IDF: ``auto`` is blind)."""
    from camouflage.models.methods import build_method

    config = tiny_config(public_models(models, folder))
    config.anonymize.method = "camouflage"
    config.light.resolution, config.light.steps = RESOLUTION, STEPS
    config.base.conditioning = config.light.conditioning = conditioning
    return build_method("camouflage", config)


def _fresh(method):  # noqa: ANN001, ANN202 - a new run (new identities) on the same loaded models
    from camouflage.video.anonymizer import CamouflageVideoAnonymizer

    for cache in ("_prompt_cache", "_uncond_identity"):  # encoded once per pipeline: each run starts cold
        method.light.pipe.__dict__.pop(cache, None)
    return CamouflageVideoAnonymizer(
        method.base,
        method.light,
        method.fallback,
        method.policy,
        shape=method.shape,
        mode="quality",
        context=method.context,
        feather=method.feather,
    )


def _two_inputs(data: Path) -> tuple[list[np.ndarray], list[np.ndarray], list[Region]]:
    """Two frames of Megamind; the second input has Grace Hopper's face pasted into a face's box."""
    from tracking.detectors import LibFaceDetector

    frames = read_frames(data / "Megamind.avi", 20)[18:20]
    dets = LibFaceDetector(threshold=0.5).detect(frames[0])
    assert len(dets) >= 1
    regions = [
        Region(box=b.astype(np.float32), track_id=i + 1, landmarks=dets.data["landmarks"][i]) for i, b in enumerate(dets.xyxy)
    ]
    x1, y1, x2, y2 = (int(round(v)) for v in regions[0].box)
    other = read_image(data / "grace_hopper_512x512.jpg")[60:330, 130:380]  # her face
    swapped = []
    for f in frames:
        g = f.copy()
        g[y1:y2, x1:x2] = cv2.resize(other, (x2 - x1, y2 - y1), interpolation=cv2.INTER_AREA)
        swapped.append(g)
    assert np.abs(frames[0][y1:y2, x1:x2].astype(int) - swapped[0][y1:y2, x1:x2]).mean() > 20  # really another face
    return frames, swapped, regions


def _both_inputs(method, data: Path):  # noqa: ANN001, ANN202
    """Frame 0 (the birth keyframe: Base) and frame 1 (Light) of each input, each input a
    fresh run: [(outputs, per-frame input logs, report)] for the real and the swapped face."""
    frames, swapped, regions = _two_inputs(data)
    runs = []
    for inputs in (frames, swapped):
        anonymizer = _fresh(method)
        outputs, logs = [], []
        for i, f in enumerate(inputs):
            with _InputLog() as log:
                outputs.append(anonymizer.anonymize(f.copy(), regions, Frame(i, f.copy())))
            logs.append(log.calls)
        runs.append((outputs, logs, anonymizer.report()))
        anonymizer.close()
    n = len(regions)
    for _, logs, report in runs:
        assert report["keyframes_by_reason"] == {"birth": n} and report["light_regions"] == n
        for log in logs:
            assert len(log) > 100 and {c for c, _ in log} >= {"UNet2DConditionModel", "ControlNetModel"}
    return frames, runs


def test_a_different_face_in_the_box_changes_no_generator_input_and_no_output_pixel(
    tiny_models: Path,  # noqa: F811
    data: Path,
    tmp_path: Path,
) -> None:
    """THE identity-blindness check, on the default (no trained IDF): frame 0 is the birth
    keyframe (Base), frame 1 a Light frame."""
    frames, ((out_a, log_a, report), (out_b, log_b, _)) = _both_inputs(_method(tiny_models, tmp_path / "public"), data)
    assert report["conditioning"] == "blind"
    for frame in (0, 1):  # Base's keyframe, then Light
        assert log_a[frame] == log_b[frame], f"frame {frame}: a network saw the face in the box"
        np.testing.assert_array_equal(out_a[frame], out_b[frame])
    assert not np.array_equal(out_a[0], frames[0])  # it did replace the faces


def test_the_paper_conditioning_reads_the_face(tiny_models: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    """The same check on ``conditioning: paper`` without an IDF (what the default was before:
    img2img from the real face, OpenPose's face landmarks, lineart of the face): it fails, the
    networks see the face in the box on the keyframe and on the Light frame alike."""
    _, ((out_a, log_a, report), (out_b, log_b, _)) = _both_inputs(_method(tiny_models, tmp_path / "public", "paper"), data)
    assert report["conditioning"] == "paper"
    for frame in (0, 1):
        assert log_a[frame] != log_b[frame]
        assert not np.array_equal(out_a[frame], out_b[frame])


# -- the CLI: --regions-only on two images --------------------------------------------------------


@pytest.mark.full  # two runs of the CLI with the models: ~50 s here; the check above is the fast one
def test_regions_only_on_two_images_gives_the_same_output(tiny_models: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    """`camstream run IMAGE --regions FILE --regions-only` (boxes from another tool): the
    file's boxes are replaced, and two images that differ only inside them give the same
    output file, bit for bit."""
    frames, swapped, regions = _two_inputs(data)
    public = public_models(tiny_models, tmp_path / "public")
    csv = tmp_path / "regions.txt"
    rows = []
    for r in regions:
        x1, y1, x2, y2 = (float(v) for v in r.box)
        lm = ",".join(f"{v:.2f}" for v in r.landmarks.reshape(-1))
        rows.append(f"1,-1,{x1:.2f},{y1:.2f},{x2 - x1:.2f},{y2 - y1:.2f},0.9,-1,-1,-1,{lm}")
    csv.write_text("# frame,id,x,y,w,h,conf,wx,wy,wz,landmarks\n" + "\n".join(rows) + "\n")
    outs = []
    for name, image in (("a", frames[0]), ("b", swapped[0])):
        src, out = tmp_path / f"{name}.png", tmp_path / f"{name}.anon.png"
        cv2.imwrite(str(src), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        r = camstream(
            "run",
            src,
            "-o",
            out,
            "--method",
            "camouflage",
            "--models-dir",
            public,
            "--regions",
            csv,
            "--regions-only",
            "--set",
            f"light.resolution={RESOLUTION}",
            "--set",
            f"base.steps={STEPS}",
            "-q",
            env={**os.environ, "OMP_NUM_THREADS": "1"},
            timeout=600,
        )
        assert r.returncode == 0, r.stderr
        outs.append(read_image(out))
    np.testing.assert_array_equal(outs[0], outs[1])
    for r in regions:  # every box of the file is replaced
        x1, y1, x2, y2 = (int(round(v)) for v in r.box)
        assert np.abs(outs[0][y1:y2, x1:x2].astype(int) - frames[0][y1:y2, x1:x2]).sum(-1).astype(bool).mean() > 0.9
