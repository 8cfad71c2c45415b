"""The unit that flows through the pipeline."""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tracking.motion import Motion


@dataclass(slots=True)
class Frame:
    """One decoded picture, upright, in RGB.

    ``pts``/``time_base`` are the source's own timestamps, passed through untouched so
    that frame rate, variable frame rate and audio sync survive the pipeline.
    """

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB, C-contiguous
    pts: int | None = None
    time_base: Fraction | None = None
    motion: Motion | None = None  # the camera's motion from the frame before (tracking/motion.py), set by the pipeline

    @property
    def time(self) -> float | None:
        """Presentation time in seconds, when the source has timestamps."""
        if self.pts is None or self.time_base is None:
            return None
        return float(self.pts * self.time_base)

    @property
    def height(self) -> int:
        return int(self.image.shape[0])

    @property
    def width(self) -> int:
        return int(self.image.shape[1])
