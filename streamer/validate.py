"""Settings that would switch privacy off are refused before a run starts.

A threshold above 1 or NaN detects nothing; ``--detect-every 100`` leaves a face
visible for seconds next to a stale cover; a negative margin or hold, or zero pixelate
blocks, quietly weakens every cover. Each is a :class:`ConfigError` (exit 2) with one
line naming the setting, its value and the allowed range.

Every other value is checked too (a name among its choices, a number finite and in a
range that means something): ``stream.open_timeout=-1`` or ``anonymize.scope=bogus``
once failed deep inside a run, or not at all.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from .config import Config, short
from .errors import ConfigError

DETECT_CLASSES = ("faces", "persons", "plates")  # the words of --detect (tracking/classes.py gives them ids)


def parse_classes(value: str | list[str]) -> list[str]:
    """``"faces,plates"`` (or a list) -> ``["faces", "plates"]``; faces are always detected.
    Here, not in tracking/: a bad --detect is refused before NumPy or OpenCV load."""
    words = [w.strip() for w in (value.split(",") if isinstance(value, str) else value) if w.strip()]
    unknown = [w for w in words if w not in DETECT_CLASSES]
    if unknown:
        raise ConfigError(f"--detect: unknown class {', '.join(map(repr, unknown))}; choose from {', '.join(DETECT_CLASSES)}")
    if "faces" not in words:
        raise ConfigError("--detect: faces are always detected (e.g. --detect faces,plates)")
    return list(dict.fromkeys(words))


MAX_DETECT_EVERY = 30  # more only with detection.allow_sparse (--allow-sparse-detection)
MIN_CELL_PX = 10  # mosaic cells: 6 cells of 2 px on a tiny face still look like a face (measured on vtest.avi)


def _number(where: str, value: object, low: float, high: float, *, low_open: bool = False, integer: bool = False) -> None:
    kind = "an integer" if integer else "a number"
    ok = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok or not math.isfinite(value):
        raise ConfigError(f"{where}: {short(value)} is not {kind}")
    if value < low or value > high or (low_open and value == low):
        opening = "(" if low_open else "["
        raise ConfigError(f"{where}: {value!r} is out of range {opening}{low:g}, {high:g}]")


def _choice(where: str, value: object, choices: tuple[str, ...] | list[str]) -> None:
    if value not in choices:
        raise ConfigError(f"{where}: {short(value)} is not one of {', '.join(choices)}")


X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")


def validate(config: Config) -> None:
    """Raise :class:`ConfigError` for the first setting out of its safe range."""
    det, trk, ano, out = config.detection, config.tracking, config.anonymize, config.output
    _number("detection.threshold (--threshold)", det.threshold, 0, 1, low_open=True)
    most = 10**6 if det.allow_sparse else MAX_DETECT_EVERY
    _number("detection.every (--detect-every)", det.every, 1, most, integer=True)
    _number("detection.full_every", det.full_every, 1, MAX_DETECT_EVERY, integer=True)
    _number("detection.scene_cut", det.scene_cut, 0, 1, low_open=True)
    _number("detection.person_threshold", det.person_threshold, 0, 1, low_open=True)
    if det.plate_threshold is not None:
        _number("detection.plate_threshold", det.plate_threshold, 0, 1, low_open=True)
    det.classes = parse_classes(det.classes)
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
    _choice("detection.detector (--detector)", det.detector, ("libfacedetection", "centerface"))
    _choice("detection.second_look", det.second_look, ("none", "centerface"))
    if not det.person_weights:
        raise ConfigError("detection.person_weights: empty")
    _choice("anonymize.fallback (--fallback)", ano.fallback, ("solid", "pixelate", "blur"))
    _choice("anonymize.scope (--scope)", ano.scope, ("face", "person", "scene"))
    _choice("anonymize.shape (--shape)", ano.shape, ("ellipse", "box"))
    _choice("output.preset", out.preset, X264_PRESETS)
    _choice("output.audio_streams (--audio-streams)", out.audio_streams, ("all", "first", "none"))
    _stream(config)
    _models_and_methods(config)


def _stream(config: Config) -> None:
    st = config.stream
    _number("stream.open_timeout", st.open_timeout, 0, 3600, low_open=True)
    _number("stream.read_timeout", st.read_timeout, 0, 3600, low_open=True)
    _number("stream.reconnect_attempts (-1: for ever)", st.reconnect_attempts, -1, 10**6, integer=True)
    _number("stream.reconnect_backoff", st.reconnect_backoff, 0, 3600)
    _number("stream.reconnect_max_backoff", st.reconnect_max_backoff, 0, 86400)
    _number("stream.stats_interval", st.stats_interval, 0, 86400, low_open=True)


def _models_and_methods(config: Config) -> None:
    """The diffusion sections: checked here too, so that a bad value is exit 2 before any
    model loads (their meaning is camouflage's; these are only the bounds of sense)."""
    m, b, li, sp, cam = config.models, config.base, config.light, config.speed, config.camouflage
    if not isinstance(m.device, str) or not _DEVICE.match(m.device):
        raise ConfigError(f"models.device (--device): {short(m.device)} is not auto, cpu, mps, cuda or cuda:N")
    _choice("models.dtype", m.dtype, ("auto", "float32", "float16", "bfloat16"))
    folder = Path(m.dir).expanduser() if m.dir else None
    if folder is not None and folder.exists() and not folder.is_dir():
        # a file or a device: every model would be "missing" there, and fetched from the hub instead
        raise ConfigError(f"models.dir (--models-dir): {short(m.dir)} is not a folder")
    for name, section in (("base", b), ("light", li)):
        _number(f"{name}.resolution", section.resolution, 64, 4096, integer=True)
        _number(f"{name}.steps", section.steps, 1, 1000, integer=True)
        _number(f"{name}.strength", section.strength, 0, 1, low_open=True)
        _number(f"{name}.anonymization_scale", section.anonymization_scale, 0, 100)
        _number(f"{name}.seed", section.seed, 0, 2**63 - 1, integer=True)
    _number("base.guidance_scale", b.guidance_scale, 0, 100)
    _number("base.lineart_stop", b.lineart_stop, 0, 1)
    for control, scale in b.controls.items():
        _number(f"base.controls.{control}", scale, 0, 10)
    _choice("light.adapters", li.adapters, ("auto", "camouflage", "public"))
    for key in ("ip_adapter_scale", "adapter_scale"):
        _number(f"light.{key}", getattr(li, key), 0, 10)
    for name, section in (("light", li), ("camouflage", cam)):
        _number(f"{name}.context", section.context, 0, 5)
        _number(f"{name}.feather", section.feather, 0, 1)
    _number("speed.lcm_steps", sp.lcm_steps, 1, 50, integer=True)
    _number("camouflage.keyframe_every", cam.keyframe_every, 1, 10**6, integer=True)
    _number("camouflage.keyframe_pose_change (<= 0: off)", cam.keyframe_pose_change, -1, 10)
    _choice("camouflage.mode", cam.mode, ("auto", "quality", "realtime"))
    _number("camouflage.latency", cam.latency, 0, 3600, low_open=True)
    _number("camouflage.reuse_for", cam.reuse_for, 0, 10**6, integer=True)
    _number("camouflage.max_batch", cam.max_batch, 1, 1024, integer=True)
