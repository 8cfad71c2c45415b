"""``--method auto`` (the default): the diffusion video method where it can run, else the
classical cover, and one line that says which and why.

The diffusion method (``camouflage``) is chosen when all three hold, checked in this
order, cheapest first and before any model loads:

1. the ``[diffusion]`` extra is installed (torch, diffusers, transformers);
2. its models are here: ``camstream models check camouflage``'s verdict on the files
   (``--models-dir``, else the Hugging Face cache), without loading them;
3. a GPU is there, or ``--device cpu`` asked for the CPU (hours a frame: no one gets
   that by accident).

Otherwise the classical cover runs: ``anonymize.fallback`` (``solid`` unless set), the
cover that already stands in when a diffusion render fails.
"""

from __future__ import annotations

import importlib.util
import logging
from dataclasses import dataclass

from .config import Config
from .errors import ModelError
from .extras import install_hint

log = logging.getLogger("camstream")

DIFFUSION = "camouflage"


@dataclass(frozen=True)
class Choice:
    method: str
    reason: str

    @property
    def line(self) -> str:
        return f"method auto -> {self.method}: {self.reason}"


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def _models_ready(config: Config) -> tuple[bool, str]:
    from camouflage.models.check import check_entry, method_verdicts
    from camouflage.models.manifest import ModelResolver

    resolver = ModelResolver(models_dir=config.models.dir, offline=True)
    states = {entry.name: check_entry(resolver, entry, load=False) for entry in resolver.manifest}
    ready, line = method_verdicts(states)[DIFFUSION]
    return ready, line


def _gpu(device: str) -> str | None:
    """The GPU's name when ``device`` (auto, cuda, cuda:N) has one here, else None."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") and device[5:].isdigit() else 0
    if index >= torch.cuda.device_count():
        return None
    return torch.cuda.get_device_name(index)


def choose(config: Config) -> Choice:
    """What ``--method auto`` runs with this config (the config is not changed)."""
    classical = config.anonymize.fallback
    if not _installed("torch", "diffusers", "transformers", "camouflage.models.methods"):
        return Choice(classical, f"the diffusion extra is not installed ({install_hint('diffusion')} for CAMOUFLaGE)")
    try:
        ready, line = _models_ready(config)
    except ModelError as exc:  # the manifest unreadable, say: no reason to fail a run that a cover can do
        return Choice(classical, f"the diffusion models cannot be checked ({exc})")
    if not ready:
        missing = line.removeprefix("not ready: ").split(", ")
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        where = config.models.dir or "the Hugging Face cache"
        return Choice(
            classical,
            f"the diffusion models are not here ({shown} missing from {where}; "
            "camstream models fetch camouflage --models-dir DIR)",
        )
    device = config.models.device
    if device == "cpu":
        return Choice(DIFFUSION, f"the diffusion extra and its models are here ({line}); --device cpu: hours a frame")
    gpu = _gpu(device)
    if gpu is None:
        return Choice(
            classical,
            "no GPU here (the diffusion models are ready, but on a CPU a frame takes hours: "
            "--method camouflage --device cpu runs it anyway)",
        )
    return Choice(DIFFUSION, f"the diffusion extra, its models ({line}) and a GPU ({gpu}) are here")


def resolve(config: Config) -> Choice | None:
    """The choice for ``auto`` (said once per process and setting), None for any other method."""
    if config.anonymize.method != "auto":
        return None
    key = (config.models.dir, config.models.device, config.anonymize.fallback)
    if key not in _said:
        _said[key] = choose(config)
        log.info("%s", _said[key].line)
    return _said[key]


_said: dict[tuple, Choice] = {}
