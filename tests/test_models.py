"""The model manifest, the loader's resolution order, make-tiny and ``camstream models``."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from conftest import camstream
from tiny_models import one_torch_thread, public_models, tiny_models  # noqa: F401 - fixtures

from camouflage.models.cli import entry_size
from camouflage.models.manifest import RANDOM_MARKER, ModelResolver, human_size, load_manifest, missing_message, parse_size
from camouflage.models.methods import METHODS, build_method
from streamer.errors import ConfigError, ModelError

HASH = "0123456789abcdef0123456789abcdef01234567"


def test_manifest_names_every_checkpoint_with_a_real_source() -> None:
    manifest = load_manifest()
    base = {"sd15", "vae", "controlnet_depth", "controlnet_normal", "controlnet_seg", "controlnet_pose",
            "controlnet_lineart", "idf_controlnet", "annotator_depth", "annotator_normal", "annotator_seg",
            "annotator_pose", "annotator_lineart", "captioner"}
    assert base <= set(manifest.entries)
    for entry in manifest:
        assert entry.files and entry.licence != "unknown", entry
        assert not entry.repo.startswith("camstream/"), entry  # no placeholder repos
        if entry.source == "hub":
            assert "/" in entry.repo and entry.revision, entry
        elif entry.source == "url":
            assert entry.url.startswith("https://") and len(entry.files) == 1, entry
        else:
            assert entry.source in ("manual", "trained") and entry.hint and entry.optional, entry
    for name in base - {n for n in base if n.startswith(("annotator_", "captioner"))}:
        assert manifest[name].format == "safetensors"  # diffusion weights: never pickles
        assert not any(f.endswith((".bin", ".ckpt", ".pt", ".pth")) for f in manifest[name].files)
    # what the publishers really ship: main's pickles where main has no safetensors, release files by name
    assert manifest["annotator_seg"].files[1] == "pytorch_model.bin" and manifest["captioner"].format == "pickle"
    assert manifest["facer_attributes"].files == ("face_attribute.farl.celeba.pt",)
    assert manifest["farl"].source == "manual" and manifest["farl"].files == ("FaRL-Base-Patch16-LAIONFace20M-ep*.pth",)
    assert manifest["ip_adapter_plus_face"].repo == "h94/IP-Adapter"
    assert manifest.expand(["base"])[:2] == ["sd15", "vae"]
    assert "annotator_depth" in manifest.expand(["base"])
    # the default method needs no trained or hand-supplied file
    assert all(manifest[n].fetchable or manifest[n].optional for n in manifest.expand(["camouflage"]))
    assert "farl" not in manifest.expand(["camouflage"])


def test_revisions_are_pins_refs_or_main_and_sizes_are_as_listed() -> None:
    """A pin is a full commit hash (a short one would not resolve); every listed size reads as
    the hub writes it, and the sizes a publisher's page lists add up to that listing."""
    for entry in load_manifest():
        if entry.source == "hub":
            assert entry.pinned or entry.revision == "main" or entry.revision.startswith("refs/pr/"), entry
        for listed in entry.listed_sizes.values():
            assert parse_size(listed) > 0, (entry.name, listed)
    manifest = load_manifest()
    assert manifest["controlnet_pose"].pinned and "(pinned)" in manifest["controlnet_pose"].where
    assert manifest["ip_adapter_plus_face"].listed_bytes == 98_200_000 + 560 + 2_530_000_000
    assert parse_size("1.45 GB") == 1_450_000_000 and parse_size("560 Bytes") == 560 and parse_size("8.76 kB") == 8760
    assert human_size(1_450_000_000) == "1.45 GB" and human_size(98_200_000) == "98.2 MB" and human_size(560) == "560 B"
    for bad in ("1.45", "about 1 GB", "1.45 GiB", "-3 MB"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_a_size_that_is_not_a_listing_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "models.yaml"
    path.write_text("base:\n  vae:\n    repo: a/b\n    revision: main\n    kind: vae\n    files: [x.safetensors]\n"
                    "    licence: mit\n    sizes: {x.safetensors: big}\n")
    with pytest.raises(ModelError, match="vae.*sizes"):
        load_manifest(path)


def test_list_size_is_exact_when_known_listed_when_listed_else_unknown(tmp_path: Path) -> None:
    """Never a guess: the files' own size, else the lock's, else the publisher's listing
    (marked), else "unknown"."""
    manifest = load_manifest()
    pose, farl = manifest["controlnet_pose"], manifest["farl"]
    assert entry_size(pose, None, None) == "~1.45 GB (listed)"
    assert entry_size(farl, None, None) == "size unknown until imported"
    assert entry_size(manifest["facer_attributes"], None, None) == "size unknown until fetched"
    assert entry_size(manifest["idf_controlnet"], None, None) == "size unknown until trained"
    record = {"files": {"config.json": {"sha256": "0" * 64, "size": 999},
                        "diffusion_pytorch_model.safetensors": {"sha256": "1" * 64, "size": 1_445_157_124}}}
    assert entry_size(pose, None, record) == "1.45 GB (locked)"
    folder = tmp_path / "controlnet_pose"
    folder.mkdir()
    (folder / "config.json").write_bytes(b"{}")
    (folder / "diffusion_pytorch_model.safetensors").write_bytes(b"x" * 1234)
    (folder / "unrelated.txt").write_bytes(b"x" * 10**6)  # not a file of the entry: not counted
    assert entry_size(pose, folder, record) == "1.24 kB"


def test_cli_models_list_without_models_shows_source_size_and_licence(tmp_path: Path) -> None:
    r = camstream("models", "list", "--models-dir", tmp_path, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1",
                                                                                  "HF_HUB_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line.strip()}
    assert set(rows) == set(load_manifest().entries)
    assert "~1.45 GB (listed)" in rows["controlnet_pose"] and "openrail" in rows["controlnet_pose"]
    assert "hub lllyasviel/control_v11p_sd15_openpose@9ae9f970358d (pinned)" in rows["controlnet_pose"]
    assert "~3.93 GB (listed)" in rows["sd15"] and "@main (locked at fetch)" in rows["sd15"]
    assert "size unknown until imported" in rows["farl"] and "manual:" in rows["farl"] and " mit " in rows["farl"]
    assert all(" missing " in row for row in rows.values())


def test_make_tiny_writes_every_entry_in_the_publishers_file_names(tiny_models: Path) -> None:  # noqa: F811
    assert "RANDOM WEIGHTS" in (tiny_models / RANDOM_MARKER).read_text()
    resolver = ModelResolver(models_dir=tiny_models, offline=True)
    assert resolver.random_weights
    paths = resolver.resolve_many([e.name for e in resolver.manifest])  # the manifest's own file lists apply
    assert all(paths[e.name] == tiny_models / e.name for e in resolver.manifest)
    assert (tiny_models / "facer_attributes" / "face_attribute.farl.celeba.pt").is_file()
    assert (tiny_models / "farl" / "FaRL-Base-Patch16-LAIONFace20M-ep64.pth").is_file()
    assert (tiny_models / "ip_adapter_plus_face" / "models" / "ip-adapter-plus-face_sd15.safetensors").is_file()
    assert {p.name for p in (tiny_models / "annotator_pose").iterdir()} >= {"body_pose_model.pth", "hand_pose_model.pth", "facenet.pth"}


@pytest.mark.parametrize("name", [e.name for e in load_manifest()])
def test_every_entry_loads_through_its_loader(tiny_models: Path, name: str) -> None:  # noqa: F811
    """The random checkpoint in the publisher's format loads through the code a run uses."""
    from camouflage.models.loaders import load_entry

    entry = load_manifest()[name]
    assert load_entry(entry.kind, tiny_models / name) is not None


def test_pickles_are_read_weights_only(tmp_path: Path) -> None:
    import argparse

    import torch

    from camouflage.models.manifest import load_pickle

    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(load_pickle(tmp_path / "ok.pt")["w"], torch.ones(2))
    torch.save({"w": argparse.Namespace(code=1)}, tmp_path / "code.pt")  # an arbitrary class: refused
    with pytest.raises(Exception, match="(?i)weights_only|unsupported"):
        load_pickle(tmp_path / "code.pt")


@pytest.mark.parametrize("name", ["vae", "taesd"])  # pinned to a commit; at main
def test_models_dir_wins_then_hf_cache(name: str, tiny_models: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    # a hub cache holding the entry's repo at its revision, laid out as huggingface_hub writes it:
    # a pinned commit is its own snapshot folder; main goes through refs/main
    entry = load_manifest()[name]
    assert entry.pinned == (name == "vae")
    cache = tmp_path / "hub"
    repo = cache / ("models--" + entry.repo.replace("/", "--"))
    commit = entry.revision if entry.pinned else HASH
    (repo / "refs").mkdir(parents=True)
    if not entry.pinned:
        (repo / "refs" / "main").write_text(HASH)
    shutil.copytree(tiny_models / name, repo / "snapshots" / commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))

    from_cache = ModelResolver(offline=True).resolve(name)
    assert from_cache == repo / "snapshots" / commit
    from diffusers import AutoencoderKL, AutoencoderTiny

    (AutoencoderKL if name == "vae" else AutoencoderTiny).from_pretrained(from_cache, use_safetensors=True)  # the real loading path

    assert ModelResolver(models_dir=tiny_models, offline=True).resolve(name) == tiny_models / name
    # an incomplete snapshot (weights missing) is not a model
    (repo / "snapshots" / commit / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(ModelError):
        ModelResolver(offline=True).resolve(name)


def test_pickles_are_refused(tiny_models: Path, tmp_path: Path) -> None:  # noqa: F811
    bad = tmp_path / "models"
    shutil.copytree(tiny_models / "controlnet_depth", bad / "controlnet_depth")
    weights = bad / "controlnet_depth" / "diffusion_pytorch_model.safetensors"
    weights.rename(weights.with_suffix(".bin"))
    with pytest.raises(ModelError, match="controlnet_depth"):  # not complete: safetensors required
        ModelResolver(models_dir=bad, offline=True).resolve("controlnet_depth")
    (bad / "controlnet_depth" / "diffusion_pytorch_model.safetensors").write_bytes(b"")  # a decoy beside a pickle
    (bad / "controlnet_depth" / "sub").mkdir()
    weights.with_suffix(".bin").rename(bad / "controlnet_depth" / "sub" / "model.bin")
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
    assert "RANDOM WEIGHTS" in r.stdout and "hub SG161222/Realistic_Vision_V5.1_noVAE@main" in r.stdout
    rows = {line.split()[0]: line for line in r.stdout.splitlines()[1:] if line.strip()}
    assert "manual: FaRL-Base-Patch16" in rows["farl"] and "url https://github.com/FacePerceiver/facer" in rows["facer_attributes"]
    assert " MB " in rows["annotator_pose"] and "non-commercial" in rows["annotator_pose"]  # size and licence
    offline = {**os.environ, "HF_HUB_OFFLINE": "1"}
    r = camstream("models", "fetch", "vae", timeout=120, env=offline)
    assert r.returncode == 5 and "HF_HUB_OFFLINE" in r.stderr


def test_fetch_checks_every_entry_before_downloading_any(tmp_path: Path) -> None:
    """A method needing a file nobody can download fails before the first download; optional
    ones (trained, manual) are skipped with a note."""
    resolver = ModelResolver(models_dir=tmp_path, offline=True)
    with pytest.raises(ModelError) as info:  # light needs FaRL (manual) and the trained adapters
        resolver.plan_fetch(resolver.manifest.expand(["light"]), explicit=["farl"])
    assert "nothing fetched" in str(info.value) and "farl" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(ModelError, match="HF_HUB_OFFLINE"):  # the default method: only downloadable files
        resolver.plan_fetch(resolver.manifest.expand(["camouflage"]))
    todo, skipped = ModelResolver(models_dir=tmp_path, offline=False).plan_fetch(resolver.manifest.expand(["camouflage"]))
    assert "ip_adapter_plus_face" in todo and "idf_controlnet" not in todo
    assert any(s.startswith("idf_controlnet") for s in skipped)
    r = camstream("models", "fetch", "light", "--models-dir", tmp_path, timeout=120, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 5 and "nothing fetched" in r.stderr and not any(tmp_path.iterdir())


def test_lock_file_catches_a_changed_file(tiny_models: Path, tmp_path: Path) -> None:  # noqa: F811
    from camouflage.models.manifest import LOCK_NAME, lock_record, read_lock, verify_lock, write_lock

    models = tmp_path / "models"
    shutil.copytree(tiny_models / "vae", models / "vae")
    entry = load_manifest()["vae"]
    write_lock(models, "vae", lock_record(entry, models / "vae", commit=HASH))
    record = read_lock(models)["vae"]
    assert record["commit"] == HASH and set(record["files"]) == {"config.json", "diffusion_pytorch_model.safetensors"}
    assert verify_lock(entry, models / "vae", record) == "ok"
    with open(models / "vae" / "diffusion_pytorch_model.safetensors", "r+b") as f:
        f.seek(100)
        f.write(b"\x00\x01")
    assert verify_lock(entry, models / "vae", record).startswith("MISMATCH")
    assert (models / LOCK_NAME).exists()


@pytest.mark.full  # 39 s (loads every tiny model); the verdicts: test_camouflage_video.py::test_auto_runs_the_diffusion_method_only_with_its_models_and_a_gpu_or_device_cpu
def test_models_check_ready_verdicts_and_exit_codes(tiny_models: Path, tmp_path: Path) -> None:  # noqa: F811
    r = camstream("models", "check", "--models-dir", tiny_models, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    verdicts = dict(line.split(": ", 1) for line in r.stdout.splitlines() if line.split(":")[0] in ("base", "light", "camouflage"))
    assert verdicts["base"] == "ready (a_s 1.25: trained IDF)" and verdicts["camouflage"].startswith("ready")
    assert "FAILS" not in r.stdout and "MISSING" not in r.stdout
    # only public weights (no trained IDF, no trained Light adapters, no FaRL/FACER): still ready
    public = public_models(tiny_models, tmp_path / "public")
    r = camstream("models", "check", "--models-dir", public, "--no-load", timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "base: ready (a_s <= 1: no trained IDF)" in r.stdout and "camouflage: ready (public Light adapters)" in r.stdout
    r = camstream("models", "check", "light", "--models-dir", public, "--no-load", timeout=300)
    assert r.returncode == 5 and "light: not ready: farl" in r.stdout
    (public / "ip_adapter_plus_face").unlink()
    r = camstream("models", "check", "--models-dir", public, "--no-load", timeout=300)
    assert r.returncode == 5 and "camouflage: not ready" in r.stdout


@pytest.mark.full  # 28 s
def test_models_import_checks_the_name_and_the_format(tiny_models: Path, tmp_path: Path) -> None:  # noqa: F811
    farl = tiny_models / "farl" / "FaRL-Base-Patch16-LAIONFace20M-ep64.pth"
    models = tmp_path / "models"
    r = camstream("models", "import", "farl", farl, "--models-dir", models, timeout=120)
    assert r.returncode == 0, r.stderr
    assert (models / "farl" / farl.name).read_bytes() == farl.read_bytes()
    assert "farl" in json.loads((models / "camstream.lock.json").read_text())
    wrong = tmp_path / "farl.pth"
    shutil.copy(farl, wrong)
    r = camstream("models", "import", "farl", wrong, "--models-dir", models, timeout=120)
    assert r.returncode == 5 and "FaRL-Base-Patch16-LAIONFace20M-ep*.pth" in r.stderr
    not_farl = tmp_path / "FaRL-Base-Patch16-LAIONFace20M-ep16.pth"
    shutil.copy(tiny_models / "facer_attributes" / "face_attribute.farl.celeba.pt", not_farl)
    r = camstream("models", "import", "farl", not_farl, "--models-dir", models, timeout=120)
    assert r.returncode == 5 and "not a FaRL checkpoint" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert sorted(p.name for p in (models / "farl").iterdir() if p.is_file()) == [farl.name]  # the good one stays
