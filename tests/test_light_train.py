"""``camstream train light`` on real images and video frames, tiny random models."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import RESOLUTION, build_tiny, one_torch_thread  # noqa: F401 - autouse fixture


@pytest.fixture(scope="module")
def train_data(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("light-data")
    for name in ("grace_hopper_512x512.jpg", "messi5.jpg", "Megamind.avi"):
        (folder / name).symlink_to(data / name)
    (folder / "grace_hopper_512x512.txt").write_text("a portrait of a woman in a navy uniform")
    return folder


def train(*argv: str) -> int:
    from streamer.cli import build_parser

    args = build_parser().parse_args(["train", "light", *argv])
    return args.func(args)


def eval_losses(output: Path) -> dict[int, float]:
    with (output / "loss.csv").open() as f:
        return {int(r["step"]): float(r["eval_loss"]) for r in csv.DictReader(f) if r["eval_loss"]}


def test_training_lowers_the_loss_and_resumes(train_data: Path, tmp_path_factory, tmp_path: Path) -> None:  # noqa: ANN001
    tiny = build_tiny(tmp_path_factory)
    common = ["--data", str(train_data), "--models-dir", str(tiny), "--output", str(tmp_path), "--resolution",
              str(RESOLUTION), "--batch-size", "2", "--lr", "3e-3", "--frames-per-video", "2", "--save-every", "4",
              "--validate-every", "4", "--validation-steps", "2", "--log-every", "1"]
    assert train(*common, "--steps", "8") == 0
    losses = eval_losses(tmp_path)
    assert set(losses) == {0, 4, 8} and losses[8] < losses[0]
    assert (tmp_path / "validation" / "step-4.png").exists() and (tmp_path / "checkpoint-8").is_dir()

    assert train(*common, "--steps", "10", "--resume") == 0  # bare --resume: the latest checkpoint
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "loss.csv").open())]
    assert steps[-2:] == [9, 10] and steps.count(0) == 1  # continued, not restarted
    before, after = (load_file(str(tmp_path / f"checkpoint-{s}" / "model.safetensors")) for s in (8, 10))
    assert before.keys() == after.keys() and any((before[k] != after[k]).any() for k in before)
    # resumed = uninterrupted: each step's batch and noise come from (seed, step)
    straight = tmp_path / "straight"
    assert train(*common[:5], str(straight), *common[6:], "--steps", "10", "--validate-every", "0") == 0
    again = load_file(str(straight / "checkpoint-10" / "model.safetensors"))
    for k in after:
        torch.testing.assert_close(again[k], after[k], rtol=1e-5, atol=1e-6)

    # the trained adapters load through the real path (manifest folder names, diffusers' loaders)
    from camouflage.light import loading
    from camouflage.light.pipeline import CamouflageLightPipeline

    paths = loading.resolve_models(tiny, (loading.SD15, loading.VAE, loading.FARL))
    paths[loading.IP_ADAPTER], paths[loading.T2I_ADAPTER] = tmp_path / loading.IP_ADAPTER, tmp_path / loading.T2I_ADAPTER
    pipe = CamouflageLightPipeline.from_paths(paths, scheduler="ddim")
    trained = load_file(str(tmp_path / loading.IP_ADAPTER / loading.IP_ADAPTER_WEIGHTS))
    assert set(trained) == set(load_file(str(tiny / loading.IP_ADAPTER / loading.IP_ADAPTER_WEIGHTS)))
    assert pipe.adapter.config.in_channels == 41
