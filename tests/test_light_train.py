"""``camstream train light`` from Light shards of the shared images and clips, tiny models."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny_models import RESOLUTION, build_tiny, one_torch_thread  # noqa: F401 - autouse fixture

from streamer.cli import main


@pytest.fixture(scope="module")
def media(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("light-media")
    for name in ("grace_hopper_512x512.jpg", "messi5.jpg", "Megamind.avi"):
        (folder / name).symlink_to(data / name)
    (folder / "grace_hopper_512x512.txt").write_text("a portrait of a woman in a navy uniform")
    return folder


@pytest.fixture(scope="module")
def shards(media: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("light-shards") / "shards"
    assert main(["data", "prepare", str(media), "--output", str(out), "--size", str(RESOLUTION), "--frames-per-video", "2",
                 "--holdout", "0.3", "--per-shard", "2", "--light", "--models-dir", str(build_tiny(tmp_path_factory)),
                 "--device", "cpu"]) == 0
    return out


def eval_losses(output: Path) -> dict[int, float]:
    with (output / "loss.csv").open() as f:
        return {int(r["step"]): float(r["eval_loss"]) for r in csv.DictReader(f) if r["eval_loss"]}


def test_training_lowers_the_loss_and_resumes(shards: Path, tmp_path_factory, tmp_path: Path) -> None:  # noqa: ANN001
    tiny = build_tiny(tmp_path_factory)
    common = ["train", "light", "--data", str(shards), "--models-dir", str(tiny), "--output", str(tmp_path), "--resolution",
              str(RESOLUTION), "--batch-size", "2", "--lr", "3e-3", "--save-every", "4", "--validate-every", "4",
              "--validation-steps", "2", "--log-every", "1", "--workers", "1", "--device", "cpu"]
    assert main([*common, "--steps", "8"]) == 0
    losses = eval_losses(tmp_path)
    assert set(losses) == {0, 4, 8} and losses[8] < losses[0]
    assert (tmp_path / "checkpoint-8").is_dir()
    from PIL import Image

    grid = Image.open(tmp_path / "validation" / "step-4.png")
    assert grid.width == 3 * RESOLUTION  # original | its attribute map over it | generated

    assert main([*common, "--steps", "10", "--resume"]) == 0  # bare --resume: the latest checkpoint
    steps = [int(r["step"]) for r in csv.DictReader((tmp_path / "loss.csv").open())]
    assert steps[-2:] == [9, 10] and steps.count(0) == 1  # continued, not restarted
    before, after = (load_file(str(tmp_path / f"checkpoint-{s}" / "model.safetensors")) for s in (8, 10))
    assert before.keys() == after.keys() and any((before[k] != after[k]).any() for k in before)
    # resumed = uninterrupted: batches replayed from the shards, noise from (seed, step)
    straight = tmp_path / "straight"
    i = common.index("--output") + 1
    assert main([*common[:i], str(straight), *common[i + 1:], "--steps", "10", "--validate-every", "0"]) == 0
    again = load_file(str(straight / "checkpoint-10" / "model.safetensors"))
    for k in after:
        torch.testing.assert_close(again[k], after[k], rtol=1e-5, atol=1e-6)

    # the trained adapters load through the real path (manifest folder names, diffusers' loaders)
    from camouflage.light.pipeline import CamouflageLightPipeline
    from camouflage.models import names

    paths = names.resolve_models(tiny, (names.SD15, names.VAE, names.FARL))
    paths[names.IP_ADAPTER], paths[names.T2I_ADAPTER] = tmp_path / names.IP_ADAPTER, tmp_path / names.T2I_ADAPTER
    pipe = CamouflageLightPipeline.from_paths(paths, scheduler="ddim")
    trained = load_file(str(tmp_path / names.IP_ADAPTER / names.IP_ADAPTER_WEIGHTS))
    assert set(trained) == set(load_file(str(tiny / names.IP_ADAPTER / names.IP_ADAPTER_WEIGHTS)))
    assert pipe.adapter.config.in_channels == 41


def test_shards_without_light_fields_are_refused(media: Path, tmp_path_factory, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    plain = tmp_path / "plain"
    assert main(["data", "prepare", str(media / "messi5.jpg"), "--output", str(plain), "--size", "64"]) == 0
    assert main(["train", "light", "--data", str(plain), "--models-dir", str(build_tiny(tmp_path_factory)),
                 "--output", str(tmp_path / "run"), "--resolution", "64", "--device", "cpu"]) == 2
    assert "prepare --light" in capsys.readouterr().err


def test_light_adapters_are_one_module_ddp_can_wrap(tmp_path_factory) -> None:  # noqa: ANN001
    """Both adapters train through one forward: no indexing of a wrapped module, and the
    frozen U-Net is no part of what DDP (or .to()) sees."""
    from diffusers import UNet2DConditionModel

    from camouflage.models.adapters import init_ip_adapter_state_dict, make_t2i_adapter
    from camouflage.training.light import LightAdapters

    tiny = build_tiny(tmp_path_factory)
    unet = UNet2DConditionModel.from_pretrained(tiny / "sd15" / "unet")
    state = init_ip_adapter_state_dict(unet, 32)
    unet._load_ip_adapter_weights([{
        "image_proj": {k.removeprefix("image_proj."): v for k, v in state.items() if k.startswith("image_proj.")},
        "ip_adapter": {k.removeprefix("ip_adapter."): v for k, v in state.items() if k.startswith("ip_adapter.")},
    }])
    module = LightAdapters(make_t2i_adapter(unet.config, 8), unet.requires_grad_(False))
    names = {n.split(".")[0] for n, _ in module.named_parameters()}
    assert names == {"t2i", "ip_proj", "ip_attn"}
    for p in module.parameters():
        p.requires_grad_(True)
    out = module(torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 77, unet.config.cross_attention_dim),
                 torch.randn(1, 32), torch.rand(1, 41, 64, 64))
    out.mean().backward()
    assert all(p.grad is not None for p in module.t2i.parameters()) and any(p.grad is not None for p in module.ip_attn.parameters())


@pytest.mark.full  # 29 s: two training processes
def test_two_processes_train_both_adapters_under_ddp(shards: Path, tmp_path_factory, tmp_path: Path) -> None:  # noqa: ANN001
    import os
    import subprocess
    import sys

    from conftest import REPO

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
           "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "streamer", "train", "light", "--data", str(shards),
           "--models-dir", str(build_tiny(tmp_path_factory)), "--output", str(out), "--resolution", str(RESOLUTION),
           "--steps", "2", "--batch-size", "1", "--save-every", "2", "--validate-every", "2", "--validation-steps", "2",
           "--workers", "0", "--device", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1200, cwd=REPO, env=env)  # generous: a loaded box
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 processes" in done.stderr
    assert sorted(p.name for p in (out / "checkpoint-2").glob("random_states_*.pkl")) == ["random_states_0.pkl",
                                                                                          "random_states_1.pkl"]
    assert (out / "validation" / "step-2.png").exists() and (out / "t2i_adapter_light").is_dir()
