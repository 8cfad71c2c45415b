"""Typed run configuration: dataclasses filled from YAML files and CLI overrides.

Precedence: built-in defaults < ``camstream/configs/default.yaml``-style file(s) given
with ``--config`` < ``--set section.key=value`` < dedicated CLI flags.

Reading is bounded (:func:`read_yaml`): a config is a regular file of at most
``MAX_CONFIG_BYTES``, UTF-8 YAML whose aliases expand to at most ``MAX_VALUES`` values
(an 11-line alias bomb expands to billions), so a hostile or mistaken file is one
:class:`ConfigError` line (exit 2), never a hang or an out-of-memory.
"""

from __future__ import annotations

import dataclasses
import os
import stat
import types
import typing
from dataclasses import dataclass, field
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .presets import preset, preset_names
from .redact import redact

MAX_CONFIG_BYTES = 1 << 20  # a config or cameras file: 1 MiB is thousands of cameras
MAX_VALUES = 100_000  # scalars, lists and mappings once every alias is expanded
MAX_DEPTH = 64  # nesting; deeper is a mistake or an attack (the constructor recurses)


@dataclass
class DetectionConfig:
    detector: str = "libfacedetection"  # or "centerface"
    threshold: float = 0.2  # low on purpose: covering a false positive costs little
    max_side: int | None = 960  # detect on a copy scaled to this longer side
    every: int = 4  # run the detector on every k-th frame; the tracker predicts between
    full_every: int = 8  # every n-th detection sees the whole frame, the others crops around motion and tracked faces (1: all whole)
    scene_cut: float = 0.25  # mean abs difference (0..1) of tiny thumbnails forcing a detection
    persons: bool = False  # also detect persons (YOLO, optional extra) for --scope person
    persons_optional: bool = False  # persons: go on with faces only when YOLO cannot load (else exit 5)
    allow_sparse: bool = False  # allow every > 30 (a face can stay visible between detections)
    rotated: bool = False  # also detect on the frame turned +-45 degrees (tilted heads; ~3x detection cost)
    second_look: str = "none"  # "centerface": a second detector on crops around tracked faces (profiles; ~25 ms a face)
    person_weights: str = "yolo11n.pt"
    person_threshold: float = 0.35
    classes: list[str] = field(default_factory=lambda: ["faces"])  # --detect: faces, plates, persons (streamer/classes.py)
    plate_model: str = "plate_yolo_v9_t_384"  # a manifest entry of section plates (configs/models.yaml)
    plate_threshold: float | None = None  # None: the plate model's publisher default
    person_model: str = "rtdetr_r50vd"  # --detect persons: a manifest entry of section persons, or "yolo" (AGPL extra)


@dataclass
class TrackingConfig:
    hold_frames: int = 12  # frames a lost face stays covered at its predicted box
    hold_growth: float = 0.1  # the held box grows by this fraction per missed frame ...
    hold_max_growth: float = 0.6  # ... up to this
    activation_threshold: float = 0.5


@dataclass
class AnonymizeConfig:
    method: str = "auto"  # camouflage where its extra, models and a GPU are (streamer/auto.py), else the fallback; or any method
    fallback: str = "solid"  # what covers a region when the method fails or is late
    scope: str = "face"  # "face" | "person" | "scene" (diffusion methods)
    shape: str = "ellipse"  # "ellipse" | "box"
    margin: float = 0.3
    pixelate_blocks: int = 6
    pixelate_min_cell_px: int = 10  # mosaic cells at least this wide (deface's --mosaicsize); never under 10
    blur_strength: float = 0.25
    color: list[int] = field(default_factory=lambda: [0, 0, 0])
    replace_with: str | None = None  # method "image": the picture pasted over each face (--replace-with)


@dataclass
class OutputConfig:
    crf: int = 20
    preset: str = "veryfast"
    keep_audio: bool = True
    keep_metadata: bool = False
    audio_streams: str = "all"  # "all" audio and subtitle streams the container holds | "first" audio | "none"
    keep_rotation: bool = False  # store frames as the source does, with its display matrix, instead of upright


@dataclass
class StreamConfig:
    open_timeout: float = 10.0
    read_timeout: float = 10.0
    reconnect_attempts: int = 10  # -1: for ever
    reconnect_backoff: float = 0.5
    reconnect_max_backoff: float = 10.0
    stats_interval: float = 5.0  # seconds between live stats lines


@dataclass
class ModelsConfig:
    """Where diffusion weights come from (see camstream/configs/models.yaml and ``camstream models``)."""

    dir: str | None = None  # --models-dir: a folder in the manifest layout; else HF cache, else hub
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:N"
    dtype: str = "auto"  # "auto" (fp16 on GPU, fp32 on CPU) | "float32" | "float16" | "bfloat16"
    offline: bool | None = None  # None: respect HF_HUB_OFFLINE


@dataclass
class BaseConfig:
    """CAMOUFLaGE-Base (camouflage/base/) settings."""

    resolution: int = 768
    steps: int = 25
    strength: float = 0.75
    anonymization_scale: float = 1.25
    guidance_scale: float = 7.5
    seed: int = 0
    scheduler: str = "dpmpp_sde_karras"
    controls: dict[str, float] = field(
        default_factory=lambda: {"depth": 0.5, "normal": 0.3, "seg": 0.5, "pose": 1.0, "lineart": 0.5}
    )
    lineart_stop: float = 0.5  # fraction of steps after which lineart is switched off
    prompt: str | None = None  # None: caption the image
    annotators: dict[str, str] = field(default_factory=dict)  # control -> annotator name override
    conditioning: str = "auto"  # "blind" (the face from seeded noise, no face detail in), "paper" (img2img + IDF), "auto": paper with a trained IDF


@dataclass
class LightConfig:
    """CAMOUFLaGE-Light (camouflage/light/) settings."""

    resolution: int = 768  # generated crop size (rounded down to a multiple of 64 for SD1.5)
    steps: int = 25
    strength: float = 0.75
    anonymization_scale: float = 1.25  # a_s of the negative identity guidance (2 U-Net branches); 1 = off (-c realtime)
    adapters: str = "auto"  # video method: "camouflage" (trained), "public" (IP-Adapter plus-face + openpose), "auto": trained if present
    ip_adapter_scale: float = 0.6
    adapter_scale: float = 1.0  # T2I-Adapter (attribute/keypoint map) residual scale
    seed: int = 0
    scheduler: str = "dpmpp_sde_karras"  # or dpmpp_2m_sde_karras, dpmpp_2m_karras, ddim, euler_a
    prompt: str = "a photo of a person's face, natural skin, detailed eyes, sharp focus"  # text CFG, as IP-Adapter is used
    negative_prompt: str = "deformed, disfigured, distorted face, blurry, lowres, cartoon, painting, text, watermark"
    guidance_scale: float = 7.5  # text + image-prompt CFG (the zero-image branch); <= 1: one branch (as with LCM)
    conditioning: str = "auto"  # as base.conditioning: "blind", "paper" (img2img + push from the real face), "auto"
    context: float = 0.5  # crop = region + this fraction of its size on every side
    feather: float = 0.25  # paste fall-off, as a fraction of the band between shape and crop edge


@dataclass
class SpeedConfig:
    """Optional speed components for Base and Light (camouflage/speed.py; ``-c realtime``)."""

    lcm: bool = False  # fuse the LCM-LoRA (manifest: lcm_lora_sd15) and sample with LCMScheduler
    lcm_steps: int = 4  # steps with lcm (replaces base.steps/light.steps; strength still trims them)
    tiny_vae: bool = False  # TAESD (manifest: taesd) in place of the full VAE: faster encode/decode, softer detail
    compile: bool = False  # channels_last + torch.compile for the U-Nets and ControlNets (GPU; the first frames compile)


@dataclass
class CamouflageConfig:
    """The video method (``--method camouflage``, camouflage/video/): Base renders
    keyframes, Light the frames in between; base.* and light.* set the two models."""

    keyframe_every: int = 48  # frames; 1 = Base on every frame
    keyframe_on_birth: bool = True
    keyframe_on_scene_cut: bool = True
    keyframe_pose_change: float = 0.2  # mean landmark shift, in face-box sizes (<= 0: off)
    mode: str = "auto"  # "quality" (wait for every frame) | "realtime" (latency budget) | "auto": realtime for live sources
    latency: float = 0.5  # realtime: seconds a frame may wait for its generation, else the fallback covers
    reuse_for: int = 12  # realtime, late: the identity's latest fake face (at most this many frames old) instead of the fallback; 0: off
    context: float = 0.5  # crop = region + this fraction of its size on every side
    feather: float = 0.25  # paste fall-off, as a fraction of the band between shape and crop edge
    colour_match: bool = True  # shift the generated crop's colour to its surroundings
    max_batch: int = 8  # crops per generator call
    fresh_noise: bool = False  # new noise every frame: the per-frame baseline for the flicker measure
    measure: bool = False  # flicker (warping error: optical flow on the crops, costly); the UNet cost is always reported
    tracklet_frames: int = 12  # untracked regions: a short-lived identity matched by overlap, kept this many frames unseen
    measure_identity: bool = False  # identity drift too (dlib face embeddings: ~0.1 s per face per frame on CPU)


@dataclass
class Config:
    detection: DetectionConfig = field(default_factory=DetectionConfig)
    tracking: TrackingConfig = field(default_factory=TrackingConfig)
    anonymize: AnonymizeConfig = field(default_factory=AnonymizeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    stream: StreamConfig = field(default_factory=StreamConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    base: BaseConfig = field(default_factory=BaseConfig)
    light: LightConfig = field(default_factory=LightConfig)
    speed: SpeedConfig = field(default_factory=SpeedConfig)
    camouflage: CamouflageConfig = field(default_factory=CamouflageConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, credentials redacted, cut to ``limit`` characters: an error line
    never prints a huge value (redacted first: a cut could keep a password and lose its '@')."""
    text = redact(repr(value))
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _expanded_size(node: yaml.Node, memo: dict[int, int], depth: int = 0) -> int:
    """Values ``node`` holds once its aliases are expanded (an alias is the same node
    object again: memoized, so counting costs the document's size, not the expansion's)."""
    key = id(node)
    if key in memo:
        if memo[key] < 0:
            raise ConfigError("a YAML alias refers to itself (a recursive structure)")
        return memo[key]
    if depth > MAX_DEPTH:
        raise ConfigError(f"nested more than {MAX_DEPTH} levels deep")
    memo[key] = -1  # in progress
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo, depth + 1) + _expanded_size(v, memo, depth + 1) for k, v in node.value)
    else:
        size = 1
    memo[key] = size = min(size, MAX_VALUES + 1)  # past the limit the exact figure does not matter
    return size


def parse_yaml(text: str, where: str) -> Any:
    """YAML text to Python values (the safe loader), refusing alias bombs and deep nesting."""
    try:
        loader = yaml.SafeLoader(text)  # its reader already refuses control characters (a NUL)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({str(exc).splitlines()[0]})") from None
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_VALUES:
            raise ConfigError(f"{where}: expands to more than {MAX_VALUES} values (YAML aliases); refused")
        return loader.construct_document(node)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: invalid YAML ({str(exc).splitlines()[0]})") from None
    except ConfigError as exc:
        raise ConfigError(str(exc) if str(exc).startswith(where) else f"{where}: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{where}: nested too deeply") from None
    finally:
        loader.dispose()


def read_yaml(source: str | Path | Traversable, what: str = "config") -> Any:
    """A YAML file read within bounds: a regular file (not a device, FIFO or folder: ``-c
    /dev/zero`` would never end), at most :data:`MAX_CONFIG_BYTES`, UTF-8."""
    where = str(source)
    if isinstance(source, (str, Path)):
        try:
            info = os.stat(source)
            if not stat.S_ISREG(info.st_mode):
                kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
                raise ConfigError(f"{where}: cannot read {what} ({kind})")
            if info.st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{where}: {what} is larger than {MAX_CONFIG_BYTES // 1024} KiB; refused")
            with open(source, "rb") as f:
                raw = f.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {what} ({exc.strerror})") from None
    else:
        raw = source.read_bytes()
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{where}: {what} is larger than {MAX_CONFIG_BYTES // 1024} KiB; refused")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {what} is not UTF-8 text (a binary file?)") from None
    return parse_yaml(text, where)


def _check(value: Any, hint: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in typing.get_args(hint):
            return None
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
        origin = typing.get_origin(hint)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {short(value)}")
        _, item = typing.get_args(hint)
        return {str(k): _check(v, item, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {short(value)}")
        (item,) = typing.get_args(hint)
        return [_check(v, item, where) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and (not isinstance(value, hint) or (hint is int and isinstance(value, bool))):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {short(value)}")
    return value


def _merge(obj: Any, data: dict[str, Any], where: str) -> None:
    hints = typing.get_type_hints(type(obj))
    for key, value in data.items():
        if not isinstance(key, str) or key not in hints:
            known = ", ".join(hints)
            raise ConfigError(f"{where}{short(key) if not isinstance(key, str) else key}: unknown setting (known: {known})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{where}{key}: expected a mapping")
            _merge(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, _check(value, hints[key], f"{where}{key}"))


def config_source(name: str | Path) -> str | Path | Traversable:
    """A file path, else a preset by name (``-c paranoid``); a one-line error for neither."""
    path = Path(name)
    if path.exists() or os.path.sep in str(name) or str(name).endswith((".yaml", ".yml")):
        return path  # a path: read_yaml says what is wrong with it
    found = preset(str(name))
    if found is None:
        raise ConfigError(f"{name}: no such config file or preset (presets: {', '.join(preset_names())})")
    return found


def load_config(files: list[str | Path] = (), overrides: list[str] = ()) -> Config:
    """Defaults, then each YAML file, then ``section.key=value`` overrides."""
    config = Config()
    for file in files:
        data = read_yaml(config_source(file)) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: a config must be a mapping of sections")
        _merge(config, data, "")
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set {short(item)}: expected section.key=value")
        section, _, name = key.partition(".")
        _merge(config, {section: {name: parse_yaml(raw, f"--set {key}")}}, "")
    return config
