"""A batch worker loads the diffusion models once and runs many files with them: the
second file must come out as the first (same input, same seeds: the same regions,
identities, keyframes and renders), so no state of one file (a closed run's U-Net
hooks) reaches the next."""

from __future__ import annotations

import importlib
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import probe, read_frames
from tiny_models import RESOLUTION, STEPS, one_torch_thread, tiny_config, tiny_models  # noqa: F401 - fixtures

from streamer.scale.models import BUILDERS


@pytest.mark.full  # 135 s: a Ray cluster and the tiny diffusion models
def test_one_worker_two_files_one_model_load_identical_outputs(tiny_models: Path, data: Path, tmp_path: Path) -> None:  # noqa: F811
    from streamer.scale.worker import FileWorker

    config = tiny_config(tiny_models)
    config.anonymize.method = "camouflage"
    config.light.resolution, config.light.steps = RESOLUTION, STEPS
    modules = [(importlib.import_module(module), name) for module, name in BUILDERS]
    originals = [getattr(module, name) for module, name in modules]
    try:
        worker = FileWorker(config)
        out = tmp_path / "out"
        out.mkdir()
        again = tmp_path / "again.avi"
        again.symlink_to(data / "Megamind.avi")
        results = []
        for i, clip in enumerate((data / "Megamind.avi", again)):
            unit = {"id": f"{i:05d}", "input": str(clip), "output": str(out / f"{clip.stem}.anonymized.mp4"),
                    "report": str(out / f"{clip.stem}.anonymized.json"), "outdir": str(out)}
            results.append(worker.process(unit, None, 0.5))
        assert [r["status"] for r in results] == ["ok", "ok"], results
        first, second = (r["report"]["anonymizer"] for r in results)
        same = ("regions", "identities", "keyframes", "light_regions", "generated_regions")
        assert first["generated_regions"] > 0 and {k: second[k] for k in same} == {k: first[k] for k in same}
        assert second["fallback_failed_regions"] == first["fallback_failed_regions"] == 0  # renders not stopped
        a, b = (read_frames(out / f"{n}.anonymized.mp4") for n in ("Megamind", "again"))
        assert len(a) == len(b) == probe(out / "Megamind.anonymized.mp4")["frames"] > 0
        # Not compared pixel by pixel: two runs of the tiny models in one process differ on
        # some pixels even without the cache (measured: up to 0.4 % of values by > 8 levels).
        assert max(float(np.abs(x.astype(np.int16) - y).mean()) for x, y in zip(a, b, strict=True)) < 2.0
        assert json.loads((out / "again.anonymized.json").read_text())["status"] == "ok"
        for module, name in modules:  # loaded by the first file, reused by the second
            cached = getattr(module, name)
            assert hasattr(cached, "__wrapped__") and len(cached.cache) == 1, name
    finally:
        for (module, name), original in zip(modules, originals, strict=True):
            setattr(module, name, original)
