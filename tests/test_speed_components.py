"""The optional speed components (camouflage/speed.py): LCM-LoRA and the tiny VAE (TAESD),
their tiny stand-ins, the config switches and the realtime preset, on the tiny models."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import camstream
from tiny_models import RESOLUTION, one_torch_thread, tiny_config, tiny_models  # noqa: F401 - fixtures

from camouflage.models.manifest import ModelResolver, load_manifest
from camouflage.models.names import LCM_LORA, LCM_LORA_WEIGHTS, TINY_VAE
from camouflage.speed import (
    LCM_GUIDANCE_SCALE,
    apply_lcm_lora,
    apply_speed,
    decode_latents,
    encode_latents,
    load_tiny_vae,
    speed_models,
)
from streamer.config import load_config
from streamer.errors import ModelError

R = RESOLUTION


def light_pipe(models: Path):  # noqa: ANN201 - CamouflageLightPipeline
    from camouflage.light.pipeline import CamouflageLightPipeline

    return CamouflageLightPipeline.from_models_dir(models, scheduler="ddim", offline=True)


def run_light(pipe, seed: int = 0) -> np.ndarray:  # noqa: ANN001
    from camouflage.models.names import MAP_CHANNELS

    image = np.random.default_rng(0).integers(0, 256, (R, R, 3), dtype=np.uint8)
    amap = np.zeros((MAP_CHANNELS, R, R), np.float32)
    amap[:, 16:48, 16:48] = 0.5
    return pipe(image, amap, num_inference_steps=4, strength=0.75, anonymization_scale=1.5,
                generator=torch.Generator().manual_seed(seed)).images


@pytest.fixture(scope="module")
def fast_light(tiny_models: Path):  # noqa: ANN201, F811 - Light with both speed components
    pipe = light_pipe(tiny_models)
    apply_speed(pipe, ModelResolver(models_dir=tiny_models, offline=True), lcm=True, tiny_vae=True)
    return pipe


def without(models: Path, name: str, into: Path) -> Path:
    """A models dir linking every tiny model of ``models`` but ``name``."""
    into.mkdir()
    for entry in models.iterdir():
        if entry.name != name:
            (into / entry.name).symlink_to(entry)
    return into


# -- the tiny stand-ins -----------------------------------------------------------------


def test_manifest_has_both_entries_in_a_speed_section() -> None:
    manifest = load_manifest()
    assert manifest.sections["speed"] == [LCM_LORA, TINY_VAE]
    assert manifest[LCM_LORA].repo == "latent-consistency/lcm-lora-sdv1-5" and manifest[LCM_LORA].files == (LCM_LORA_WEIGHTS,)
    assert manifest[TINY_VAE].kind == "diffusers-autoencoder-tiny" and manifest[TINY_VAE].licence == "mit"
    assert all(manifest[n].format == "safetensors" for n in (LCM_LORA, TINY_VAE))
    assert speed_models(lcm=True, tiny_vae=False) == [LCM_LORA] and speed_models(False, False) == []


def test_make_tiny_writes_taesd_and_lcm_lora(tiny_models: Path) -> None:  # noqa: F811
    from diffusers import AutoencoderKL, AutoencoderTiny
    from safetensors.torch import load_file

    paths = ModelResolver(models_dir=tiny_models, offline=True).resolve_many([LCM_LORA, TINY_VAE])
    assert paths == {LCM_LORA: tiny_models / LCM_LORA, TINY_VAE: tiny_models / TINY_VAE}
    for name in (LCM_LORA, TINY_VAE):  # the published files, safetensors only
        files = [p.name for p in (tiny_models / name).rglob("*") if p.is_file()]
        assert files and all(f.endswith((".json", ".safetensors")) for f in files), files
    lora = load_file(tiny_models / LCM_LORA / LCM_LORA_WEIGHTS)
    # the real file's kohya layout, on the real file's target modules (convolutions too)
    assert lora and all(k.startswith("lora_unet_") and k.endswith((".lora_down.weight", ".lora_up.weight", ".alpha")) for k in lora)
    assert any("_conv1.lora_down" in k for k in lora) and any("_attn1_to_q.lora_down" in k for k in lora)

    # the tiny VAE's latents have the full VAE's shape and decode back to the input's size
    tiny, full = load_tiny_vae(tiny_models / TINY_VAE), AutoencoderKL.from_pretrained(tiny_models / "vae")
    assert isinstance(tiny, AutoencoderTiny) and tiny.config.scaling_factor == 1.0
    pixels = torch.rand(2, 3, R, R) * 2 - 1
    with torch.no_grad():
        latents = encode_latents(tiny, pixels)
        assert latents.shape == encode_latents(full, pixels, sample=False).shape == (2, 4, R // 8, R // 8)
        assert decode_latents(tiny, latents).shape == decode_latents(full, latents).shape == pixels.shape
        # TAESD encodes deterministically; the full VAE samples its posterior from the generator
        torch.testing.assert_close(encode_latents(tiny, pixels, torch.Generator().manual_seed(1)), latents)
        a, b = (encode_latents(full, pixels, torch.Generator().manual_seed(s)) for s in (1, 2))
        assert not torch.equal(a, b)


def test_cli_models_list_shows_both_present(tiny_models: Path) -> None:  # noqa: F811
    r = camstream("models", "list", "--models-dir", tiny_models, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert f" {tiny_models / LCM_LORA} " in rows[LCM_LORA] and "hub latent-consistency/lcm-lora-sdv1-5@" in rows[LCM_LORA]
    assert f" {tiny_models / TINY_VAE} " in rows[TINY_VAE] and "hub madebyollin/taesd@" in rows[TINY_VAE]


# -- the pipelines ----------------------------------------------------------------------


def test_lcm_lora_is_fused_into_the_unet_and_switches_the_scheduler(tiny_models: Path) -> None:  # noqa: F811
    from diffusers import LCMScheduler
    from safetensors.torch import load_file

    pipe = light_pipe(tiny_models)
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    x, t = torch.randn(1, 4, R // 8, R // 8, generator=torch.Generator().manual_seed(0)), torch.tensor(500)
    text = pipe.encode_prompt("", 1)
    ident = torch.zeros(1, pipe.image_encoder.config.projection_dim)
    residuals = [r * 0 for r in pipe.adapter(torch.zeros(1, pipe.adapter.config.in_channels, R, R))]
    with torch.no_grad():
        eps = pipe.predict_noise(x, t, text, ident, residuals)
        apply_lcm_lora(pipe, tiny_models / LCM_LORA)
        fused = pipe.predict_noise(x, t, text, ident, residuals)

    after = pipe.unet.state_dict()
    assert after.keys() == before.keys()  # fused, and the LoRA layers removed: the U-Net's own layout
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    lora = load_file(tiny_models / LCM_LORA / LCM_LORA_WEIGHTS)
    assert len(changed) == sum(k.endswith(".lora_down.weight") for k in lora)  # every adapted module, nothing else
    assert any("to_q" in k for k in changed) and any("conv1" in k for k in changed)
    assert not any("norm" in k for k in changed)  # only the adapted modules
    assert (fused - eps).abs().max() > 1e-3
    assert isinstance(pipe.scheduler, LCMScheduler)
    assert pipe.scheduler.config.beta_schedule == "scaled_linear"  # from the model's own scheduler config


def test_light_with_tiny_vae_and_lcm_runs_and_is_deterministic(fast_light, tiny_models: Path) -> None:  # noqa: ANN001, F811
    from diffusers import AutoencoderTiny, LCMScheduler

    assert isinstance(fast_light.vae, AutoencoderTiny) and isinstance(fast_light.scheduler, LCMScheduler)
    assert fast_light.config.vae == ("diffusers", "AutoencoderTiny") and fast_light.vae_scale_factor == 8
    first, again, other = run_light(fast_light, 0), run_light(fast_light, 0), run_light(fast_light, 1)
    assert first.shape == (1, R, R, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, again)
    assert np.abs(first - other).max() > 1e-3
    assert np.abs(first - run_light(light_pipe(tiny_models), 0)).max() > 1e-3  # the speed components did something


def test_base_with_tiny_vae_and_lcm_runs_and_is_deterministic(tiny_models: Path) -> None:  # noqa: F811
    from diffusers import AutoencoderTiny

    from camouflage.base.pipeline import CamouflageBasePipeline
    from camouflage.models.names import CONTROLS

    resolver = ModelResolver(models_dir=tiny_models, offline=True)
    pipe = CamouflageBasePipeline.from_manifest(resolver)
    apply_speed(pipe, resolver, lcm=True, tiny_vae=True)
    assert isinstance(pipe.vae, AutoencoderTiny)
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (R, R, 3), dtype=np.uint8)
    controls = {c: rng.integers(0, 256, (R, R, 3), dtype=np.uint8) for c in CONTROLS}

    def run(seed: int) -> np.ndarray:
        return pipe(image, controls, prompt="a person", num_inference_steps=4, guidance_scale=1.0,
                    generator=torch.Generator().manual_seed(seed), output_type="np").images

    first = run(0)
    assert first.shape == (1, R, R, 3) and np.isfinite(first).all()
    np.testing.assert_array_equal(first, run(0))
    assert np.abs(first - run(1)).max() > 1e-3


def test_a_tiny_vae_of_another_latent_shape_is_refused(fast_light, tmp_path: Path) -> None:  # noqa: ANN001
    from diffusers import AutoencoderTiny

    AutoencoderTiny(encoder_block_out_channels=(8, 8, 8), decoder_block_out_channels=(8, 8, 8),
                    num_encoder_blocks=(1, 1, 1), num_decoder_blocks=(1, 1, 1)).save_pretrained(tmp_path / TINY_VAE)
    vae = fast_light.vae
    with pytest.raises(ModelError, match="do not match") as info:
        apply_speed(fast_light, {TINY_VAE: tmp_path / TINY_VAE}, lcm=False, tiny_vae=True)
    assert "\n" not in str(info.value) and fast_light.vae is vae


@pytest.mark.parametrize(("module", "why"), [
    ("unet.no_such_block.to_q", "not found in the base model"),  # keys for another U-Net
    ("text_encoder.text_model.encoder.layers.0.self_attn.q_proj", "no LoRA weights for this U-Net"),  # none for the U-Net
])
def test_a_lora_for_another_network_is_refused(tiny_models: Path, tmp_path: Path, module: str, why: str) -> None:  # noqa: F811
    from safetensors.torch import save_file

    (tmp_path / LCM_LORA).mkdir()
    save_file({f"{module}.lora_A.weight": torch.zeros(4, 32), f"{module}.lora_B.weight": torch.zeros(32, 4)},
              tmp_path / LCM_LORA / LCM_LORA_WEIGHTS)
    with pytest.raises(ModelError, match=why) as info:
        apply_lcm_lora(light_pipe(tiny_models), tmp_path / LCM_LORA)
    assert "\n" not in str(info.value) and str(info.value).startswith(str(tmp_path / LCM_LORA))


# -- missing models and the config ------------------------------------------------------


def test_missing_taesd_offline_is_the_one_line_model_error(fast_light, tiny_models: Path, tmp_path: Path,  # noqa: ANN001, F811
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from camouflage.base.anonymizer import build_base_anonymizer
    from camouflage.light.anonymizer import build_light_anonymizer

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    models = without(tiny_models, TINY_VAE, tmp_path / "models")
    with pytest.raises(ModelError) as info:
        apply_speed(fast_light, ModelResolver(models_dir=models, offline=True), lcm=False, tiny_vae=True)
    assert str(info.value).startswith("model(s) not found: taesd (offline)") and "camstream models fetch taesd" in str(info.value)

    config = tiny_config(models)
    config.speed.tiny_vae = True
    for build, fetch in ((build_base_anonymizer, "camstream models fetch base taesd"),
                         (build_light_anonymizer, "camstream models fetch taesd")):
        with pytest.raises(ModelError) as info:
            build(config)
        message = str(info.value)
        assert "\n" not in message and "model(s) not found: taesd" in message and fetch in message, message


def test_realtime_preset_and_the_builders_use_the_switches(tiny_models: Path) -> None:  # noqa: F811
    from diffusers import AutoencoderTiny, LCMScheduler

    from camouflage.base.anonymizer import build_base_anonymizer
    from camouflage.light.anonymizer import build_light_anonymizer
    from streamer.config import Config

    assert Config().speed.lcm is False and Config().speed.tiny_vae is False
    preset = load_config(["realtime"])
    assert preset.speed.lcm and preset.speed.tiny_vae and preset.speed.lcm_steps == 4
    assert preset.light.steps == 4 and preset.light.resolution == 512
    quality = load_config(["quality"])
    assert quality.camouflage.mode == "quality" and quality.camouflage.keyframe_every == 24
    assert not quality.speed.lcm and quality.detection.every == 1

    config = tiny_config(tiny_models)
    config.speed = preset.speed
    config.speed.lcm_steps = 2
    config.light.resolution = R
    light = build_light_anonymizer(config)
    assert light.steps == 2 and isinstance(light.pipe.vae, AutoencoderTiny) and isinstance(light.pipe.scheduler, LCMScheduler)
    base = build_base_anonymizer(config)
    assert base.settings.steps == 2 and base.settings.guidance_scale == LCM_GUIDANCE_SCALE and config.base.steps != 2
    assert isinstance(base.pipeline.vae, AutoencoderTiny) and isinstance(base.pipeline.scheduler, LCMScheduler)


# -- out of memory, batching, compile, streams ------------------------------------------------


class _OOM:
    """Work that runs out of memory above ``fits`` items (as activations scale with the batch)."""

    def __init__(self, fits: int, error: type[Exception] = RuntimeError) -> None:
        self.fits, self.error, self.batches = fits, error, []

    def __call__(self, items):  # noqa: ANN001, ANN204
        self.batches.append(len(items))
        if len(items) > self.fits:
            raise self.error("CUDA out of memory. Tried to allocate 2.00 GiB")
        return [i * 10 for i in items]


def test_out_of_memory_retries_in_halves_then_offloads_then_gives_up() -> None:
    from camouflage.memory import MemoryPolicy

    policy = MemoryPolicy()
    work = _OOM(fits=2)
    assert policy.run(work, [1, 2, 3, 4, 5]) == [10, 20, 30, 40, 50]  # in order, whatever the split
    assert work.batches[0] == 5 and max(work.batches[1:]) <= 3 and policy.retries >= 2
    offloads = []
    policy = MemoryPolicy(offload=lambda: offloads.append(1))

    def run(items):  # noqa: ANN001, ANN202 - one crop fits only once the models are offloaded
        if not offloads:
            raise RuntimeError("CUDA out of memory (one crop)")
        return [i * 10 for i in items]

    assert policy.run(run, [7]) == [70] and offloads == [1] and policy.offloaded
    with pytest.raises(RuntimeError, match="out of memory"):  # offloaded already: the fallback's turn
        policy.run(_OOM(fits=0), [1])
    assert offloads == [1]
    with pytest.raises(RuntimeError, match="out of memory"):  # on a CPU there is nothing to offload
        MemoryPolicy().run(_OOM(fits=0), [1])
    other = MemoryPolicy()
    with pytest.raises(ValueError):  # any other error: at once, no retry
        other.run(lambda items: (_ for _ in ()).throw(ValueError("bad input")), [1, 2])
    assert other.retries == 0
    assert MemoryPolicy().run(_OOM(fits=1, error=torch.OutOfMemoryError), [1, 2]) == [10, 20]


def test_annotators_and_the_captioner_give_in_one_batch_what_they_give_one_by_one(tiny_models: Path) -> None:  # noqa: F811
    from camouflage.base.annotators import Captioner, load_annotators

    resolver = ModelResolver(models_dir=tiny_models, offline=True)
    rng = np.random.default_rng(4)
    crops = [rng.integers(0, 256, (80, 80, 3), np.uint8) for _ in range(3)]
    for name, annotator in load_annotators(resolver, controls=("depth", "seg", "normal", "lineart")).items():
        batched, single = annotator.batch(crops, R), [annotator(c, R) for c in crops]
        for b, s in zip(batched, single, strict=True):
            assert b.shape == s.shape == (R, R, 3)
            assert np.abs(b.astype(int) - s).max() <= 1, name  # float reductions over a batch: at most one level
    captioner = Captioner.from_pretrained(resolver.resolve("captioner"))
    assert captioner.batch(crops) == [captioner(c) for c in crops]


def test_compile_keeps_the_modules_their_hooks_and_their_results(tiny_models: Path) -> None:  # noqa: F811
    from camouflage.base.pipeline import CamouflageBasePipeline
    from camouflage.speed import apply_compile

    pipe = CamouflageBasePipeline.from_manifest(ModelResolver(models_dir=tiny_models, offline=True))
    unet = pipe.unet
    x = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    text = torch.randn(1, 77, unet.config.cross_attention_dim, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = unet(x, 10, encoder_hidden_states=text).sample
    calls = []
    unet.register_forward_pre_hook(lambda *_: calls.append(1))
    apply_compile(pipe, backend="eager")  # inductor needs a compiler and minutes: the wiring is what is tested
    assert pipe.unet is unet and unet._camstream_compiled and all(n._camstream_compiled for n in pipe.controlnet.nets)
    with torch.no_grad():
        after = unet(x, 10, encoder_hidden_states=text).sample
    torch.testing.assert_close(before, after, rtol=1e-4, atol=1e-4)
    assert calls == [1]  # the hook still runs (outside the compiled forward)
    assert unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)


def test_worker_streams_are_a_no_op_on_the_cpu() -> None:
    from camouflage.device import worker_stream

    with worker_stream(torch.device("cpu"), high_priority=True) as stream:
        assert stream is None
