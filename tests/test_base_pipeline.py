"""CamouflageBasePipeline on the tiny random models: determinism, the identity guidance
formula, the batched branches, per-control scales and the lineart cut-off."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_models import RESOLUTION, one_torch_thread, tiny_models  # noqa: F401 - fixtures

from camouflage.base.pipeline import CamouflageBasePipeline, identity_guidance, make_scheduler
from camouflage.models.manifest import ModelResolver
from camouflage.models.names import CONTROLS


@pytest.fixture(scope="module")
def pipe(tiny_models: Path) -> CamouflageBasePipeline:  # noqa: F811
    return CamouflageBasePipeline.from_manifest(ModelResolver(models_dir=tiny_models, offline=True))


@pytest.fixture(scope="module")
def inputs(data: Path) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    image = np.asarray(Image.open(data / "grace_hopper_512x512.jpg").convert("RGB").resize((RESOLUTION, RESOLUTION)))
    rng = np.random.default_rng(0)
    controls = {c: rng.integers(0, 256, (RESOLUTION, RESOLUTION, 3), dtype=np.uint8) for c in CONTROLS}
    return image, controls


def run(pipe, inputs, seed=0, **kwargs):  # noqa: ANN001, ANN003, ANN201
    image, controls = inputs
    kwargs.setdefault("num_inference_steps", 2)
    return pipe(image, controls, prompt="a photo of a person", generator=torch.Generator().manual_seed(seed),
                output_type="np", **kwargs)


def test_deterministic_with_a_seed(pipe, inputs) -> None:  # noqa: ANN001
    a, b = run(pipe, inputs, seed=3).images, run(pipe, inputs, seed=3).images
    assert a.shape == (1, RESOLUTION, RESOLUTION, 3)
    np.testing.assert_array_equal(a, b)
    assert np.abs(run(pipe, inputs, seed=4).images - a).max() > 1e-3


@pytest.mark.parametrize("a_s", [0.0, 2.0])
def test_identity_guidance_formula_from_the_two_branches(pipe, inputs, a_s: float) -> None:  # noqa: ANN001
    steps = []
    run(pipe, inputs, anonymization_scale=a_s, callback_on_step_end=lambda p, i, t, d: steps.append(d))
    assert steps
    for d in steps:
        eps_pos, eps_idf = d["eps_pos"], d["eps_idf"]
        assert not torch.allclose(eps_pos, eps_idf)  # the two branches differ: the test means something
        by_hand = eps_idf + a_s * (eps_pos - eps_idf)
        torch.testing.assert_close(d["noise_pred"], by_hand, rtol=0, atol=1e-6)
    if a_s == 0.0:
        torch.testing.assert_close(steps[0]["noise_pred"], steps[0]["eps_idf"], rtol=0, atol=0)
    assert identity_guidance(torch.tensor(3.0), torch.tensor(1.0), 2.0) == 5.0


def test_batched_branches_equal_separate_unet_calls(pipe, inputs) -> None:  # noqa: ANN001
    """The single batched UNet call gives what three separate calls give."""
    seen = []
    guidance = 3.0
    run(pipe, inputs, guidance_scale=guidance, callback_on_step_end=lambda p, i, t, d: seen.append((t, d)))
    t, d = seen[0]
    x = d["model_input"]
    text = pipe.encode_prompt(["a photo of a person"], x.device)
    empty = pipe.encode_prompt([""], x.device)
    image, controls = inputs
    original = pipe.image_processor.preprocess(Image.fromarray(image))
    latents = pipe.encode_image(original)
    cond = [pipe.control_image_processor.preprocess(Image.fromarray(controls[c])) for c in CONTROLS]
    scales = pipe.control_scales({"depth": 0.5, "normal": 0.3, "seg": 0.5, "pose": 1.0, "lineart": 0.5}, 0, 10, 0.5)

    def unet(emb, down, mid):  # noqa: ANN001, ANN202
        return pipe.unet(x, t, encoder_hidden_states=emb, down_block_additional_residuals=down,
                         mid_block_additional_residual=mid).sample

    with torch.no_grad():
        eps_idf = unet(text, *pipe.idf_controlnet(x, t, encoder_hidden_states=text, controlnet_cond=latents, return_dict=False))
        eps_text = unet(text, *pipe.controlnet(x, t, encoder_hidden_states=text, controlnet_cond=cond, conditioning_scale=scales, return_dict=False))
        eps_unc = unet(empty, *pipe.controlnet(x, t, encoder_hidden_states=empty, controlnet_cond=cond, conditioning_scale=scales, return_dict=False))
    torch.testing.assert_close(d["eps_idf"], eps_idf, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(d["eps_pos"], eps_unc + guidance * (eps_text - eps_unc), rtol=1e-4, atol=1e-4)


def test_the_five_scales_reach_the_controlnets_and_lineart_stops_half_way(pipe, inputs) -> None:  # noqa: ANN001
    """Each ControlNet gets its scale; lineart's is 0 from lineart_stop on, and then it is not
    run at all (it would add exactly nothing)."""
    scales = {"depth": 0.11, "normal": 0.22, "seg": 0.33, "pose": 0.44, "lineart": 0.55}
    received: dict[str, list[float]] = {c: [] for c in CONTROLS}
    hooks = [
        net.register_forward_pre_hook(lambda m, a, kw, c=c: received[c].append(kw["conditioning_scale"]), with_kwargs=True)
        for c, net in zip(CONTROLS, pipe.controlnet.nets, strict=True)
    ]
    try:
        steps = []
        run(pipe, inputs, num_inference_steps=4, strength=1.0, controlnet_conditioning_scale=scales, lineart_stop=0.5,
            callback_on_step_end=lambda p, i, t, d: steps.append(d["control_scales"]))
    finally:
        for h in hooks:
            h.remove()
    n = len(steps)
    assert n >= 4
    for c in ("depth", "normal", "seg", "pose"):
        assert received[c] == [scales[c]] * n
    first_half = [i for i in range(n) if i < 0.5 * n]
    assert [s[CONTROLS.index("lineart")] for s in steps] == [0.55 if i in first_half else 0.0 for i in range(n)]
    assert received["lineart"] == [0.55] * len(first_half)  # not called after its cut


def test_a_net_at_scale_0_is_skipped_and_changes_nothing(pipe, inputs) -> None:  # noqa: ANN001
    """Skipping a zero-scale ControlNet gives what running it at 0 gave (MultiControlNetModel)."""
    seen = []
    run(pipe, inputs, controlnet_conditioning_scale={"lineart": 0.0},
        callback_on_step_end=lambda p, i, t, d: seen.append((t, d)))
    t, d = seen[0]
    x = d["model_input"].repeat(2, 1, 1, 1)
    image, controls = inputs
    cond = [pipe.control_image_processor.preprocess(Image.fromarray(controls[c])).repeat(2, 1, 1, 1) for c in CONTROLS]
    text = torch.cat([pipe.encode_prompt([""], x.device), pipe.encode_prompt(["a photo of a person"], x.device)])
    scales = [0.5, 0.3, 0.5, 1.0, 0.0]
    with torch.no_grad():
        ours = pipe.controlnet_residuals(x, t, text, cond, scales)
        theirs = pipe.controlnet(x, t, encoder_hidden_states=text, controlnet_cond=cond, conditioning_scale=scales, return_dict=False)
    for a, b in zip([*ours[0], ours[1]], [*theirs[0], theirs[1]], strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_identity_blind_path_keeps_the_context_and_frees_the_face(pipe, inputs) -> None:  # noqa: ANN001
    """mask_image: the face from pure noise (the image under the mask is never read), the
    context re-imposed (outside the mask the result follows the image), depth/normal/seg/
    lineart cut inside the mask (changing them there changes nothing)."""
    image, controls = inputs
    mask = np.zeros((RESOLUTION, RESOLUTION), np.float32)
    mask[16:48, 16:48] = 1
    other = image.copy()
    other[16:48, 16:48] = 255 - other[16:48, 16:48]  # another "face" under the mask: not read
    a = run(pipe, (image, controls), mask_image=mask, anonymization_scale=1.0).images
    b = run(pipe, (other, controls), mask_image=mask, anonymization_scale=1.0).images
    assert not np.array_equal(a, b)  # the image is read: the VAE sees the whole crop, so fill it first (blind.py)
    # what blind.py hands it: the same filled context -> the same result, whatever was under the mask
    from camouflage.blind import fill_from_context

    filled_a = fill_from_context(image, mask > 0)
    filled_b = fill_from_context(other, mask > 0)
    np.testing.assert_array_equal(filled_a, filled_b)
    # depth/normal/seg/lineart residuals are exactly 0 in every cell the face touches; the pose's are not
    from camouflage.masked import as_mask, at_resolution

    face = as_mask(mask, 2, torch.device("cpu"))
    x = torch.randn(2, 4, RESOLUTION // 8, RESOLUTION // 8, generator=torch.Generator().manual_seed(0))
    text = pipe.encode_prompt(["", "a face"], x.device)
    cond = [pipe.control_image_processor.preprocess(Image.fromarray(controls[c])).repeat(2, 1, 1, 1) for c in CONTROLS]
    t = pipe.scheduler.timesteps[0] if len(pipe.scheduler.timesteps) else torch.tensor(500)
    with torch.no_grad():
        free = pipe.controlnet_residuals(x, t, text, cond, [0.5, 0.3, 0.5, 0.0, 0.5], face)
        pose = pipe.controlnet_residuals(x, t, text, cond, [0.0, 0.0, 0.0, 1.0, 0.0], face)
    for r_free, r_pose in zip([*free[0], free[1]], [*pose[0], pose[1]], strict=True):
        cells = (at_resolution(face, r_free) > 0).expand_as(r_free)
        assert cells.any() and (~cells).any() or r_free.shape[-1] == 1
        assert not r_free[cells].any() and r_pose[cells].abs().max() > 0
    with pytest.raises(ValueError, match="blind"):
        run(pipe, (filled_a, controls), mask_image=mask, anonymization_scale=1.25)


@pytest.mark.parametrize("name", ["dpmpp_sde_karras", "dpmpp_2m_sde_karras", "ddim"])
def test_schedulers_are_configurable_and_seeded(pipe, inputs, name: str) -> None:  # noqa: ANN001
    default = pipe.scheduler
    pipe.scheduler = make_scheduler(name, default.config)
    try:
        a, b = run(pipe, inputs).images, run(pipe, inputs).images
    finally:
        pipe.scheduler = default
    np.testing.assert_array_equal(a, b)
    assert np.isfinite(a).all()


def test_a_s_1_is_the_positive_controls_alone_and_runs_without_an_idf(pipe, inputs) -> None:  # noqa: ANN001
    """a_s = 1 skips the IDF branch (eps = eps_pos exactly); a pipeline with no IDF ControlNet
    (none is published) gives the same images, and refuses any other a_s."""
    steps = []
    with_idf = run(pipe, inputs, anonymization_scale=1.0, callback_on_step_end=lambda p, i, t, d: steps.append(d)).images
    assert steps and all(d["eps_idf"] is None and torch.equal(d["noise_pred"], d["eps_pos"]) for d in steps)
    idf, pipe.idf_controlnet = pipe.idf_controlnet, None
    try:
        np.testing.assert_array_equal(run(pipe, inputs, anonymization_scale=1.0).images, with_idf)
        with pytest.raises(ValueError, match="IDF"):
            run(pipe, inputs, anonymization_scale=1.25)
    finally:
        pipe.idf_controlnet = idf
