"""camstream: anonymize people in video files, images and camera streams, fail-closed.

The library API (documented in docs/api.md)::

    import camstream

    report = camstream.anonymize("clip.mp4", "clip.anonymized.mp4", method="pixelate")
    for image in camstream.anonymize_frames(frames, method="solid"):  # (H, W, 3) uint8 RGB
        ...

``camstream.Detector`` is the protocol a detector of your own follows (``detector=``).
The command line lives in :mod:`streamer.cli`; the presets and the model manifest ship
here, in ``camstream/configs/`` (read through :mod:`streamer.presets`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["CamstreamError", "Detector", "FrameStream", "Report", "anonymize", "anonymize_frames"]


def __getattr__(name: str) -> Any:  # noqa: ANN401
    # Lazily: the CLI imports this package (its configs) and must not wait for NumPy.
    if name in __all__:
        from . import api

        return getattr(api, name)
    raise AttributeError(f"module 'camstream' has no attribute {name!r}")
