"""``camstream run --method base`` end to end on the tiny models (image, short clip), and
the one-line exit-5 error without models."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import camstream, probe, read_image
from tiny_models import tiny_models  # noqa: F401 - fixture

TINY = ["--set", "base.resolution=64", "--set", "base.steps=2"]


def env(tmp_path: Path) -> dict[str, str]:
    # one torch thread (shared CPU) and an empty HF cache: only --models-dir can provide models
    return {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "HF_HUB_CACHE": str(tmp_path / "hf-cache")}


@pytest.mark.full  # 16 s; Base: test_base_pipeline.py, test_base_anonymizer.py; a diffusion method from the CLI: test_light_cli.py::test_light_on_an_image
def test_run_image_with_base(tiny_models: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "out.jpg"
    r = camstream("run", data / "grace_hopper_512x512.jpg", "--method", "base", "--models-dir", tiny_models, *TINY,
                  "-o", out, env=env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "RANDOM WEIGHTS" in r.stderr
    src, dst = read_image(data / "grace_hopper_512x512.jpg"), read_image(out)
    assert dst.shape == src.shape
    assert abs(dst.astype(int) - src.astype(int)).mean() > 1  # something was regenerated


@pytest.mark.full  # 85 s; Base from the CLI: test_run_image_with_base
def test_run_clip_with_base(tiny_models: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "clip.mp4"
    r = camstream("run", data / "Megamind.avi", "--method", "base", "--models-dir", tiny_models, *TINY,
                  "--end", "0.5", "-q", "--report", tmp_path / "report.json", "-o", out, env=env(tmp_path))
    assert r.returncode == 0, r.stderr
    info = probe(out)
    assert 5 <= info["frames"] <= 20
    assert '"fallback_regions": 0' in (tmp_path / "report.json").read_text()  # base itself covered every region


def test_run_base_without_models_exits_5_with_one_line(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jpg"
    r = camstream("run", data / "grace_hopper_512x512.jpg", "--method", "base", "-o", out, env=env(tmp_path))
    assert r.returncode == 5
    errors = [line for line in r.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, r.stderr
    assert "camstream models fetch base" in errors[0] and "--method pixelate" in errors[0]
    assert not out.exists()
