"""Which extra a missing package belongs to, for a one-line 'pip install' answer (exit 5)."""

from __future__ import annotations

import importlib.util

from .errors import ModelError

# The top-level package each extra brings, for the 'pip install' line of a missing one.
EXTRAS = {
    "diffusion": ("torch", "torchvision", "diffusers", "transformers", "controlnet_aux", "accelerate", "peft", "torchsde",
                  "safetensors", "huggingface_hub", "webdataset"),
    "light": ("facer", "validators"),
    "eval": ("dlib", "face_recognition_models", "matplotlib"),
    "yolo": ("ultralytics", "lap"),
}


def install_hint(extra: str) -> str:
    """The command that adds ``extra``. camstream is not on PyPI, so it installs from a
    clone: the package name with an extra would find nothing on PyPI."""
    return f"pip install '.[{extra}]' in a clone of camstream"


def missing_extra(exc: ModuleNotFoundError) -> str | None:
    """'... needs the diffusion extra (...): pip install ...' when ``exc`` is a package of an extra."""
    top = (exc.name or "").split(".")[0]
    for extra, packages in EXTRAS.items():
        if top in packages:
            return f"this needs the {extra} extra ({top} is not installed): {install_hint(extra)}"
    return None


def require(what: str, *extras: str) -> None:
    """Raise :class:`ModelError` (exit 5) naming every extra ``what`` needs, when a package
    of one is missing: said before any work, not after the first gigabyte is written."""
    for extra in extras:
        for package in EXTRAS[extra]:
            if importlib.util.find_spec(package) is None:
                names = " and ".join(extras)
                raise ModelError(f"{what} needs the {names} extra{'s' if len(extras) > 1 else ''} ({package} is not installed): "
                                 f"{install_hint(','.join(extras))}")
