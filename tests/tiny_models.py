"""Tiny random CAMOUFLaGE models for tests, built once per session by the real
``camstream models make-tiny`` code, in the layout the loader reads."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

RESOLUTION = 64
STEPS = 4
_BUILT: dict[str, Path] = {}


def build_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set, built at most once per test session (shared by every test module)."""
    if "root" not in _BUILT:
        import torch

        from camouflage.models.tiny import make_tiny

        threads = torch.get_num_threads()
        _BUILT["root"] = make_tiny(tmp_path_factory.getbasetemp() / "tiny-models", resolution=RESOLUTION)
        torch.set_num_threads(threads)
    return _BUILT["root"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory)


# what no publisher offers: trained here (the IDF, Light's adapters) or supplied by hand (FaRL, FACER)
NOT_PUBLIC = ("idf_controlnet", "farl", "facer_attributes", "ip_adapter_light", "t2i_adapter_light")


def public_models(models_dir: Path, folder: Path) -> Path:
    """``folder`` made a models folder with the public weights of ``models_dir`` alone (links)."""
    folder.mkdir()
    for entry in models_dir.iterdir():
        if entry.name not in NOT_PUBLIC:
            (folder / entry.name).symlink_to(entry)
    return folder


def tiny_config(models_dir: Path, **base):  # noqa: ANN003, ANN201 - streamer.config.Config for the tiny set
    from streamer.config import Config

    config = Config()
    config.anonymize.method = "base"
    config.models.dir = str(models_dir)
    config.models.device = "cpu"
    config.base.resolution = RESOLUTION
    config.base.steps = STEPS
    for key, value in base.items():
        setattr(config.base, key, value)
    return config


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():  # noqa: ANN201
    """Tiny models on a shared 2-core machine: one thread is ~10x faster than two fighting
    for cores with other processes. Autouse in every module that imports it; restored after."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
