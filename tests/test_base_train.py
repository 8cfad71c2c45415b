"""``camstream train idf`` from shards of the shared images and clips, tiny models: the
held-out loss and the a_s = 0 reconstruction error fall, resume is exact (and refused
across layouts), two processes under ``accelerate launch`` train and checkpoint."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from safetensors.torch import load_file
from tiny_models import one_torch_thread, tiny_models  # noqa: F401 - fixtures

from streamer.cli import main


@pytest.fixture(scope="module")
def shards(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    media = tmp_path_factory.mktemp("idf-media")
    for name in ("grace_hopper_512x512.jpg", "messi5.jpg", "Megamind.avi", "vtest.avi"):
        (media / name).symlink_to(data / name)
    out = tmp_path_factory.mktemp("idf-shards") / "shards"
    assert main(["data", "prepare", str(media), "--output", str(out), "--size", "64", "--frames-per-video", "4",
                 "--holdout", "0.25", "--per-shard", "4"]) == 0
    return out


def args(data: Path, models: Path, output: Path, steps: int, *extra: str) -> list[str]:
    return ["train", "idf", "--data", str(data), "--models-dir", str(models), "--output", str(output), "--steps", str(steps),
            "--resolution", "32", "--batch-size", "2", "--lr", "1e-3", "--save-every", "3", "--log-every", "1",
            "--validate-every", "0", "--validation-steps", "4", "--workers", "0", "--device", "cpu", *extra]


def table(path: Path, column: str) -> dict[int, float]:
    with path.open() as f:
        return {int(r["step"]): float(r[column]) for r in csv.DictReader(f) if r[column]}


@pytest.mark.full  # 10 s of training; resuming: test_light_train's test_training_lowers_the_loss_and_resumes
def test_idf_training_validates_and_resumes_exactly(tiny_models: Path, shards: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001, F811
    full = tmp_path / "full"
    assert main(args(shards, tiny_models, full, 6, "--validate-every", "3", "--workers", "1")) == 0
    assert sorted(table(full / "loss.csv", "eval_loss")) == [0, 3, 6]
    assert sorted(table(full / "validation.csv", "psnr_as0")) == [0, 3, 6]
    from PIL import Image

    grid = Image.open(full / "validation" / "step-6.png")
    assert grid.width == 3 * 32  # original | a_s = 0 | a_s = 1.25 (the tiny set has the rest of Base)
    assert (full / "idf_controlnet" / "diffusion_pytorch_model.safetensors").exists()

    # stop at 3, resume to 6: the same weights as the uninterrupted run (batches replayed, one worker)
    part = tmp_path / "part"
    assert main(args(shards, tiny_models, part, 3, "--workers", "1")) == 0
    assert main(args(shards, tiny_models, part, 6, "--workers", "1", "--resume", str(part / "checkpoint-3"))) == 0
    rows = (part / "loss.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["0", "1", "2", "3", "4", "5", "6"]
    a = load_file(str(full / "idf_controlnet" / "diffusion_pytorch_model.safetensors"))
    b = load_file(str(part / "idf_controlnet" / "diffusion_pytorch_model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6)

    # another layout cannot resume exactly: refused, one line, exit 2
    capsys.readouterr()
    assert main(args(shards, tiny_models, part, 9, "--workers", "1", "--batch-size", "3", "--resume")) == 2
    assert "batch size 2, this run has 3" in capsys.readouterr().err


@pytest.mark.full  # 14 s of training
def test_idf_reconstruction_error_falls(tiny_models: Path, shards: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "run"
    assert main(args(shards, tiny_models, out, 300, "--batch-size", "4", "--save-every", "300", "--log-every", "50",
                     "--validate-every", "150", "--no-anonymized")) == 0
    error = table(out / "validation.csv", "latent_mse_as0")
    assert sorted(error) == [0, 150, 300]
    assert error[300] < 0.85 * error[0]  # the IDF branch alone gives back more of the held-out originals
    losses = table(out / "loss.csv", "eval_loss")
    assert losses[300] < losses[0]


def test_trained_idf_controlnet_loads_in_the_pipeline(tiny_models: Path, shards: Path, tmp_path: Path) -> None:  # noqa: F811
    import shutil

    from camouflage.base.pipeline import CamouflageBasePipeline
    from camouflage.models.manifest import ModelResolver

    assert main(args(shards, tiny_models, tmp_path / "run", 1)) == 0
    models = tmp_path / "models"
    shutil.copytree(tiny_models, models, ignore=shutil.ignore_patterns("idf_controlnet"))
    shutil.copytree(tmp_path / "run" / "idf_controlnet", models / "idf_controlnet")
    pipe = CamouflageBasePipeline.from_manifest(ModelResolver(models_dir=models, offline=True))
    assert pipe.idf_controlnet.config.conditioning_channels == 4


def test_bad_training_input_is_one_line_and_an_exit_code(tiny_models: Path, shards: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001, F811
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "photo.jpg").write_bytes(b"not shards")
    assert main(args(empty, tiny_models, tmp_path / "a", 1)) == 3
    assert "no training shards (make them with: camstream data prepare" in capsys.readouterr().err
    assert main(args(shards, tiny_models, tmp_path / "b", 1, "--resume")) == 2
    assert "no checkpoint-STEP folder" in capsys.readouterr().err
    assert main(args(shards, tiny_models, tmp_path / "c", 1, "--resolution", "40")) == 2
    assert "must be a multiple of 16" in capsys.readouterr().err
    assert main(args(shards, tiny_models, tmp_path / "d", 1, "--workers", "64")) == 2  # a stream without samples would hang
    assert "cannot feed 1 process(es) x 64 worker(s)" in capsys.readouterr().err


@pytest.mark.full  # 20 s: two training processes
def test_two_processes_train_and_checkpoint_once(tiny_models: Path, shards: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001, F811
    out = tmp_path / "run"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
              "--mixed_precision", "no", "--dynamo_backend", "no", "-m", "streamer"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    # CPU processes talk over gloo; generous: the box may be loaded, this is not a speed test
    done = subprocess.run([*launch, *args(shards, tiny_models, out, 2, "--grad-accum", "2", "--save-every", "2")[0:]],
                          capture_output=True, text=True, timeout=1200, cwd=REPO, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    saved = json.loads((out / "checkpoint-2" / "camstream_step.json").read_text())
    assert saved["num_processes"] == 2 and saved["step"] == 2 and saved["grad_accum"] == 2
    assert sorted(p.name for p in (out / "checkpoint-2").glob("random_states_*.pkl")) == ["random_states_0.pkl",
                                                                                          "random_states_1.pkl"]
    steps = [r.split(",")[0] for r in (out / "loss.csv").read_text().splitlines()[1:]]
    assert steps == ["0", "1", "2"]  # the main process alone logs
    assert "2 processes" in done.stderr
    # one process cannot continue a two-process run exactly: refused
    assert main(args(shards, tiny_models, out, 4, "--grad-accum", "2", "--resume")) == 2
    assert "num processes 2, this run has 1" in capsys.readouterr().err


def test_validation_at_a_s_0_is_what_base_gives_at_a_s_0(tiny_models: Path, data: Path) -> None:  # noqa: F811
    """The reconstruction the training validates is Base's own output at a_s = 0 (same
    conditioning: the original's latents and the caption; same seeds and DDIM steps)."""
    import numpy as np
    from PIL import Image

    from camouflage.base.pipeline import CamouflageBasePipeline
    from camouflage.models.manifest import ModelResolver
    from camouflage.models.names import CONTROLS
    from camouflage.training.idf import reconstruct_as0

    pipe = CamouflageBasePipeline.from_manifest(ModelResolver(models_dir=tiny_models, offline=True), scheduler="ddim")
    image = np.asarray(Image.open(data / "grace_hopper_512x512.jpg").convert("RGB").resize((32, 32)))
    rng = np.random.default_rng(0)
    controls = {c: [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)] for c in CONTROLS}  # a_s = 0: no effect
    caption = "a portrait of a woman in a navy uniform"
    base = pipe([image], controls, prompt=[caption], num_inference_steps=4, strength=0.75, anonymization_scale=0.0,
                generator=[torch.Generator().manual_seed(5)], output_type="np").images[0]
    latents = pipe.encode_image(pipe.image_processor.preprocess(Image.fromarray(image)))
    with torch.no_grad():
        x = reconstruct_as0(pipe.unet, pipe.idf_controlnet, pipe.scheduler.config, latents,
                            pipe.encode_prompt([caption], latents.device), 4, 0.75, [5])
        mine = ((pipe.vae.decode(x / pipe.vae.config.scaling_factor).sample + 1) / 2).clamp(0, 1)
    np.testing.assert_allclose(mine[0].permute(1, 2, 0).numpy(), base, atol=2e-3)
    assert np.abs(base - image / 255).mean() > 0.01  # a real image came out, not the input passed through


def test_cached_latents_train_as_encoding_on_the_fly(tiny_models: Path, data: Path, tmp_path: Path, caplog) -> None:  # noqa: ANN001, F811
    import logging

    cached = tmp_path / "shards"
    assert main(["data", "prepare", str(data / "grace_hopper_512x512.jpg"), str(data / "messi5.jpg"), str(data / "Megamind.avi"),
                 "--output", str(cached), "--size", "64", "--frames-per-video", "2", "--holdout", "0.3",
                 "--latent-resolution", "32", "--models-dir", str(tiny_models), "--device", "cpu"]) == 0
    with caplog.at_level(logging.INFO, logger="camstream"):
        assert main(args(cached, tiny_models, tmp_path / "a", 3)) == 0
    assert "(cached latents)" in caplog.text
    assert main(args(cached, tiny_models, tmp_path / "b", 3, "--no-cached-latents")) == 0
    a, b = (load_file(str(tmp_path / r / "idf_controlnet" / "diffusion_pytorch_model.safetensors")) for r in "ab")
    for k in a:  # batched vs one-at-a-time VAE encodes differ in the last bits; Adam amplifies them a little
        torch.testing.assert_close(a[k], b[k], rtol=1e-2, atol=1e-3)
    # the stored latents are those of the crop training decodes
    import io

    import numpy as np
    from diffusers import AutoencoderKL

    from camouflage.training.data.shards import crop_pixels, iter_samples

    vae = AutoencoderKL.from_pretrained(tiny_models / "vae")
    for sample in iter_samples(cached / "train-000000.tar"):
        with torch.no_grad():
            mine = vae.encode(crop_pixels(sample["jpg"], 32)[None]).latent_dist.mean[0] * vae.config.scaling_factor
        torch.testing.assert_close(torch.from_numpy(np.load(io.BytesIO(sample["latent.npy"]))), mine, rtol=1e-5, atol=1e-5)
