"""Diffusion models loaded once per worker process, not once per file.

``streamer.runner.run`` builds its anonymizer for every file. For the classical methods
that costs nothing; for the diffusion methods it loads gigabytes of weights. A worker
that runs many files calls :func:`keep_models_loaded` once: the two builders that load
weights (CAMOUFLaGE-Base and -Light) then hand out the same loaded models again, each
file getting its own shallow copy with fresh per-file state (Light's identities per
track), so one file never sees another's fake faces and its output is the same as in a
process of its own.
"""

from __future__ import annotations

import copy
import importlib
import json
from collections.abc import Callable
from typing import Any

# module, builder: the functions that load weights (camouflage.video.anonymizer calls both by module
# attribute at call time, so replacing the attribute reaches every method)
BUILDERS = (("camouflage.base.anonymizer", "build_base_anonymizer"), ("camouflage.light.anonymizer", "build_light_anonymizer"))
_PER_FILE_STATE = ("identities",)  # containers an anonymizer fills during a run


def _key(config: Any) -> str:
    """Everything that can change what is loaded: the whole config but its per-run parts."""
    data = config.to_dict()
    for section in ("output", "stream", "tracking"):
        data.pop(section, None)
    return json.dumps(data, sort_keys=True, default=str)


def _fresh(model: Any) -> Any:
    clone = copy.copy(model)
    for name in _PER_FILE_STATE:
        if hasattr(clone, name):
            setattr(clone, name, type(getattr(model, name))())
    return clone


def _cached(build: Callable[..., Any], cache: dict[str, Any]) -> Callable[..., Any]:
    def build_once(config: Any, **options: Any) -> Any:  # e.g. Light's conditioning=, which the video method passes
        key = _key(config) + json.dumps(options, sort_keys=True, default=str)
        if key not in cache:
            cache[key] = build(config, **options)
        return _fresh(cache[key])

    build_once.__wrapped__ = build  # type: ignore[attr-defined]
    build_once.cache = cache  # type: ignore[attr-defined]
    return build_once


def keep_models_loaded() -> bool:
    """Install the per-process cache; False when the diffusion methods are not installed."""
    installed = False
    for module_name, name in BUILDERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError:
            continue
        build = getattr(module, name)
        if not hasattr(build, "__wrapped__"):
            setattr(module, name, _cached(build, {}))
        installed = True
    return installed
