"""``camstream``: anonymize people in videos, images and live camera streams.

Exit codes: 0 ok, 1 internal error, 2 bad usage/config, 3 bad input, 4 output not
writable, 5 models missing, 6 stream unreachable/lost, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from .errors import CamstreamError, ConfigError

log = logging.getLogger("camstream")

EPILOG = """examples:
  camstream run footage.mp4                      -> footage.anonymized.mp4 beside it
                                                    (camouflage: needs 'camstream models fetch camouflage')
  camstream run footage.mp4 --method pixelate --report report.json
  camstream run footage.mp4 --config realtime    Base keyframes + LCM/TAESD Light in between
  camstream run footage.mp4 --config quality     every frame rendered, keyframes every 24 frames
  camstream run rtsp://cam.local/stream -o rtsp://relay.local/anon
  camstream run webcam:0 -o live.mkv
  camstream run photos/ -o photos.anonymized/

exit codes: 0 ok, 1 internal error, 2 bad usage/config, 3 bad input,
  4 output not writable, 5 models missing, 6 stream unreachable/lost,
  130 interrupted (Ctrl-C), 143 terminated. An interrupted or failed video run
  leaves NAME.partial.mp4: playable, every processed frame, never a raw face."""


def _time(text: str) -> float:
    """Seconds from '90', '1:30' or '0:01:30.5'."""
    try:
        seconds = 0.0
        for part in text.split(":"):
            seconds = seconds * 60 + float(part)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text!r} (use seconds or [h:]m:s)") from None
    if seconds < 0:
        raise argparse.ArgumentTypeError("times cannot be negative")
    return seconds


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="anonymize a video file, image, folder of images, RTSP stream or webcam",
        description="Anonymize every face in INPUT and write the result (video with its audio, images, or an RTSP stream).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="video file, image, folder of images, rtsp://... URL, or webcam:N")
    p.add_argument("-o", "--output", help="output file, folder or rtsp:// URL (default: INPUT.anonymized.mp4 beside the input)")
    p.add_argument("-m", "--method", choices=_methods(), help="how faces are replaced (default: camouflage, the diffusion method; solid/pixelate/blur need no models)")
    p.add_argument("--fallback", choices=["solid", "pixelate", "blur"], help="cover used when the method fails (default: solid)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help=f"YAML config or preset name (repeatable; presets: {_presets()})")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value")
    p.add_argument("--report", metavar="PATH", help="write a JSON report (frames, tracks, misses bridged, fps per stage)")
    p.add_argument("--scope", choices=["face", "person", "scene"], help="what the method replaces (default face)")
    p.add_argument("--models-dir", metavar="DIR", help="folder with the diffusion models (see 'camstream models')")
    p.add_argument("--device", help="torch device for diffusion methods: auto, cpu, cuda, cuda:N")
    g = p.add_argument_group("detection")
    g.add_argument("-t", "--threshold", type=float, help="face detection threshold, 0-1 (default 0.2; lower covers more)")
    g.add_argument("--detector", choices=["libfacedetection", "centerface"], help="face detector (default libfacedetection)")
    g.add_argument("--detect-every", type=int, metavar="K", help="run the detector on every K-th frame, 1-30 (default 4)")
    g.add_argument("--margin", type=float, help="enlarge each covered region by this fraction per side, 0-2 (default 0.3)")
    g.add_argument("--shape", choices=["ellipse", "box"], help="covered shape (default ellipse)")
    g.add_argument("--hold", type=int, metavar="FRAMES", help="keep a lost face covered this many frames, 0-300 (default 12)")
    g.add_argument("--persons", action="store_true", help="also detect persons with YOLO (needs camstream[yolo] and weights)")
    g.add_argument("--person-weights", metavar="PT", help="local YOLO weights file for --persons")
    g.add_argument("--persons-optional", action="store_true", help="with --persons: go on with faces only if YOLO cannot load (default: exit 5)")
    g.add_argument("--allow-sparse-detection", action="store_true", help="allow --detect-every above 30 (faces can stay visible between detections)")
    o = p.add_argument_group("output")
    o.add_argument("--no-audio", dest="keep_audio", action="store_false", default=None, help="drop the audio track")
    o.add_argument("--keep-metadata", action="store_true", default=None, help="keep container metadata (GPS, dates, device); stripped by default")
    o.add_argument("--crf", type=int, help="x264 quality, lower is better (default 20)")
    o.add_argument("--start", type=_time, help="start time in the input (seconds or [h:]m:s)")
    o.add_argument("--end", type=_time, help="end time in the input (seconds or [h:]m:s)")
    o.add_argument("--preview", action="store_true", help="show original | anonymized side by side in a window (never written)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or stats")
    p.set_defaults(func=cmd_run)


def _presets() -> str:
    from .config import CONFIG_DIR

    skip = {"default", "models"}
    return ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem not in skip)) or "none"


def _methods() -> list[str]:
    import importlib.util

    methods = ["solid", "pixelate", "blur"]
    if importlib.util.find_spec("camouflage.methods") is not None:
        from camouflage.methods import METHODS

        methods += list(METHODS)
    return methods


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="camstream",
        description="Anonymize people in video files and live camera streams.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks and debug logs")
    parser.add_argument("--version", action="version", version=f"camstream {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_run_parser(sub)
    for module in _optional_commands():
        module.register(sub)
    return parser


def _optional_commands() -> list:
    import importlib

    modules = []
    for name in ("streamer.evaluation.cli", "camouflage.cli"):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name and not name.startswith(exc.name):
                raise
    return modules


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("camstream")
    except PackageNotFoundError:
        return "0+unknown"


def default_output(input_uri: str, kind: str) -> str:
    if kind in ("stream", "webcam"):
        stamp = time.strftime("%Y%m%d-%H%M%S")
        name = "webcam" if kind == "webcam" else (input_uri.split("://", 1)[1].split("/")[0].split("@")[-1].replace(":", "_") or "stream")
        return f"{name}-{stamp}.anonymized.mkv"
    path = Path(input_uri)
    if kind == "images":
        return str(path.with_name(path.name + ".anonymized"))
    if kind == "image":
        return str(path.with_name(f"{path.stem}.anonymized{path.suffix}"))
    return str(path.with_name(f"{path.stem}.anonymized.mp4"))


def cmd_run(args: argparse.Namespace) -> int:
    from .config import load_config
    from .runner import run

    config = load_config(args.config, args.set)
    det, trk, ano, out = config.detection, config.tracking, config.anonymize, config.output
    for value, obj, attr in [
        (args.method, ano, "method"),
        (args.fallback, ano, "fallback"),
        (args.threshold, det, "threshold"),
        (args.detector, det, "detector"),
        (args.detect_every, det, "every"),
        (args.margin, ano, "margin"),
        (args.shape, ano, "shape"),
        (args.hold, trk, "hold_frames"),
        (args.person_weights, det, "person_weights"),
        (args.keep_audio, out, "keep_audio"),
        (args.keep_metadata, out, "keep_metadata"),
        (args.crf, out, "crf"),
        (args.scope, ano, "scope"),
        (args.models_dir, config.models, "dir"),
        (args.device, config.models, "device"),
    ]:
        if value is not None:
            setattr(obj, attr, value)
    if args.persons:
        det.persons = True
    det.persons_optional = det.persons_optional or args.persons_optional
    det.allow_sparse = det.allow_sparse or args.allow_sparse_detection
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ConfigError("--end must be after --start")
    report = run(
        args.input,
        args.output,
        config,
        start=args.start,
        end=args.end,
        report_path=args.report,
        progress=not args.quiet,
        preview=args.preview,
    )
    return 0 if report.status in ("ok", "partial") else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO,
        format="camstream: %(message)s",
        stream=sys.stderr,
    )
    for noisy in ("PIL", "matplotlib", "urllib3", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1") if args.command != "models" else None
    try:
        return int(args.func(args) or 0)
    except CamstreamError as exc:
        if args.debug:
            log.exception("error")
        print(f"camstream: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("camstream: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback, unless --debug
        if args.debug:
            log.exception("internal error")
        print(f"camstream: internal error: {type(exc).__name__}: {exc} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
