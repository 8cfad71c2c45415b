"""The YAML files that ship inside the package (``camstream/configs/``): presets for
``-c NAME`` and the model manifest, read with :mod:`importlib.resources`, so that a plain
``pip install .`` (a wheel, no source tree) finds them exactly as a checkout does."""

from __future__ import annotations

from importlib.resources import files
from importlib.resources.abc import Traversable

PACKAGE = "camstream.configs"
NOT_PRESETS = {"default", "models"}  # shipped, but not a preset: the defaults' copy and the manifest


def config_file(name: str) -> Traversable:
    """The shipped file ``name`` (e.g. ``models.yaml``); it may not exist: check ``is_file()``."""
    return files(PACKAGE).joinpath(name)


def preset(name: str) -> Traversable | None:
    """The shipped preset called ``name`` (``paranoid``, ``quality``, ...), or None."""
    if not name or "/" in name or "\\" in name or name.startswith("."):
        return None
    found = config_file(f"{name}.yaml")
    return found if found.is_file() else None


def preset_names() -> list[str]:
    """The preset names ``-c`` takes, sorted."""
    return sorted(p.name[:-5] for p in files(PACKAGE).iterdir() if p.name.endswith(".yaml") and p.name[:-5] not in NOT_PRESETS)
