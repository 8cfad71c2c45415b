"""Streams and the run: sources, sinks, the pipeline, anonymizers, CLI, config, report."""

from __future__ import annotations

from typing import Any

__all__ = ["Frame"]


def __getattr__(name: str) -> Any:  # noqa: ANN401
    # Lazily: `camstream --help` imports this package and should not wait for NumPy.
    if name == "Frame":
        from .frame import Frame

        return Frame
    raise AttributeError(name)
