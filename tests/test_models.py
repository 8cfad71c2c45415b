"""The model manifest, the loader's resolution order, make-tiny and ``camstream models``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import camstream
from tiny_models import one_torch_thread, tiny_models  # noqa: F401 - fixtures

from camouflage.manifest import RANDOM_MARKER, ModelResolver, load_manifest, missing_message
from camouflage.methods import METHODS, build_method
from streamer.errors import ConfigError, ModelError

HASH = "0123456789abcdef0123456789abcdef01234567"


def test_manifest_names_every_checkpoint_with_repo_revision_files_licence() -> None:
    manifest = load_manifest()
    base = {"sd15", "vae", "controlnet_depth", "controlnet_normal", "controlnet_seg", "controlnet_pose",
            "controlnet_lineart", "idf_controlnet", "annotator_depth", "annotator_normal", "annotator_seg",
            "annotator_pose", "annotator_lineart", "captioner"}
    assert base <= set(manifest.entries)
    for entry in manifest:
        assert "/" in entry.repo and entry.revision and entry.files and entry.licence != "unknown", entry
    for name in base - {n for n in base if n.startswith(("annotator_", "captioner"))}:
        assert manifest[name].format == "safetensors"  # diffusion weights: never pickles
        assert not any(f.endswith((".bin", ".ckpt", ".pt", ".pth")) for f in manifest[name].files)
    assert manifest.expand(["base"])[:2] == ["sd15", "vae"]
    assert "annotator_depth" in manifest.expand(["base"])


def test_make_tiny_writes_every_entry_loudly_marked(tiny_models: Path) -> None:  # noqa: F811
    assert "RANDOM WEIGHTS" in (tiny_models / RANDOM_MARKER).read_text()
    resolver = ModelResolver(models_dir=tiny_models, offline=True)
    assert resolver.random_weights
    base = [e.name for e in resolver.manifest if e.section in ("base", "annotators")]
    paths = resolver.resolve_many(base)
    assert all(paths[n] == tiny_models / n for n in base)
    for name in base:
        for f in json.loads((tiny_models / name / "camstream_tiny.json").read_text())["files"]:
            assert not f.endswith((".bin", ".pt", ".pth", ".ckpt")), f


def test_models_dir_wins_then_hf_cache(tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # a hub cache holding stabilityai/sd-vae-ft-mse at refs/main, laid out as huggingface_hub writes it
    cache = tmp_path / "hub"
    repo = cache / "models--stabilityai--sd-vae-ft-mse"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(HASH)
    shutil.copytree(tiny_models / "vae", repo / "snapshots" / HASH)
    (repo / "snapshots" / HASH / "camstream_tiny.json").unlink()  # as on the hub: the manifest's own file list applies
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    from_cache = ModelResolver(offline=True).resolve("vae")
    assert from_cache == repo / "snapshots" / HASH
    from diffusers import AutoencoderKL

    AutoencoderKL.from_pretrained(from_cache, use_safetensors=True)  # the real loading path

    assert ModelResolver(models_dir=tiny_models, offline=True).resolve("vae") == tiny_models / "vae"
    # an incomplete snapshot (weights missing) is not a model
    (repo / "snapshots" / HASH / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError):
        ModelResolver(offline=True).resolve("vae")


def test_pickles_are_refused(tiny_models: Path, tmp_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "models"
    shutil.copytree(tiny_models / "controlnet_depth", bad / "controlnet_depth")
    weights = bad / "controlnet_depth" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    (bad / "controlnet_depth" / "camstream_tiny.json").write_text(json.dumps({"files": ["config.json", "diffusion_pytorch_model.bin"]}))
    with pytest.raises(ModelError, match="pickle"):
        ModelResolver(models_dir=bad, offline=True).resolve("controlnet_depth")


def test_offline_error_is_one_line_naming_fetch_and_pixelate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(ModelError) as info:
        ModelResolver(models_dir=tmp_path, offline=True).resolve_many(["sd15", "vae"], fetch_as="base")
    message = str(info.value)
    assert "\n" not in message
    assert "camstream models fetch base" in message and "--method pixelate" in message and "sd15, vae" in message
    assert "camstream models fetch vae" in missing_message(["vae"])


def test_methods_registry() -> None:
    assert "base" in METHODS and "base" in METHODS["base"].models
    with pytest.raises(ConfigError):
        build_method("no-such-method", None)


def test_cli_models_list_and_fetch_offline(tiny_models: Path) -> None:  # noqa: F811
    r = camstream("models", "list", "--models-dir", tiny_models, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "RANDOM WEIGHTS" in r.stdout and "SG161222/Realistic_Vision_V5.1_noVAE" in r.stdout
    r = camstream("models", "fetch", "vae", timeout=120, env={**__import__("os").environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 5 and "HF_HUB_OFFLINE" in r.stderr
