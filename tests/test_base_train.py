"""``camstream train idf`` on real images and frames with the tiny models: the loss on a
fixed evaluation set goes down, checkpoints resume exactly."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import one_torch_thread, tiny_models  # noqa: F401 - fixtures

from streamer.cli import main


@pytest.fixture(scope="module")
def train_data(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("idf-data")
    for name in ("grace_hopper_512x512.jpg", "messi5.jpg", "Megamind.avi"):
        (folder / name).symlink_to(data / name)
    return folder


def train(data: Path, models: Path, output: Path, steps: int, *extra: str) -> None:
    args = ["train", "idf", "--data", str(data), "--models-dir", str(models), "--output", str(output), "--steps", str(steps),
            "--resolution", "64", "--batch-size", "2", "--lr", "1e-3", "--save-every", "3", "--log-every", "1",
            "--frames-per-video", "4", "--device", "cpu", *extra]
    assert main(args) == 0


def eval_losses(output: Path) -> dict[int, float]:
    with (output / "loss.csv").open() as f:
        return {int(r["step"]): float(r["eval_loss"]) for r in csv.DictReader(f) if r["eval_loss"]}


def test_idf_training_lowers_the_loss_and_resumes_exactly(tiny_models: Path, train_data: Path, tmp_path: Path) -> None:  # noqa: F811
    full = tmp_path / "full"
    train(train_data, tiny_models, full, 6)
    losses = eval_losses(full)
    assert sorted(losses) == [0, 3, 6]
    assert losses[6] < losses[3] < losses[0]
    assert (full / "idf_controlnet" / "diffusion_pytorch_model.safetensors").exists()

    # stop at 3, resume to 6: the same weights as the uninterrupted run
    part = tmp_path / "part"
    train(train_data, tiny_models, part, 3)
    train(train_data, tiny_models, part, 6, "--resume", str(part / "checkpoint-3"))
    rows = (part / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3", "4", "5", "6"]
    a = load_file(str(full / "idf_controlnet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(part / "idf_controlnet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)


def test_trained_idf_controlnet_loads_in_the_pipeline(tiny_models: Path, train_data: Path, tmp_path: Path) -> None:  # noqa: F811
    import shutil

    from camouflage.manifest import ModelResolver
    from camouflage.pipelines.base import CamouflageBasePipeline

    train(train_data, tiny_models, tmp_path / "run", 1)
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models, ignore=shutil.ignore_patterns("idf_controlnet"))
    shutil.copytree(tmp_path / "run" / "idf_controlnet", models / "idf_controlnet")
    pipe = CamouflageBasePipeline.from_manifest(ModelResolver(models_dir=models, offline=True))
    assert pipe.idf_controlnet.config.conditioning_channels == 4


def test_bad_training_input_is_one_line_and_an_exit_code(tiny_models: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001, F811
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "broken.mp4").write_bytes(b"not a video")  # skipped with a warning, then nothing is left
    common = ["--models-dir", str(tiny_models), "--resolution", "64", "--device", "cpu"]
    assert main(["train", "idf", "--data", str(empty), "--output", str(tmp_path / "a"), *common]) == 3
    assert "no images or videos to train on" in capsys.readouterr().err
    assert main(["train", "idf", "--data", str(empty), "--output", str(tmp_path / "b"), "--resume", *common]) == 2
    assert "no checkpoint-STEP folder" in capsys.readouterr().err
