"""Joining (or starting) the Ray cluster that batch and serve run on."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..extras import install_hint

log = logging.getLogger("camstream")

# Passed on to the workers: where models come from and whether the hub may be asked.
_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_HUB_CACHE", "YOLO_OFFLINE", "CAMSTREAM_TEST_DATA")


def import_ray() -> Any:
    try:
        import ray
    except ModuleNotFoundError:
        raise ConfigError(f"Ray is not installed: {install_hint('ray')}") from None
    return ray


def code_root() -> str:
    """The folder holding the ``streamer`` package this process runs: workers started by
    this cluster import the same code (an editable checkout, a venv), not another copy."""
    return str(Path(__file__).resolve().parents[2])


def runtime_env() -> dict[str, Any]:
    env = {k: os.environ[k] for k in _ENV if k in os.environ}
    paths = [code_root(), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return {"env_vars": env}


def connect(address: str | None, *, debug: bool = False, num_cpus: int | None = None, worker_logs: bool = False) -> bool:
    """Connects to ``address``: "auto", the cluster running on this machine, else a new
    local one; "local", always a new local one; else that cluster's address. Returns True
    when this call made the connection (the caller shuts it down). ``worker_logs``: the
    workers' warnings are printed here (serve: a camera's reconnects and retries)."""
    ray = import_ray()
    if ray.is_initialized():
        return False
    kwargs: dict[str, Any] = {}
    if address == "local":  # a new cluster of this process's own
        kwargs = {"address": "local", "include_dashboard": False, "num_cpus": num_cpus}
    elif address in (None, "auto"):  # the cluster running on this machine (RAY_ADDRESS), else a new one
        kwargs = {"include_dashboard": False}
    else:
        kwargs = {"address": address}
    try:
        ray.init(log_to_driver=debug or worker_logs, logging_level=logging.INFO if debug else logging.WARNING,
                 configure_logging=debug, **kwargs)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise ConfigError(f"cannot join the Ray cluster at {address}: {exc}") from None
    log.debug("ray: %s", ray.cluster_resources())
    return True
