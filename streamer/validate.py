"""Settings that would switch privacy off are refused before a run starts.

A threshold above 1 or NaN detects nothing; ``--detect-every 100`` leaves a face
visible for seconds next to a stale cover; a negative margin or hold, or zero pixelate
blocks, quietly weakens every cover. Each is a :class:`ConfigError` (exit 2) with one
line naming the setting, its value and the allowed range.
"""

from __future__ import annotations

import math

from .config import Config
from .errors import ConfigError

MAX_DETECT_EVERY = 30  # more only with detection.allow_sparse (--allow-sparse-detection)
MIN_CELL_PX = 10  # mosaic cells: 6 cells of 2 px on a tiny face still look like a face (measured on vtest.avi)


def _number(where: str, value: object, low: float, high: float, *, low_open: bool = False, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise ConfigError(f"{where}: {value!r} is not {kind}")
    if value < low or value > high or (low_open and value == low):
        opening = "(" if low_open else "["
        raise ConfigError(f"{where}: {value!r} is out of range {opening}{low:g}, {high:g}]")


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` for the first setting out of its safe range."""
    det, trk, ano, out = config.detection, config.tracking, config.anonymize, config.output
    _number("detection.threshold (--threshold)", det.threshold, 0, 1, low_open=True)
    most = 10**6 if det.allow_sparse else MAX_DETECT_EVERY
    _number("detection.every (--detect-every)", det.every, 1, most, integer=True)
    _number("detection.full_every", det.full_every, 1, MAX_DETECT_EVERY, integer=True)
    _number("detection.scene_cut", det.scene_cut, 0, 1, low_open=True)
    _number("detection.person_threshold", det.person_threshold, 0, 1, low_open=True)
    if det.max_side is not None:
        _number("detection.max_side", det.max_side, 64, 8192, integer=True)
    _number("tracking.hold_frames (--hold)", trk.hold_frames, 0, 300, integer=True)
    _number("tracking.hold_growth", trk.hold_growth, 0, 1)
    _number("tracking.hold_max_growth", trk.hold_max_growth, 0, 3)
    _number("tracking.activation_threshold", trk.activation_threshold, 0, 1, low_open=True)
    _number("anonymize.margin (--margin)", ano.margin, 0, 2)
    _number("anonymize.pixelate_blocks", ano.pixelate_blocks, 1, 16, integer=True)
    _number("anonymize.pixelate_min_cell_px (--mosaicsize)", ano.pixelate_min_cell_px, MIN_CELL_PX, 1000, integer=True)
    _number("anonymize.blur_strength", ano.blur_strength, 0.05, 2)
    if len(ano.color) != 3 or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c <= 255 for c in ano.color):
        raise ConfigError(f"anonymize.color: {ano.color!r} is not three integers in [0, 255]")
    _number("output.crf (--crf)", out.crf, 0, 51, integer=True)
