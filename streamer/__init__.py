"""Streams and the run: sources, sinks, the pipeline, anonymizers, CLI, config, report."""

from .frame import Frame

__all__ = ["Frame"]
