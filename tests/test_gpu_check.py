"""benchmarks/gpu_check.sh times the GPU path on full-size random weights
(benchmarks/make_full.py). No GPU here: what can be checked is that the script parses and
that the architectures it writes are the published ones, to the parameter (built on the
meta device: no memory, no weights)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def test_the_script_parses() -> None:
    r = subprocess.run(["bash", "-n", str(BENCHMARKS / "gpu_check.sh")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.fixture
def make_full(monkeypatch: pytest.MonkeyPatch):  # noqa: ANN201
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("make_full", None)
    import make_full

    return make_full


def test_the_full_size_models_have_the_published_parameter_counts(make_full) -> None:  # noqa: ANN001
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPVisionConfig, CLIPVisionModelWithProjection

    def count(module: torch.nn.Module) -> int:
        return sum(p.numel() for p in module.parameters())

    with torch.device("meta"):
        # stable-diffusion-v1-5's unet, vae and text_encoder; h94/IP-Adapter's models/image_encoder
        assert count(UNet2DConditionModel(**make_full.SD15_UNET)) == 859_520_964
        assert count(AutoencoderKL(**make_full.SD15_VAE)) == 83_653_863
        assert count(CLIPTextModel(CLIPTextConfig(**make_full.SD15_TEXT))) == 123_060_480
        assert count(CLIPVisionModelWithProjection(CLIPVisionConfig(**make_full.VIT_H))) == 632_076_800
