"""``--method camouflage``: identities, keyframes, compositing, fail-closed fallback, the
measures, and the whole clip end to end on the tiny models."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import camstream, full_tier_except, probe, read_frames
from privacy import leaks
from tiny_models import RESOLUTION, STEPS, one_torch_thread, public_models, tiny_config, tiny_models  # noqa: F401 - fixtures

from camouflage.models.methods import build_method
from camouflage.video.anonymizer import CamouflageVideoAnonymizer
from camouflage.video.compositor import crop_window, paste
from streamer.anonymizers import Shape
from streamer.config import Config
from streamer.errors import ConfigError
from streamer.frame import Frame
from tracking.identity import Identity, IdentityBank, KeyframePolicy, normalised_landmarks
from tracking.tracker import Region

TINY = ["--models-dir", None, "--set", f"light.resolution={RESOLUTION}", "--set", f"base.resolution={RESOLUTION}",
        "--set", f"base.steps={STEPS}", "--set", f"light.steps={STEPS}", "-q"]


def tiny_args(models: Path) -> list[str]:
    return [str(models) if a is None else a for a in TINY]


def camouflage_config(models: Path, **settings) -> Config:  # noqa: ANN003
    config = tiny_config(models)
    config.anonymize.method = "camouflage"
    config.light.resolution, config.light.steps = RESOLUTION, STEPS
    for key, value in settings.items():
        setattr(config.camouflage, key, value)
    return config


# -- identities and keyframes ---------------------------------------------------------------

def test_one_seed_per_track_stable_and_distinct() -> None:
    bank = IdentityBank(seed=7)
    first = bank.get(1, 0).seed
    assert all(bank.get(1, i).seed == first for i in range(1, 50))  # the whole life of the track
    seeds = {bank.get(t, 50).seed for t in range(2, 200)} | {first}
    assert len(seeds) == 199  # every track its own
    assert IdentityBank(seed=7).get(1, 0).seed == first  # run to run
    assert IdentityBank(seed=8).get(1, 0).seed != first
    assert bank.created == 199


def test_a_track_that_comes_back_under_a_new_id_is_a_new_identity() -> None:
    bank = IdentityBank(seed=0, forget_after=10)
    old = bank.get(3, 0)
    bank.get(4, 30)  # track 3 unseen for 30 frames: forgotten
    assert 3 not in bank and bank.get(5, 31).seed != old.seed


def test_keyframe_policy_fires_on_birth_scene_cut_interval_and_pose() -> None:
    policy = KeyframePolicy(every=10, pose_change=0.2)
    ident = Identity(track_id=1, seed=1, born=0, last_seen=0)
    assert policy.reason(ident, 0, False, None) == "birth"
    box = np.array([100, 100, 200, 200], np.float32)
    lm = normalised_landmarks(np.array([[130, 140], [170, 140], [150, 160], [135, 180], [165, 180]]), box)
    ident.keyframe_index, ident.keyframe_landmarks, ident.keyframes = 0, lm, 1
    assert policy.reason(ident, 5, False, lm) is None
    assert policy.reason(ident, 5, True, lm) == "scene_cut"
    assert policy.reason(ident, 10, False, lm) == "interval"
    assert policy.reason(ident, 5, False, lm + 0.3) == "pose"  # a turned head / open mouth
    assert policy.reason(ident, 5, False, lm + 0.05) is None  # small motion: Light keeps the face
    assert KeyframePolicy(on_scene_cut=False).reason(ident, 5, True, lm) is None


# -- the compositor ---------------------------------------------------------------------------

@pytest.mark.parametrize("box", [[300, 200, 380, 300], [-20, 400, 50, 470]])  # inside; across the edge
def test_compositor_changes_no_pixel_outside_the_feathered_mask(box: list[int]) -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (480, 640, 3), np.uint8)
    before = image.copy()
    shape, feather = Shape(margin=0.3), 0.25
    window = crop_window(np.array(box, np.float32), shape, 64, context=0.5)
    generated = rng.integers(0, 256, (64, 64, 3), np.uint8)
    hard = paste(image, window, generated, np.array(box, np.float32), shape, feather=feather)
    changed = (image != before).any(-1)
    # the covered shape: every pixel replaced (all random: none can equal by chance in all 3 channels)
    x1, y1 = max(0, int(np.floor(window.ox))), max(0, int(np.floor(window.oy)))
    covered = np.zeros(changed.shape, bool)
    covered[y1:y1 + hard.shape[0], x1:x1 + hard.shape[1]] = hard
    assert covered.sum() > 1000 and changed[covered].mean() > 0.99
    # the feather reaches at most a few sigmas (sigma = feather x band) beyond the shape
    reach = int(np.ceil(feather * window.band * 5)) + 2
    allowed = cv2.dilate(covered.astype(np.uint8), np.ones((2 * reach + 1, 2 * reach + 1), np.uint8)) > 0
    assert not changed[~allowed].any()
    assert changed.sum() < allowed.sum()


def test_compositor_refuses_a_shape_larger_than_its_crop() -> None:
    image = np.zeros((100, 100, 3), np.uint8)
    box = np.array([40, 40, 60, 60], np.float32)
    window = crop_window(box, Shape(margin=0.3), 32, context=0.0)
    with pytest.raises(RuntimeError):
        paste(image, window, np.zeros((32, 32, 3), np.uint8), box, Shape(margin=3.0))


# -- the anonymizer on the tiny models ----------------------------------------------------------

@pytest.fixture(scope="module")
def megamind(data: Path) -> list[np.ndarray]:
    return read_frames(data / "Megamind.avi", 42)[18:]  # faces in every one of these


def regions_of(image: np.ndarray) -> list[Region]:
    from tracking.detectors import LibFaceDetector

    dets = LibFaceDetector(threshold=0.5).detect(image)
    return [Region(box=b.astype(np.float32), track_id=i + 1, landmarks=dets.data["landmarks"][i])
            for i, b in enumerate(dets.xyxy)]


def run_frames(anonymizer: CamouflageVideoAnonymizer, frames: list[np.ndarray], regions: list[Region]) -> list[np.ndarray]:
    return [anonymizer.anonymize(f.copy(), regions, Frame(i, f.copy())) for i, f in enumerate(frames)]


@pytest.mark.full  # 11 s; the video method: test_public_adapters_run_the_in_between_frames
def test_birth_keyframe_then_light_with_the_identitys_face(tiny_models: Path, megamind: list[np.ndarray]) -> None:  # noqa: F811
    anonymizer = build_method("camouflage", camouflage_config(tiny_models, keyframe_every=5, measure=True))
    regions = regions_of(megamind[0])
    assert regions
    run_frames(anonymizer, megamind[:7], regions)
    report = anonymizer.report()
    n = len(regions)
    assert report["keyframes_by_reason"] == {"birth": n, "interval": n}  # frame 0, then frame 5
    assert report["light_regions"] == 5 * n and report["identities"] == n
    ident = anonymizer.bank.identities[regions[0].track_id]
    assert ident.keyframe_index == 5 and ident.embedding is not None and ident.keyframe_crop.shape == (RESOLUTION, RESOLUTION, 3)
    # cost: as many U-Net branches as Base (CFG + the identity push: 3, as Base's CFG + IDF), but
    # a fraction of its ControlNet evaluations (Base: five nets + the IDF on every step)
    assert report["unet_branches"] == {"base": 3, "light": 3} and report["conditioning"] == "paper"
    assert report["unet_evals_per_face_frame"] <= report["per_frame_base_unet_evals_per_face_frame"]
    assert report["controlnet_evals_per_face_frame"] < 0.3 * report["per_frame_base_controlnet_evals_per_face_frame"]
    assert report["flicker_warping_error"] is not None


@pytest.mark.full  # 11 s; seeds per track: test_one_seed_per_track_stable_and_distinct
def test_same_identity_same_noise_gives_the_same_face(tiny_models: Path, megamind: list[np.ndarray]) -> None:  # noqa: F811
    """Seeded latents: one frame rendered twice by Light for the same identity is identical,
    and a different track (seed) on the same pixels gives a different face."""
    anonymizer = build_method("camouflage", camouflage_config(tiny_models, measure=False))
    frame = megamind[3]
    region = regions_of(frame)[0]
    anonymizer.anonymize(frame.copy(), [region], Frame(0, frame))  # birth keyframe
    a = anonymizer.anonymize(frame.copy(), [region], Frame(1, frame))
    b = anonymizer.anonymize(frame.copy(), [region], Frame(2, frame))
    np.testing.assert_array_equal(a, b)
    other = Region(box=region.box, track_id=region.track_id + 100, landmarks=region.landmarks)
    anonymizer.anonymize(frame.copy(), [other], Frame(3, frame))
    c = anonymizer.anonymize(frame.copy(), [other], Frame(4, frame))
    assert np.abs(c.astype(int) - a).max() > 10


@pytest.mark.full  # 90 s: renders the clip twice
def test_flicker_and_drift_below_per_frame_base_with_fresh_noise(tiny_models: Path, megamind: list[np.ndarray]) -> None:  # noqa: F811
    frames = megamind[:12]
    regions = regions_of(frames[0])
    consistent = build_method("camouflage", camouflage_config(tiny_models, measure_identity=True))
    per_frame = build_method("camouflage", camouflage_config(tiny_models, measure_identity=True, keyframe_every=1,
                                                             fresh_noise=True))
    run_frames(consistent, frames, regions)
    run_frames(per_frame, frames, regions)
    ours, baseline = consistent.report(), per_frame.report()
    assert baseline["light_regions"] == 0 and baseline["keyframes"] == 12 * len(regions)  # Base on every frame
    assert ours["flicker_warping_error"] < 0.8 * baseline["flicker_warping_error"]
    assert ours["identity_drift"] < baseline["identity_drift"]
    assert ours["unet_evals_per_face_frame"] <= baseline["unet_evals_per_face_frame"]
    assert ours["controlnet_evals_per_face_frame"] < 0.3 * baseline["controlnet_evals_per_face_frame"]


class _Broken:
    """A generator failure (as an out-of-memory error would surface) injected into both models."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, *args, **kwargs):  # noqa: ANN002, ANN003, ANN204
        self.calls += 1
        raise RuntimeError("CUDA out of memory (injected)")


@pytest.mark.parametrize("failure", full_tier_except(["error"], ["error", "late"]))  # late: 17 s more
def test_failed_or_late_generation_is_covered_by_the_fallback(tiny_models: Path, megamind: list[np.ndarray], failure: str,  # noqa: F811
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    config = camouflage_config(tiny_models, mode="realtime" if failure == "late" else "quality", latency=1e-4, reuse_for=0)
    anonymizer = build_method("camouflage", config)
    if failure == "error":
        broken = _Broken()
        monkeypatch.setattr(anonymizer.base, "generate", broken)
        monkeypatch.setattr(type(anonymizer.light.pipe), "__call__", broken)
    frames = megamind[:12]
    out = run_frames(anonymizer, frames, regions_of(frames[0]))
    anonymizer.close()
    report = anonymizer.report()
    key = "fallback_failed_regions" if failure == "error" else "fallback_late_regions"  # late: for a render or a keyframe
    assert report[key] == report["regions"] > 0
    if failure == "error":
        assert broken.calls > 0
    found, leaked = leaks(frames, out)
    assert found > 0 and leaked == []


@pytest.mark.full  # 16 s; the fallback: test_failed_or_late_generation_is_covered_by_the_fallback[error]
def test_late_regions_reuse_their_identitys_latest_fake_face_then_the_fallback(tiny_models: Path,  # noqa: F811
                                                                                 megamind: list[np.ndarray]) -> None:
    """Realtime, every frame late: once a render has landed, a late region gets its identity's
    latest fake face in this frame's window; older than ``reuse_for`` frames, the fallback."""
    anonymizer = build_method("camouflage", camouflage_config(tiny_models, mode="realtime", latency=1e-4, reuse_for=3))
    frames, out = megamind[:8], []
    regions = regions_of(frames[0])
    n = len(regions)
    for i, f in enumerate(frames):
        out.append(anonymizer.anonymize(f.copy(), regions, Frame(i, f.copy())))
        anonymizer._pending.result()  # the render lands before the next frame, which is late again
        if anonymizer._keying is not None:
            anonymizer._keying.result()  # and the background keyframe: the identity's face
    report = anonymizer.report()
    assert report["fallback_late_regions"] == n and report["reused_late_regions"] == 7 * n  # frame 0: nothing to reuse yet
    ident = anonymizer.bank.identities[regions[0].track_id]
    assert ident.latest_index == 7 and ident.latest_crop is not None
    # the worker stalls: frames up to 3 after the latest render reuse it, later ones are covered by the fallback
    release = threading.Event()
    anonymizer._pending = anonymizer._worker.submit(release.wait)
    try:
        for i in (10, 11):
            out.append(anonymizer.anonymize(frames[-1].copy(), regions, Frame(i, frames[-1].copy())))
            frames.append(frames[-1])
    finally:
        release.set()
        anonymizer.close()
    report = anonymizer.report()
    assert report["reused_late_regions"] == 8 * n and report["fallback_late_regions"] == 2 * n
    assert not np.array_equal(out[-2], out[-1])  # reused fake face, then the solid fallback
    found, leaked = leaks(frames, out)
    assert found > 0 and leaked == []


@pytest.mark.full  # 15 s
def test_realtime_keyframes_run_in_the_background_while_light_renders_the_frame(tiny_models: Path,  # noqa: F811
                                                                               megamind: list[np.ndarray]) -> None:
    anonymizer = build_method("camouflage", camouflage_config(tiny_models, mode="realtime", latency=30.0))
    frames = megamind[:4]
    regions = regions_of(frames[0])
    n = len(regions)
    release = threading.Event()
    base_generate = anonymizer.base.generate

    def slow_generate(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 - Base held until released
        release.wait(30)
        return base_generate(*args, **kwargs)

    anonymizer.base.generate = slow_generate
    try:
        out = [anonymizer.anonymize(frames[0].copy(), regions, Frame(0, frames[0].copy())),
               anonymizer.anonymize(frames[1].copy(), regions, Frame(1, frames[1].copy()))]
        held = anonymizer.report()
        # no identity face yet: never a random target; nothing to reuse yet either: the fallback covers
        assert held["fallback_waiting_regions"] == held["fallback_late_regions"] == 2 * n
        assert held["generated_regions"] == held["light_regions"] == 0
        assert held["keyframes"] == 0
        assert all(anonymizer.bank.identities[r.track_id].embedding is None for r in regions)  # Base still running
    finally:
        release.set()
    anonymizer._keying.result(timeout=60)  # the birth keyframes land: each identity gets its face
    assert all(anonymizer.bank.identities[r.track_id].keyframe_index == 0 for r in regions)
    out += [anonymizer.anonymize(f.copy(), regions, Frame(i, f.copy())) for i, f in enumerate(frames[2:], 2)]
    anonymizer.close()
    report = anonymizer.report()
    assert report["keyframes_by_reason"] == {"birth": n}  # asked once per identity, though due on frames 0 and 1
    assert report["generated_regions"] == report["light_regions"] == 2 * n and report["fallback_late_regions"] == 2 * n
    found, leaked = leaks(frames, out)
    assert found > 0 and leaked == []


@pytest.mark.full  # 17 s
def test_close_stops_a_running_render_at_its_next_unet_evaluation(tiny_models: Path,  # noqa: F811
                                                                 megamind: list[np.ndarray]) -> None:
    """Ctrl-C or a stream's end while a long render runs (minutes on a CPU): close() returns
    at once instead of waiting for it, and the run's threads are gone."""
    import time

    config = camouflage_config(tiny_models, mode="realtime", latency=1e-4)
    config.base.steps = 5000  # a Base keyframe of minutes
    anonymizer = build_method("camouflage", config)
    regions = regions_of(megamind[0])
    anonymizer.anonymize(megamind[0].copy(), regions, Frame(0, megamind[0].copy()))
    keying = anonymizer._keying
    deadline = time.monotonic() + 60
    while anonymizer.stats.unet_evals["base"] == 0 and time.monotonic() < deadline:
        time.sleep(0.05)  # Base is denoising
    assert anonymizer.stats.unet_evals["base"] > 0 and not keying.done()
    t = time.monotonic()
    anonymizer.close()
    assert time.monotonic() - t < 10 and keying.done()
    assert type(keying.exception()).__name__ == "_Stopped"
    assert not [th for th in threading.enumerate() if th.name.startswith("camstream-")]


def test_a_late_render_that_failed_still_logs_why(caplog: pytest.LogCaptureFixture) -> None:
    from concurrent.futures import Future

    from camouflage.video.anonymizer import _log_background_errors, _Rendered

    done = Future()
    done.set_result(_Rendered([None], ["base: CUDA out of memory"]))
    broken = Future()
    broken.set_exception(ValueError("no landmarks"))
    with caplog.at_level("WARNING", logger="camstream"):
        _log_background_errors(41, "late", done)
        _log_background_errors(42, "keyframe", broken)
    assert "frame 41 (late): base: CUDA out of memory" in caplog.text
    assert "frame 42 (keyframe): ValueError: no landmarks" in caplog.text


@pytest.mark.full  # 33 s
def test_a_file_frame_waits_for_its_identitys_first_keyframe(tiny_models: Path, megamind: list[np.ndarray]) -> None:  # noqa: F811
    """Quality mode, no birth keyframe asked: the identity's first frame is still rendered by
    Base, so Light never starts from a random identity."""
    anonymizer = build_method("camouflage", camouflage_config(tiny_models, keyframe_on_birth=False))
    frames = megamind[:3]
    regions = regions_of(frames[0])
    run_frames(anonymizer, frames, regions)
    report = anonymizer.report()
    n = len(regions)
    assert report["keyframes_by_reason"] == {"birth": n}
    assert report["light_regions"] == 2 * n and report["fallback_waiting_regions"] == 0


@pytest.mark.parametrize("tracklet_frames", [12, 0])
def test_untracked_regions_never_run_base_on_every_frame(tiny_models: Path, megamind: list[np.ndarray],  # noqa: F811
                                                         tracklet_frames: int) -> None:
    """A region the tracker has not confirmed (id -1), moving a little each frame, gets a
    tracklet: one Base keyframe, then Light with that face; a second, far away, its own.
    With tracklets off it gets the fallback. Before: Base on every frame (120 of 276 renders
    on Megamind 0-2 s)."""
    anonymizer = build_method("camouflage", camouflage_config(tiny_models, tracklet_frames=tracklet_frames))
    frames = megamind[:4]
    box = regions_of(frames[0])[0].box
    far = np.array([5, 5, 45, 50], np.float32)
    for i, f in enumerate(frames):
        untracked = [Region(box=box + 3 * i, track_id=-1), Region(box=far - i, track_id=-1)]
        anonymizer.anonymize(f.copy(), untracked, Frame(i, f.copy()))
    report = anonymizer.report()
    if tracklet_frames:
        assert report["keyframes_by_reason"] == {"birth": 2} and report["tracklets"] == 2
        assert report["light_regions"] == 6 and report["generated_regions"] == 8
    else:
        assert report["keyframes"] == 0 and report["light_regions"] == 0 and report["fallback_late_regions"] == 8


def test_a_tracks_second_region_shares_its_identity(tiny_models: Path, megamind: list[np.ndarray]) -> None:  # noqa: F811
    """Two regions of one track in a frame (a held box beside the detected one): one identity,
    one keyframe, the second region rendered by Light with that face (it ran Base every frame before)."""
    anonymizer = build_method("camouflage", camouflage_config(tiny_models))
    frame = megamind[0]
    region = regions_of(frame)[0]
    twin = Region(box=region.box + 6, track_id=region.track_id, state="held")
    for i in range(2):
        anonymizer.anonymize(frame.copy(), [region, twin], Frame(i, frame.copy()))
    report = anonymizer.report()
    assert report["keyframes_by_reason"] == {"birth": 1} and report["light_regions"] == 3 and report["identities"] == 1


def test_public_adapters_run_the_in_between_frames(tiny_models: Path, megamind: list[np.ndarray],  # noqa: F811
                                                  caplog: pytest.LogCaptureFixture) -> None:
    """light.adapters: public (the default without trained adapters): Light is IP-Adapter
    plus-face fed the keyframe face + Base's openpose ControlNet on each crop's pose drawing."""
    config = camouflage_config(tiny_models, measure=False)
    config.light.adapters = "public"
    with caplog.at_level("INFO", logger="camstream"):
        anonymizer = build_method("camouflage", config)
    assert "public adapters" in caplog.text
    assert anonymizer.light.pipe.controlnet is anonymizer.base.pipeline.controlnet.nets[3]  # shared, not loaded twice
    openpose = []  # OpenPose runs for Base's keyframes only; Light draws the detector's landmarks
    detector = anonymizer.base.annotators["pose"].detector
    hook = detector.body_estimation.model.register_forward_pre_hook(lambda *_: openpose.append(1))
    frames = megamind[:3]
    regions = regions_of(frames[0])
    try:
        out = run_frames(anonymizer, frames, regions)
    finally:
        hook.remove()
    report = anonymizer.report()
    n = len(regions)
    assert report["light_adapters"] == "public" and report["keyframes_by_reason"] == {"birth": n}
    assert report["light_regions"] == 2 * n and 0 < len(openpose) <= 4 * n  # a few body passes per keyframe crop
    ident = anonymizer.bank.identities[regions[0].track_id]
    assert ident.embedding.ndim == 2  # the ViT-H hidden states of the keyframe face, not a projection
    found, leaked = leaks(frames, out)
    assert found > 0 and leaked == []
    config.light.adapters = "bogus"
    with pytest.raises(ConfigError, match="light.adapters"):
        build_method("camouflage", config)


def test_scene_scope_is_refused(tiny_models: Path) -> None:  # noqa: F811
    config = camouflage_config(tiny_models)
    config.anonymize.scope = "scene"
    with pytest.raises(ConfigError, match="scope"):
        build_method("camouflage", config)


# -- the CLI ---------------------------------------------------------------------------------------

@pytest.mark.full  # 800-900 s on 2 cores: frames, timing and audio also in tests/test_video_pipeline.py's default-tier runs
def test_megamind_end_to_end_keeps_frames_timing_and_audio(tiny_models: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    """The video method on the whole clip: frame count, timing and the AC3 audio survive,
    and the report carries the measures."""
    out, report_path = tmp_path / "megamind.mp4", tmp_path / "report.json"
    # The timeout only ends a hung run: the run takes what the machine's load makes it take.
    r = camstream("run", data / "Megamind.avi", "-o", out, "--report", report_path, "--method", "camouflage",
                  *tiny_args(tiny_models), "--set", "camouflage.measure=true", env={**os.environ, "OMP_NUM_THREADS": "1"},
                  timeout=7200)
    assert r.returncode == 0, r.stderr
    assert "RANDOM WEIGHTS" in r.stderr
    src, dst = probe(data / "Megamind.avi"), probe(out)
    assert abs(dst["frames"] - src["frames"]) <= 1
    assert dst["fps"] == pytest.approx(src["fps"], rel=1e-3)
    assert dst["video_duration"] == pytest.approx(src["video_duration"], abs=1.01 / src["fps"])
    assert dst["audio"]["codec"] == "ac3" and dst["audio"]["duration"] == pytest.approx(src["audio"]["duration"], abs=0.05)
    report = json.loads(report_path.read_text())
    a = report["anonymizer"]
    assert report["method"] == "camouflage" and report["status"] == "ok"
    assert a["mode"] == "quality" and a["keyframes"] >= a["identities"] > 0 and a["light_regions"] > a["keyframes"]
    assert a["fallback_failed_regions"] == a["fallback_late_regions"] == 0
    assert a["flicker_warping_error"] > 0 and a["unet_branches"]["light"] == a["unet_branches"]["base"]
    # same branches and steps: the U-Nets cost as much per face as Base's, the ControlNets a fraction
    assert a["unet_cost_vs_per_frame_base"] <= 1
    assert a["controlnet_evals_per_face_frame"] < 0.5 * a["per_frame_base_controlnet_evals_per_face_frame"]


def test_auto_runs_the_diffusion_method_only_with_its_models_and_a_gpu_or_device_cpu(tiny_models: Path,  # noqa: F811
                                                                                     tmp_path: Path) -> None:
    import torch

    from streamer.auto import choose
    from streamer.config import load_config

    config = load_config()
    config.models.dir = str(tmp_path)  # empty: no models
    choice = choose(config)
    assert choice.method == "solid" and "models are not here" in choice.reason and "models fetch camouflage" in choice.reason
    config.models.dir = str(tiny_models)
    choice = choose(config)
    if torch.cuda.is_available():
        assert choice.method == "camouflage" and "GPU" in choice.reason
    else:
        assert choice.method == "solid" and "no GPU" in choice.reason and "--device cpu" in choice.reason
    config.models.device = "cpu"
    choice = choose(config)
    assert choice.method == "camouflage" and "--device cpu" in choice.reason
    config.anonymize.fallback = "pixelate"
    config.models.dir = str(tmp_path)
    assert choose(config).method == "pixelate"  # the classical cover is the fallback's


def test_camouflage_without_models_names_the_fetch_command_and_pixelate(data: Path, tmp_path: Path) -> None:
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "x.jpg", "--models-dir", tmp_path, "--method", "camouflage",
                  env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 5
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "camstream models fetch camouflage" in lines[0] and "--method pixelate" in lines[0]
    assert not (tmp_path / "x.jpg").exists()


@pytest.mark.full  # 20 s; the public adapters: test_public_adapters_run_the_in_between_frames
def test_default_method_from_public_weights_only_with_the_realtime_preset(tiny_models: Path, data: Path,  # noqa: F811
                                                                          tmp_path: Path) -> None:
    """A models folder with no trained or hand-supplied file (no IDF, no Light adapters, no
    FaRL/FACER): `models check` says ready, and the default method runs with the public
    adapters end to end (-c realtime, a few frames)."""
    public = public_models(tiny_models, tmp_path / "public")
    r = camstream("models", "check", "--models-dir", public, "--no-load", timeout=300)
    assert r.returncode == 0 and "camouflage: ready (public Light adapters)" in r.stdout, r.stdout
    out, report_path = tmp_path / "mm.mp4", tmp_path / "report.json"
    r = camstream("run", data / "Megamind.avi", "-o", out, "--report", report_path, "-c", "realtime",
                  *tiny_args(public), "--set", "speed.lcm_steps=2", "--end", "0.8", "--device", "cpu",
                  env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=3600)
    assert r.returncode == 0, r.stderr
    assert "method auto -> camouflage: the diffusion extra and its models are here" in r.stderr  # --device cpu: the default picks it
    assert "no trained IDF ControlNet" in r.stderr and "public adapters" in r.stderr
    a = json.loads(report_path.read_text())["anonymizer"]
    assert a["light_adapters"] == "public" and a["keyframes"] > 0 and a["light_regions"] > 0
    assert a["fallback_failed_regions"] == 0
    assert probe(out)["frames"] > 0
