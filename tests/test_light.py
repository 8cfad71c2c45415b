"""CAMOUFLaGE-Light: attribute map, adapters, pipeline, anonymizer (tiny random models)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from tiny_models import RESOLUTION, build_tiny, one_torch_thread  # noqa: F401 - autouse fixture

from camouflage.light.attribute_map import KEYPOINT_CHANNEL, build_attribute_map, face_owner
from camouflage.light.attributes import NUM_ATTRIBUTES, FaceAttributes, face_keypoints
from camouflage.models.names import MAP_CHANNELS

R = RESOLUTION


def face(box, attr: int, value: float, base: float = 0.1, keypoints=None) -> FaceAttributes:  # noqa: ANN001
    probs = np.full(NUM_ATTRIBUTES, base, np.float32)
    probs[attr] = value
    box = np.array(box, np.float32)
    return FaceAttributes(box, probs, face_keypoints(box, keypoints))


# ---------------------------------------------------------------- the 41-channel map
def test_two_faces_paint_two_disjoint_regions_with_their_own_channels() -> None:
    a, b = face([4, 4, 24, 28], attr=3, value=0.9), face([36, 30, 60, 60], attr=20, value=0.8, base=0.3)
    m = build_attribute_map([a, b], (R, R))
    assert m.shape == (MAP_CHANNELS, R, R) and m.dtype == np.float32
    in_a, in_b = np.zeros((R, R), bool), np.zeros((R, R), bool)
    in_a[4:28, 4:24] = True
    in_b[30:60, 36:60] = True
    np.testing.assert_allclose(m[:NUM_ATTRIBUTES][:, in_a], np.repeat(a.probabilities[:, None], in_a.sum(), 1))
    np.testing.assert_allclose(m[:NUM_ATTRIBUTES][:, in_b], np.repeat(b.probabilities[:, None], in_b.sum(), 1))
    assert not m[:, ~(in_a | in_b)].any()  # nothing outside the faces
    # each face's keypoints stay inside that face
    kp = m[KEYPOINT_CHANNEL] > 0
    assert kp[in_a].any() and kp[in_b].any() and not kp[~(in_a | in_b)].any()


def test_overlapping_faces_larger_box_wins_and_values_never_mix() -> None:
    small, large = face([10, 10, 30, 30], attr=0, value=0.9), face([20, 20, 60, 60], attr=1, value=0.7)
    for order in ([small, large], [large, small]):
        m = build_attribute_map(order, (R, R))
        assert m[1, 25, 25] == pytest.approx(0.7) and m[0, 25, 25] == pytest.approx(0.1)  # overlap: the larger
        assert m[0, 12, 12] == pytest.approx(0.9)  # the smaller keeps what is not covered
        values = {tuple(np.round(m[:NUM_ATTRIBUTES, y, x], 5)) for y in range(R) for x in range(R)}
        assert values == {tuple(np.round(f.probabilities, 5)) for f in order} | {(0.0,) * NUM_ATTRIBUTES}


def test_no_face_gives_an_all_zero_map() -> None:
    m = build_attribute_map([], (R, 2 * R))
    assert m.shape == (MAP_CHANNELS, R, 2 * R) and not m.any()


@pytest.mark.parametrize(
    ("offset", "scale", "expect_box"),
    [((0, 0), 1.0, (8, 8, 24, 24)), ((8, 8), 2.0, (0, 0, 32, 32)), ((-16, 0), 0.5, (12, 4, 20, 12))],
)
def test_map_follows_the_crop_transform(offset, scale, expect_box) -> None:  # noqa: ANN001
    m = build_attribute_map([face([8, 8, 24, 24], attr=5, value=1.0)], (R, R), offset=offset, scale=scale)
    x1, y1, x2, y2 = expect_box
    assert (m[5] == 1.0).sum() == (x2 - x1) * (y2 - y1) and m[5, y1, x1] == 1.0 and m[5, y2 - 1, x2 - 1] == 1.0


def test_face_owner_ties_go_to_the_face_listed_last() -> None:
    owner = face_owner([np.array([0, 0, 10, 10]), np.array([5, 5, 15, 15])], (20, 20))
    assert owner[7, 7] == 1 and owner[2, 2] == 0 and owner[18, 18] == -1


@pytest.mark.parametrize("landmarks", [None, np.array([[1, 2], [3, 4], [5, 6], [7, 8], [9, 10]], np.float32)])
def test_keypoints_come_from_the_detector_else_the_template(landmarks) -> None:  # noqa: ANN001
    kp = face_keypoints(np.array([0, 0, 100, 100], np.float32), landmarks)
    assert kp.shape == (5, 2)
    if landmarks is not None:
        np.testing.assert_array_equal(kp, landmarks)
    else:
        assert kp[0, 0] < kp[1, 0] and kp[2, 1] < kp[3, 1]  # left eye left of right eye, nose above mouth


# ---------------------------------------------------------------- adapters
def test_t2i_residual_layout_matches_sd15() -> None:
    from camouflage.models.adapters import residual_layout

    sd15 = {"down_block_types": ["CrossAttnDownBlock2D"] * 3 + ["DownBlock2D"], "block_out_channels": [320, 640, 1280, 1280]}
    assert residual_layout(sd15) == [(1, 320), (2, 640), (4, 1280), (8, 1280)]


# ---------------------------------------------------------------- pipeline on tiny models
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):  # noqa: ANN001, ANN201
    return build_tiny(tmp_path_factory)


@pytest.fixture(scope="module")
def pipe(tiny):  # noqa: ANN001, ANN201
    from camouflage.light.pipeline import CamouflageLightPipeline

    return CamouflageLightPipeline.from_models_dir(tiny, scheduler="ddim")


@pytest.fixture(scope="module")
def inputs(data):  # noqa: ANN001, ANN201
    import cv2

    image = cv2.cvtColor(cv2.imread(str(data / "grace_hopper_512x512.jpg")), cv2.COLOR_BGR2RGB)
    image = cv2.resize(image, (R, R), interpolation=cv2.INTER_AREA)
    amap = build_attribute_map([face([16, 12, 48, 52], attr=31, value=0.9)], (R, R))
    return image, amap


def run(pipe, image, amap, seed=0, **kw):  # noqa: ANN001, ANN003, ANN201
    kw = {"num_inference_steps": 3, "strength": 0.8, **kw}
    return pipe(image, amap, generator=torch.Generator().manual_seed(seed), **kw).images


def test_ip_adapter_file_loads_through_diffusers_and_round_trips(tiny, pipe) -> None:  # noqa: ANN001
    from diffusers.models.attention_processor import IPAdapterAttnProcessor2_0

    from camouflage.models import names
    from camouflage.models.adapters import ip_adapter_state_dict, load_ip_adapter_file

    assert any(isinstance(p, IPAdapterAttnProcessor2_0) for p in pipe.unet.attn_processors.values())
    on_disk = load_ip_adapter_file(tiny / names.IP_ADAPTER / names.IP_ADAPTER_WEIGHTS)
    flat = {f"{h}.{k}": v for h, d in on_disk.items() for k, v in d.items()}
    back = ip_adapter_state_dict(pipe.unet)
    assert back.keys() == flat.keys()
    for k in flat:
        torch.testing.assert_close(back[k], flat[k])


@pytest.mark.parametrize("scheduler", ["ddim", "dpmpp_sde_karras", "dpmpp_2m_sde_karras", "euler_a"])
def test_pipeline_is_deterministic_with_a_seed(tiny, inputs, scheduler) -> None:  # noqa: ANN001
    from camouflage.light.pipeline import CamouflageLightPipeline

    p = CamouflageLightPipeline.from_models_dir(tiny, scheduler=scheduler)
    image, amap = inputs
    first, again, other = run(p, image, amap, 0), run(p, image, amap, 0), run(p, image, amap, 1)
    assert first.shape == (1, R, R, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3


def test_the_map_and_the_identity_reach_the_unet(pipe, inputs) -> None:  # noqa: ANN001
    image, amap = inputs
    ref = run(pipe, image, amap)
    assert np.abs(ref - run(pipe, image, np.zeros_like(amap))).max() > 1e-3  # T2I-Adapter
    other = amap.copy()
    other[31] *= 0.1
    assert np.abs(ref - run(pipe, image, other)).max() > 1e-4  # one attribute is enough
    ident = torch.randn(1, pipe.image_encoder.config.projection_dim, generator=torch.Generator().manual_seed(3))
    assert np.abs(ref - run(pipe, image, amap, identity_embeds=ident)).max() > 1e-3  # IP-Adapter
    assert np.abs(ref - run(pipe, image, amap, adapter_conditioning_scale=0.0)).max() > 1e-3


def test_negative_identity_guidance(pipe, inputs) -> None:  # noqa: ANN001
    image, amap = inputs
    target = torch.randn(1, pipe.image_encoder.config.projection_dim, generator=torch.Generator().manual_seed(5))
    own = pipe.encode_identity(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    plain = run(pipe, image, amap, identity_embeds=target, original_embeds=own)
    pushed = run(pipe, image, amap, identity_embeds=target, original_embeds=own, anonymization_scale=2.0)
    assert np.abs(plain - pushed).max() > 1e-3
    # eps = eps_neg + a_s (eps_pos - eps_neg): identical branches make a_s irrelevant
    same = run(pipe, image, amap, identity_embeds=own, original_embeds=own, anonymization_scale=2.0)
    np.testing.assert_allclose(same, run(pipe, image, amap, identity_embeds=own), atol=1e-4)
    # a_s = 0 is the negative branch alone: the original's identity
    zero = run(pipe, image, amap, identity_embeds=target, original_embeds=own, anonymization_scale=0.0)
    np.testing.assert_allclose(zero, run(pipe, image, amap, identity_embeds=own), atol=1e-4)


def test_guidance_branches_in_one_unet_call(pipe, inputs) -> None:  # noqa: ANN001
    """U-Net samples per step: 1, + the unconditional branch (text CFG with the zero image),
    + the push (the original's identity); all in one batched call."""
    from camouflage.guidance import unet_branches

    image, amap = inputs
    own = pipe.encode_identity(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    batches = []
    hook = pipe.unet.register_forward_pre_hook(lambda m, a, kw: batches.append(int((a[0] if a else kw["sample"]).shape[0])),
                                               with_kwargs=True)
    try:
        for g, a_s in ((1.0, 1.0), (7.5, 1.0), (1.0, 1.5), (7.5, 1.5)):
            batches.clear()
            run(pipe, image, amap, guidance_scale=g, anonymization_scale=a_s, original_embeds=own,
                prompt="a face", negative_prompt="blurry")
            assert batches and set(batches) == {unet_branches(g, a_s != 1.0)}, (g, a_s, batches)
    finally:
        hook.remove()
    assert unet_branches(7.5, True) == 3 and unet_branches(1.0, False) == 1


def test_the_unconditional_branch_is_the_negative_prompt_with_the_zero_image(pipe, inputs) -> None:  # noqa: ANN001
    """As diffusers builds it for a projected-embedding IP-Adapter: zeros. With the same prompt
    as negative prompt and no target (the zero image), both CFG branches are the same, so the
    scale changes nothing."""
    image, amap = inputs
    zero = pipe.unconditional_identity(2)
    assert zero.shape == (2, pipe.image_encoder.config.projection_dim) and not zero.any()
    plain = run(pipe, image, amap, prompt="a face", negative_prompt="a face")
    guided = run(pipe, image, amap, prompt="a face", negative_prompt="a face", guidance_scale=7.5)
    np.testing.assert_allclose(plain, guided, atol=1e-4)
    assert np.abs(guided - run(pipe, image, amap, prompt="a face", negative_prompt="blurry", guidance_scale=7.5)).max() > 1e-4


def test_identity_push_on_top_of_cfg_is_the_one_formula(pipe, inputs, monkeypatch) -> None:  # noqa: ANN001
    """eps = eps_push + a_s * (CFG(uncond, cond) - eps_push): camouflage.guidance, as Base mixes its IDF."""
    from camouflage import guidance

    image, amap = inputs
    own = pipe.encode_identity(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255)
    target = torch.randn(1, pipe.image_encoder.config.projection_dim, generator=torch.Generator().manual_seed(5))
    seen = []
    predict = pipe.predict_noise
    monkeypatch.setattr(pipe, "predict_noise", lambda *a, **k: seen.append(predict(*a, **k)) or seen[-1])
    from camouflage.light import pipeline as module

    mixed = []
    original_identity_guidance = module.identity_guidance
    monkeypatch.setattr(module, "identity_guidance", lambda p, n, a: mixed.append(original_identity_guidance(p, n, a)) or mixed[-1])
    run(pipe, image, amap, identity_embeds=target, original_embeds=own, guidance_scale=3.0, anonymization_scale=1.5)
    u, c, o = seen[0].chunk(3)
    torch.testing.assert_close(mixed[0], guidance.identity_guidance(guidance.classifier_free_guidance(u, c, 3.0), o, 1.5))


def test_identity_blind_mask_starts_the_face_from_noise_and_keeps_the_context(pipe, inputs) -> None:  # noqa: ANN001
    image, amap = inputs
    mask = np.zeros((R, R), np.float32)
    mask[16:48, 16:48] = 1
    a = run(pipe, image, amap, mask_image=mask, strength=0.3)
    b = run(pipe, image, amap, mask_image=mask, strength=0.9)
    np.testing.assert_array_equal(a, b)  # strength 1 inside: the asked strength does not apply
    plain = run(pipe, image, amap, strength=0.7)
    # outside the face (away from its edge) the context follows the image more closely than the face does
    outside = np.ones((R, R), bool)
    outside[8:56, 8:56] = False
    assert np.abs(a - plain)[0][outside].mean() < np.abs(a - plain)[0][20:44, 20:44].mean()


def test_prompts_are_encoded_once_and_give_what_the_text_encoder_gives(pipe) -> None:  # noqa: ANN001
    calls = []
    hook = pipe.text_encoder.register_forward_pre_hook(lambda *_: calls.append(1))
    try:
        with torch.no_grad():
            first = pipe.encode_prompt(["a cached face", "a cached person", "a cached face"], 3)
            again = pipe.encode_prompt("a cached person", 2)
            direct = pipe._encode_text(["a cached face", "a cached person", "a cached face"])
    finally:
        hook.remove()
    assert len(calls) == 2  # one batch for the two new prompts, none for the cached one, one uncached reference
    torch.testing.assert_close(first, direct)
    torch.testing.assert_close(again, direct[[1, 1]])


def test_missing_models_are_one_clear_model_error(tmp_path) -> None:  # noqa: ANN001
    from camouflage.light.pipeline import CamouflageLightPipeline
    from streamer.errors import ModelError

    with pytest.raises(ModelError) as err:
        CamouflageLightPipeline.from_models_dir(tmp_path, offline=True)
    message = str(err.value)
    assert "\n" not in message and "farl" in message and "t2i_adapter_light" in message


def test_facer_attribute_model_loads_and_gives_40_probabilities(tiny, inputs) -> None:  # noqa: ANN001
    from camouflage.light.attributes import FacerAttributeModel
    from camouflage.models import names

    model = FacerAttributeModel.from_pretrained(tiny / names.FACER_ATTRIBUTES)
    image, _ = inputs
    probs = model.predict_faces(image, [np.array([10, 10, 50, 50], np.float32), np.array([0, 0, 20, 20], np.float32)])
    assert probs.shape == (2, 40) and ((probs > 0) & (probs < 1)).all()
    assert model.predict_faces(image, []).shape == (0, 40)


# ---------------------------------------------------------------- anonymizer
@pytest.fixture(scope="module")
def anonymizer(tiny):  # noqa: ANN001, ANN201
    from camouflage.light.anonymizer import build_light_anonymizer
    from streamer.config import Config

    config = Config()
    config.models.dir, config.models.device = str(tiny), "cpu"
    config.light.resolution, config.light.steps, config.light.scheduler = R, 2, "ddim"
    config.light.anonymization_scale = 1.5
    return build_light_anonymizer(config)


def test_face_scope_replaces_regions_and_leaves_the_rest(anonymizer, data) -> None:  # noqa: ANN001
    import cv2

    from tracking.tracker import Region

    image = cv2.cvtColor(cv2.imread(str(data / "grace_hopper_512x512.jpg")), cv2.COLOR_BGR2RGB)
    regions = [Region(box=np.array([180, 90, 330, 300], np.float32), track_id=1),
               Region(box=np.array([20, 400, 70, 460], np.float32), track_id=2)]
    anonymizer.scope = "face"
    out = anonymizer.anonymize(image.copy(), regions)
    changed = np.abs(out.astype(int) - image).sum(-1) > 0
    for r in regions:
        x1, y1, x2, y2 = r.box.astype(int)
        assert changed[y1:y2, x1:x2].mean() > 0.9
    # crop windows (context 0.5): x 45-465, y 0-405 and x 0-105, y 370-490; nothing outside changes
    assert not changed[491:].any() and not changed[:, 466:].any() and not changed[406:, 106:].any()
    assert set(anonymizer.identities) == {1, 2}
    # from the 2nd frame on, a track's target is its own first generated face: stable
    remembered = {k: v.clone() for k, v in anonymizer.identities.items()}
    second, third = anonymizer.anonymize(image.copy(), regions), anonymizer.anonymize(image.copy(), regions)
    np.testing.assert_array_equal(second, third)
    assert all(torch.equal(remembered[k], anonymizer.identities[k]) for k in remembered)


def test_scene_scope_changes_every_pixel(anonymizer, data) -> None:  # noqa: ANN001
    import cv2

    from tracking.tracker import Region

    image = cv2.cvtColor(cv2.imread(str(data / "messi5.jpg")), cv2.COLOR_BGR2RGB)
    anonymizer.scope = "scene"
    try:
        out = anonymizer.anonymize(image.copy(), [Region(box=np.array([200, 60, 260, 130], np.float32), track_id=4)])
    finally:
        anonymizer.scope = "face"
    assert out.shape == image.shape and (np.abs(out.astype(int) - image).sum(-1) > 0).mean() > 0.9


@pytest.mark.parametrize(
    "box",
    [[0, 0, 40, 50], [490, 470, 512, 512], [250, 250, 256, 257], [-10, 200, 30, 260]],
    ids=["corner", "far-corner", "tiny-6px", "off-frame"],
)
def test_every_covered_pixel_is_generated_at_borders_and_tiny_faces(anonymizer, box) -> None:  # noqa: ANN001
    from tracking.tracker import Region

    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, (512, 512, 3), dtype=np.uint8)
    region = Region(box=np.array(box, np.float32), track_id=7)
    out = anonymizer.anonymize(image.copy(), [region])
    (x1, y1, x2, y2), mask = anonymizer.shape.mask(region.box, 512, 512)
    changed = np.abs(out[y1:y2, x1:x2].astype(int) - image[y1:y2, x1:x2]).sum(-1) > 0
    assert changed[mask[:, :, 0]].mean() > 0.95


def test_person_scope_generates_each_person_once_and_skips_faces_inside(anonymizer, monkeypatch) -> None:  # noqa: ANN001
    from tracking.tracker import Region

    calls = []
    original = anonymizer._generate
    monkeypatch.setattr(anonymizer, "_generate", lambda *a, **k: calls.append(1) or original(*a, **k))
    image = np.random.default_rng(2).integers(0, 256, (256, 256, 3), dtype=np.uint8)
    person = Region(box=np.array([60, 20, 160, 240], np.float32), track_id=11, kind="person")
    inside = Region(box=np.array([95, 30, 125, 65], np.float32), track_id=12, kind="face")
    elsewhere = Region(box=np.array([200, 200, 230, 235], np.float32), track_id=13, kind="face")
    anonymizer.scope = "person"
    try:
        out = anonymizer.anonymize(image.copy(), [inside, person, elsewhere])
    finally:
        anonymizer.scope = "face"
    assert len(calls) == 2  # the person and the face outside it
    for r in (person, elsewhere):
        (x1, y1, x2, y2), mask = anonymizer.shape.mask(r.box, 256, 256)
        assert (np.abs(out[y1:y2, x1:x2].astype(int) - image[y1:y2, x1:x2]).sum(-1) > 0)[mask[:, :, 0]].mean() > 0.95


def test_a_keyframe_sets_the_track_identity(anonymizer) -> None:  # noqa: ANN001
    keyframe = np.random.default_rng(3).integers(0, 256, (128, 128, 3), dtype=np.uint8)
    anonymizer.set_keyframe(42, keyframe, np.array([30, 30, 90, 100], np.float32))
    target = anonymizer._target_identity(42, torch.ones(32))
    assert torch.equal(target, anonymizer.identities[42]) and target.shape == (32,)
