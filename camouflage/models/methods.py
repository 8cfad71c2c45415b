"""The diffusion methods ``camstream run --method`` offers, imported lazily.

Each method names a factory ``"module:function"`` (called as ``function(config)`` and
returning a :class:`streamer.anonymizers.Anonymizer`) and the manifest sections or
entries it needs (``camstream models fetch METHOD`` fetches them). Adding a method is
one line here::

    METHODS["light"] = Method("camouflage.light.anonymizer:build_light_anonymizer", ("light",), "...")
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from streamer.errors import ConfigError


@dataclass(frozen=True)
class Method:
    factory: str  # "module:function", function(config: streamer.config.Config) -> Anonymizer
    models: tuple[str, ...]  # manifest sections/entries it loads (`models fetch METHOD` fetches them)
    help: str = ""
    upgrades: tuple[str, ...] = ()  # sections it uses when present (`light.adapters: auto`), never fetched for it
    strict: tuple[str, ...] = ()  # sections whose optional entries this method cannot do without


METHODS: dict[str, Method] = {
    "base": Method(
        "camouflage.base.anonymizer:build_base_anonymizer",
        ("base", "annotators"),
        "CAMOUFLaGE-Base: 5 ControlNets + identity-function negative guidance (slow, best)",
    ),
    "light": Method(
        "camouflage.light.anonymizer:build_light_anonymizer",
        ("sd15", "vae", "light"),
        "CAMOUFLaGE-Light: IP-Adapter (FaRL) + T2I-Adapter (41-channel FACER attribute map), 2-4x faster",
        strict=("light",),
    ),
    "camouflage": Method(
        "camouflage.video.anonymizer:build_camouflage_anonymizer",
        ("base", "annotators", "public"),
        "CAMOUFLaGE for video: one fake person per track, Base keyframes, Light in between (default)",
        upgrades=("light",),
    ),
}


def build_method(name: str, config):  # noqa: ANN001, ANN201 - Config -> Anonymizer
    """Build the anonymizer of method ``name`` (raises ConfigError / ModelError)."""
    try:
        method = METHODS[name]
    except KeyError:
        raise ConfigError(f"unknown method {name!r} (known: {', '.join(METHODS)})") from None
    module, _, function = method.factory.partition(":")
    return getattr(importlib.import_module(module), function)(config)
