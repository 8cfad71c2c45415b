"""``camstream data prepare`` on the shared images and clips, and the streaming reader:
per-process and per-worker sharding, exact replay, Light's map painted on the device."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import one_torch_thread, tiny_models  # noqa: F401 - fixtures

from streamer.cli import main


@pytest.fixture(scope="module")
def media(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("media")
    for name in ("grace_hopper_512x512.jpg", "messi5.jpg", "Megamind.avi", "vtest.avi"):
        (folder / name).symlink_to(data / name)
    (folder / "grace_hopper_512x512.txt").write_text("a portrait of a woman in a navy uniform")
    return folder


@pytest.mark.full  # 41 s; prepare: test_prepare_light_fields_and_latents
def test_prepare_writes_face_crops_captions_and_a_held_out_split(media: Path, tmp_path: Path) -> None:
    out = tmp_path / "shards"
    before = {p.name: p.stat().st_mtime_ns for p in media.iterdir()}
    assert main(["data", "prepare", str(media), "--output", str(out), "--size", "64", "--frames-per-video", "3",
                 "--holdout", "0.25", "--per-shard", "3", "--caption", "someone"]) == 0
    info = json.loads((out / "info.json").read_text())
    assert info["frames"] == 2 + 3 + 3 and info["faces"] >= 3 and not info["light"]
    train, val = sorted(out.glob("train-*.tar")), sorted(out.glob("val-*.tar"))
    assert len(train) >= 2 and val  # several shards of at most 3 samples, and a held-out one
    from camouflage.training.data.shards import iter_samples

    samples = [s for p in train for s in iter_samples(p)]
    held = [s for p in val for s in iter_samples(p)]
    assert len(samples) == info["samples"] and len(held) == info["val_samples"] >= 1
    assert not {s["__key__"] for s in samples} & {s["__key__"] for s in held}
    import io

    from PIL import Image

    for s in samples + held:
        assert set(s) >= {"__key__", "jpg", "txt", "json"}
        assert Image.open(io.BytesIO(s["jpg"])).size == (64, 64)
        meta = json.loads(s["json"])
        for face in meta["faces"]:
            assert len(face["box"]) == 4 and np.asarray(face["keypoints"]).shape == (5, 2)
    captions = {json.loads(s["json"])["source"].rsplit("/", 1)[-1]: s["txt"].decode() for s in samples + held}
    assert captions["grace_hopper_512x512.jpg"] == "a portrait of a woman in a navy uniform"  # the sidecar file
    assert captions["messi5.jpg"] == "someone"  # the fallback
    with tarfile.open(train[0]) as tar:  # webdataset layout: KEY.EXT, a sample's files together
        names = tar.getnames()
    assert names[0].endswith(".jpg") and names[0].split(".")[0] == names[1].split(".")[0]
    assert {p.name: p.stat().st_mtime_ns for p in media.iterdir()} == before  # inputs only read


def test_prepare_light_fields_and_latents(media: Path, tiny_models: Path, tmp_path: Path) -> None:  # noqa: F811
    out = tmp_path / "shards"
    assert main(["data", "prepare", str(media / "grace_hopper_512x512.jpg"), str(media / "messi5.jpg"), "--output", str(out),
                 "--size", "64", "--holdout", "0", "--light", "--captioner", "--latent-resolution", "32",
                 "--models-dir", str(tiny_models), "--device", "cpu"]) == 0
    from camouflage.training.data.shards import iter_samples

    samples = list(iter_samples(out / "train-000000.tar"))
    assert len(samples) >= 2 and not list(out.glob("val-*.tar"))
    for s in samples:
        faces = json.loads(s["json"])["faces"]
        assert faces and all(len(f["attributes"]) == 40 for f in faces)
        assert np.load(io_bytes(s["embed.npy"])).ndim == 1
        assert np.load(io_bytes(s["latent.npy"])).shape == (4, 4, 4)  # 32 px / 8
        assert s["txt"].decode().strip()  # captioner output, or the fallback when it says nothing


def io_bytes(b: bytes):  # noqa: ANN201
    import io

    return io.BytesIO(b)


def test_bad_prepare_input_is_one_line_and_an_exit_code(media: Path, tmp_path: Path, capsys) -> None:  # noqa: ANN001
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["data", "prepare", str(empty), "--output", str(tmp_path / "o")]) == 3
    assert "no images or videos" in capsys.readouterr().err
    out = tmp_path / "full"
    out.mkdir()
    (out / "train-000000.tar").write_bytes(b"")
    assert main(["data", "prepare", str(media / "messi5.jpg"), "--output", str(out)]) == 4
    assert "already holds shards" in capsys.readouterr().err


def synthetic_shards(folder: Path, shards: int, per_shard: int) -> set[str]:
    import webdataset as wds

    folder.mkdir()
    keys = set()
    with wds.ShardWriter(str(folder / "train-%06d.tar"), maxcount=per_shard, verbose=0) as w:
        for i in range(shards * per_shard):
            w.write({"__key__": f"{i:06d}", "txt": str(i)})
            keys.add(f"{i:06d}")
    (folder / "info.json").write_text(json.dumps({"size": 8, "samples": len(keys)}))
    return keys


def key_of(raw: dict) -> dict:
    return {"key": raw["__key__"]}


def first_keys(folder: Path, rank: int, world: int, workers: int, n: int, skip: int = 0, batch: int = 1,
               buffer: int = 4) -> list[str]:
    from camouflage.training.data.shards import ShardStream, loader

    stream = ShardStream(folder, "train", key_of, seed=3, rank=rank, world=world, buffer=buffer, batch_size=batch,
                         skip_batches=skip)
    out: list[str] = []
    for b in loader(stream, batch, workers):
        out += b["key"]
        if len(out) >= n:
            return out[:n]
    return out


@pytest.mark.parametrize("shards", [8, 3])  # by shard, and by sample when shards are fewer than streams
def test_stream_splits_between_processes_and_workers(tmp_path: Path, shards: int) -> None:
    per_shard = 24 // shards
    keys = synthetic_shards(tmp_path / "s", shards, per_shard)
    # 2 processes x 2 workers; a buffer of 1 keeps the order, so a rank's first 12 samples
    # are its workers' first epochs: disjoint between the streams, together everything
    seen = [first_keys(tmp_path / "s", rank, 2, 2, 12, buffer=1) for rank in range(2)]
    together = seen[0] + seen[1]
    assert len(together) == len(set(together)) == 24 and set(together) == keys
    assert set(first_keys(tmp_path / "s", 0, 1, 0, 24 * 3)) == keys  # one stream reads every sample, endlessly


def test_stream_replays_exactly_after_skipping(tmp_path: Path) -> None:
    synthetic_shards(tmp_path / "s", 6, 5)
    full = first_keys(tmp_path / "s", 1, 2, 2, 40, batch=2)
    assert first_keys(tmp_path / "s", 1, 2, 2, 40, batch=2) == full  # the order is a function of the seed
    assert first_keys(tmp_path / "s", 1, 2, 2, 40 - 14, skip=7, batch=2) == full[14:]  # skip 7 batches of 2
    assert full != sorted(full)  # shuffled


def test_maps_painted_on_the_device_equal_the_inference_maps() -> None:
    from camouflage.light.attribute_map import build_attribute_map
    from camouflage.light.attributes import FaceAttributes
    from camouflage.training.data.maps import paint_maps

    rng = np.random.default_rng(0)
    size, slots = 48, 4
    for _ in range(12):
        faces = []
        for _ in range(rng.integers(0, slots + 1)):
            x1, y1 = rng.uniform(-8, 40, 2)
            w, h = rng.uniform(3, 30, 2)
            kp = np.stack([rng.uniform(x1, x1 + w, 5), rng.uniform(y1, y1 + h, 5)], 1).astype(np.float32)
            faces.append(FaceAttributes(np.array([x1, y1, x1 + w, y1 + h], np.float32), rng.uniform(0, 1, 40).astype(np.float32), kp))
        boxes, points, attrs = torch.zeros(1, slots, 4), torch.zeros(1, slots, 5, 2), torch.zeros(1, slots, 40)
        for i, f in enumerate(faces):
            boxes[0, i], points[0, i], attrs[0, i] = (torch.from_numpy(v) for v in (f.box, f.keypoints, f.probabilities))
        painted = paint_maps(boxes, points, attrs, torch.tensor([len(faces)]), size)[0].numpy()
        np.testing.assert_array_equal(painted, build_attribute_map(faces, (size, size)))
