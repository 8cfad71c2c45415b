"""The optional person detector (ultralytics YOLO, AGPL-3.0, camstream[yolo]) offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import camstream, read_image
from privacy import faces


def _env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "YOLO_CONFIG_DIR": str(tmp_path / "yolo"), "YOLO_OFFLINE": "1"}


def test_missing_yolo_weights_are_a_model_error(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.jpg"
    r = camstream("run", "--method", "solid", data / "grace_hopper_512x512.jpg", "-o", out, "--persons", env=_env(tmp_path))
    assert r.returncode == 5, r.stderr
    assert "cannot be downloaded offline" in r.stderr.strip().splitlines()[-1] and not out.exists()


@pytest.mark.full  # 5 s
def test_missing_yolo_weights_with_persons_optional_warn_and_faces_still_covered(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.jpg"
    r = camstream("run", "--method", "solid", data / "grace_hopper_512x512.jpg", "-o", out, "--persons", "--persons-optional",
                  env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    assert "cannot be downloaded offline" in r.stderr and "continuing with faces only" in r.stderr
    assert len(faces(read_image(out), threshold=0.3)) == 0


@pytest.mark.full  # 5 s; missing weights: test_missing_yolo_weights_are_a_model_error
def test_person_scope_without_weights_is_a_model_error(data: Path, tmp_path: Path) -> None:
    r = camstream("run", data / "messi5.jpg", "-o", tmp_path / "m.jpg", "--scope", "person", "--method", "solid", env=_env(tmp_path))
    assert r.returncode == 5, r.stderr
    assert "--person-weights" in r.stderr.strip().splitlines()[-1]


def test_yolo_from_a_local_config_runs_and_covers_persons(data: Path, tmp_path: Path) -> None:
    # A random-weight model built from ultralytics' own yaml: the real loading path,
    # with a threshold low enough for random weights to produce boxes.
    out = tmp_path / "m.jpg"
    r = camstream("run", "--method", "solid", data / "messi5.jpg", "-o", out, "--persons", "--person-weights", "yolov8n.yaml",
                  "--set", "detection.person_threshold=0.0001", "--report", tmp_path / "r.json", env=_env(tmp_path))
    assert r.returncode == 0, r.stderr
    import json

    report = json.loads((tmp_path / "r.json").read_text())
    assert report["regions_covered"] > 1  # persons were added to the cover set
