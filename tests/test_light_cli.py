"""``camstream run --method light`` end to end on the tiny models: the CLI's own ``main``
in-process for an image and for missing models, a real subprocess for a clip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from conftest import camstream, probe, read_frames, read_image
from tiny_models import RESOLUTION, build_tiny, one_torch_thread  # noqa: F401 - autouse fixture

LIGHT = ["--method", "light", "--set", f"light.resolution={RESOLUTION}", "--set", "light.steps=2",
         "--set", "light.scheduler=ddim", "--set", "light.anonymization_scale=1.5", "-q"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory)


def test_light_on_an_image(tiny: Path, data: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out.png", tmp_path / "report.json"
    from streamer.cli import main

    assert main(["run", str(data / "grace_hopper_512x512.jpg"), "-o", str(out), "--models-dir", str(tiny),
                 "--report", str(report), *LIGHT]) == 0
    rep = json.loads(report.read_text())
    assert rep["method"] == "light" and rep["regions_covered"] >= 1 and rep["fallback_regions"] == 0
    original, result = read_image(data / "grace_hopper_512x512.jpg"), read_image(out)
    changed = np.abs(result.astype(int) - original).sum(-1) > 24  # beyond PNG/colour-conversion noise
    assert changed[150:300, 180:330].mean() > 0.5  # her face
    assert changed[:, :40].mean() < 0.05  # far from it


@pytest.mark.full  # 55 s; Light from the CLI: test_light_on_an_image
def test_light_on_a_short_clip(tiny: Path, data: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "clip.mp4", tmp_path / "report.json"
    r = camstream("run", data / "Megamind.avi", "-o", out, "--end", "0.5", "--no-audio", "--models-dir", tiny,
                  "--report", report, *LIGHT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    assert rep["frames_out"] == rep["frames_in"] >= 10 and rep["fallback_regions"] == 0
    assert probe(out)["frames"] == rep["frames_out"] and len(read_frames(out, 2)) == 2


def test_light_without_models_exits_5(tmp_path: Path, data: Path, capsys: pytest.CaptureFixture) -> None:
    from streamer.cli import main

    code = main(["run", str(data / "grace_hopper_512x512.jpg"), "-o", str(tmp_path / "x.png"), "--models-dir",
                 str(tmp_path), *LIGHT])
    err = capsys.readouterr().err
    assert code == 5 and "farl" in err and len(err.strip().splitlines()) == 1 and not (tmp_path / "x.png").exists()
