"""``camstream``: anonymize people in videos, images and live camera streams.

Exit codes: 0 ok, 1 internal error, 2 bad usage/config, 3 bad input, 4 output not
writable, 5 models missing, 6 stream unreachable/lost, 130 Ctrl-C, 143 SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

from .errors import CamstreamError, ConfigError, ModelError
from .extras import missing_extra
from .redact import install_log_redaction, redact

log = logging.getLogger("camstream")

EPILOG = """examples:
  camstream run footage.mp4                      -> footage.anonymized.mp4 beside it
                                                    (camouflage: needs 'camstream models fetch camouflage')
  camstream run footage.mp4 --method pixelate --report report.json
  camstream run a.mp4 b.mp4 photos/ -o out/ --method blur   many inputs: one output each in out/
  camstream run footage.mp4 --method pixelate --draw-detections -o tune.mp4   boxes, ids, scores drawn
  camstream run footage.mp4 --config realtime    Base keyframes + LCM/TAESD Light in between
  camstream run footage.mp4 --config quality     every frame rendered, keyframes every 24 frames
  camstream run rtsp://cam.local/stream -o rtsp://relay.local/anon
  camstream run webcam:0 -o live.mkv
  camstream run photos/ -o photos.anonymized/

exit codes: 0 ok, 1 internal error, 2 bad usage/config, 3 bad input,
  4 output not writable, 5 models missing, 6 stream unreachable/lost,
  130 interrupted (Ctrl-C), 143 terminated. An interrupted or failed video run
  leaves NAME.partial.mp4: playable, every processed frame, never a raw face."""


MAX_TIME = 10**7  # seconds (115 days): beyond, a time is a typo (1e308 overflowed a timestamp)


def _time(text: str) -> float:
    """Seconds from '90', '1:30' or '0:01:30.5': every part a finite number >= 0, the
    minutes and seconds after a colon under 60 ('nan', 'inf', '1:-30', '1:75' are refused)."""
    parts = text.split(":")
    try:
        values = [float(part) for part in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a time: {text[:40]!r} (use seconds or [h:]m:s)") from None
    if len(parts) > 3 or not all(math.isfinite(v) and v >= 0 for v in values) \
            or any(v >= 60 for v in values[1:]):
        raise argparse.ArgumentTypeError(f"not a time: {text[:40]!r} (seconds, or [h:]m:s with each part >= 0 and m, s < 60)")
    seconds = 0.0
    for value in values:
        seconds = seconds * 60 + value
    if seconds > MAX_TIME:
        raise argparse.ArgumentTypeError(f"not a time: {text[:40]!r} (more than {MAX_TIME} s)")
    return seconds


def add_run_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="anonymize a video file, image, folder of images, RTSP stream or webcam",
        description="Anonymize every face in INPUT and write the result (video with its audio, images, or an RTSP stream).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", nargs="+", metavar="INPUT",
                   help="what to anonymize: a video file, an image, a folder of images, an rtsp://... URL or webcam:N "
                   "(/dev/videoN); several INPUTs run one after the other (or side by side on a Ray cluster with --ray)")
    p.add_argument("-o", "--output", help="output file, folder or rtsp:// URL (default: INPUT.anonymized.mp4 beside the input); "
                   "with several INPUTs a folder, one output per input in it")
    p.add_argument("--overwrite", action="store_true", help="replace outputs that already exist (refused by default; never the input)")
    p.add_argument("-m", "--method", choices=_methods(), help="how faces are replaced (default: camouflage, the diffusion method: "
                   "needs camstream[diffusion] and its models; solid/pixelate/blur/image need neither)")
    p.add_argument("--fallback", choices=["solid", "pixelate", "blur"], help="cover used when the method fails (default: solid)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help=f"YAML config or preset name (repeatable; presets: {_presets()})")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config value")
    p.add_argument("--report", metavar="PATH", help="write a JSON report (frames, tracks, misses bridged, fps per stage); "
                   "with several INPUTs a folder: one OUTPUT-NAME.report.json per input")
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
    g.add_argument("--detect", metavar="CLASSES", help="what to detect and cover, comma-separated: faces (always), plates "
                   "(always a classical cover, even under the diffusion methods; needs camstream[plates] and "
                   "`camstream models fetch plates`), persons (RT-DETR, needs camstream[diffusion]; feeds --scope person). Default faces")
    g.add_argument("--persons", action="store_true", help="also detect persons with YOLO (needs camstream[yolo] and weights)")
    g.add_argument("--person-weights", metavar="PT", help="local YOLO weights file for --persons")
    g.add_argument("--persons-optional", action="store_true", help="with --persons: go on with faces only if YOLO cannot load (default: exit 5)")
    g.add_argument("--allow-sparse-detection", action="store_true", help="allow --detect-every above 30 (faces can stay visible between detections)")
    # regions from a file (tracking/regions.py)
    g.add_argument("--regions", metavar="FILE", help="also cover the boxes of FILE, a MOTChallenge detection CSV "
                   "(frame,id,x,y,w,h,conf[,x,y,z][,10 landmark values]; frames from 1; an image is frame 1), "
                   "on every frame it names, tracked like detections")
    g.add_argument("--regions-only", action="store_true", help="with --regions: the file's boxes alone, no face or person detector")
    o = p.add_argument_group("output")
    o.add_argument("--no-audio", dest="keep_audio", action="store_false", default=None, help="drop the audio track")
    o.add_argument("--keep-metadata", action="store_true", default=None, help="keep container metadata (GPS, dates, device); stripped by default")
    o.add_argument("--audio-streams", choices=["all", "first", "none"], help="source streams carried over: all audio and subtitle streams the container holds (default), the first audio stream, or none")
    o.add_argument("--keep-rotation", action="store_true", default=None, help="store the frames as the source does, with its display matrix (default: turn them upright)")
    o.add_argument("--crf", type=int, help="x264 quality, lower is better (default 20)")
    o.add_argument("--start", type=_time, help="start time in the input (seconds or [h:]m:s)")
    o.add_argument("--end", type=_time, help="end time in the input (seconds or [h:]m:s)")
    o.add_argument("--preview", action="store_true", help="show original | anonymized side by side in a window (never written)")
    o.add_argument("--preview-file", metavar="PATH", help="write a side-by-side preview for machines without a display: the output "
                   "with the detections drawn | the output as written. It never holds an original pixel (one INPUT only)")
    o.add_argument("--replace-with", metavar="IMAGE", help="paste IMAGE over every face (the method 'image'; transparency is dropped)")
    o.add_argument("--mosaic-size", type=int, metavar="N", help="pixelate with N cells across each face (default 6; fewer is "
                   "stronger; cells are never under 10 px); implies --method pixelate unless --method is given")
    o.add_argument("--draw-detections", action="store_true", help="draw each covered region's box, track id and score onto the "
                   "anonymized output, to tune --threshold and --margin (drawn after the cover: never over a raw face)")
    o.add_argument("-q", "--quiet", action="store_true", help="no progress bar or stats")
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="print tracebacks and debug logs")
    from .scale.cli import add_batch_options

    add_batch_options(p)
    p.set_defaults(func=cmd_run, usage_error=p.error)


def _presets() -> str:
    from .presets import preset_names

    return ", ".join(preset_names()) or "none"


def _methods() -> list[str]:
    import importlib.util

    methods = ["solid", "pixelate", "blur", "image"]
    if importlib.util.find_spec("camouflage.methods") is not None:
        from camouflage.methods import METHODS

        methods += list(METHODS)
    return methods


class _Parser(argparse.ArgumentParser):
    """A usage error quotes what was typed (``invalid choice: 'rtsp://admin:pw@cam/x'`` when a
    camera URL lands in the wrong place): redacted like every other line. Subcommands' parsers
    are made of the same class (argparse's default ``parser_class``)."""

    def error(self, message: str) -> NoReturn:
        super().error(redact(message))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="camstream",
        description="Anonymize people in video files and live camera streams.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--debug", action="store_true", help="print tracebacks and debug logs")
    parser.add_argument("--version", action=_Version, nargs=0, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_run_parser(sub)
    for module in _optional_commands():
        module.register(sub)
    return parser


def _optional_commands() -> list:
    import importlib

    modules = []
    for name in ("streamer.evaluation.cli", "camouflage.cli", "streamer.scale.cli"):
        try:
            modules.append(importlib.import_module(name))
        except ModuleNotFoundError as exc:
            if exc.name and not name.startswith(exc.name):
                raise
    return modules


class _Version(argparse.Action):
    """--version, reading the installed metadata only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:  # noqa: ANN001
        parser.exit(message=f"camstream {_version()}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("camstream")
    except PackageNotFoundError:
        return "0+unknown"


def run_config(args: argparse.Namespace):  # noqa: ANN201 - a streamer.config.Config
    """The config the flags ask for: files and presets, --set, then the flags."""
    from .config import load_config

    config = load_config(args.config, args.set)
    det, trk, ano, out = config.detection, config.tracking, config.anonymize, config.output
    if args.replace_with and args.method not in (None, "image"):
        raise ConfigError(f"--replace-with is the method 'image', not {args.method!r}")
    if args.mosaic_size is not None and args.mosaic_size < 1:
        raise ConfigError("--mosaic-size must be at least 1")
    method = args.method or ("image" if args.replace_with else "pixelate" if args.mosaic_size is not None else None)
    for value, obj, attr in [
        (method, ano, "method"),
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
        (args.audio_streams, out, "audio_streams"),
        (args.keep_rotation, out, "keep_rotation"),
        (args.crf, out, "crf"),
        (args.scope, ano, "scope"),
        (args.models_dir, config.models, "dir"),
        (args.device, config.models, "device"),
        (args.replace_with, ano, "replace_with"),
        (args.mosaic_size, ano, "pixelate_blocks"),
    ]:
        if value is not None:
            setattr(obj, attr, value)
    if args.persons:
        det.persons = True
    if getattr(args, "detect", None):
        from tracking.classes import parse_classes

        det.classes = parse_classes(args.detect)
    det.persons_optional = det.persons_optional or getattr(args, "persons_optional", False)
    det.allow_sparse = det.allow_sparse or getattr(args, "allow_sparse_detection", False)
    if config.anonymize.method == "image" and not config.anonymize.replace_with:
        raise ConfigError("--method image needs --replace-with IMAGE")
    return config


def cmd_run(args: argparse.Namespace) -> int:
    from .batch import run_jobs
    from .paths import check_distinct, check_target, plan

    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ConfigError("--end must be after --start")
    check_regions_args(args)
    if args.ray is not None:  # every input one unit of work on Ray (streamer/scale): its own output checks and skip rule
        from .scale.batch import run_batch_cli

        return run_batch_cli(args, run_config(args))
    if args.skip_existing:
        raise ConfigError("--skip-existing goes with --ray (a batch on a cluster, whose reports say what made each output)")
    if args.preview_file and len(args.input) > 1:
        raise ConfigError("--preview-file takes one INPUT")
    jobs = plan(args.input, args.output, args.report)
    if args.preview_file:  # the same rule as the output: never an input, never an existing file without --overwrite
        check_target(args.preview_file, "preview", args.input, args.overwrite)
        check_distinct([("the output", jobs[0].output), ("the report", jobs[0].report), ("the preview", args.preview_file)])
    config = run_config(args)

    def run_one(job):  # noqa: ANN001, ANN202 - paths.Job -> report.RunReport
        from .runner import run  # the pipeline's imports, once the inputs and outputs are known to be good

        return run(
            job.input,
            job.output,
            config,
            start=args.start,
            end=args.end,
            report_path=job.report,
            progress=not args.quiet,
            preview=args.preview,
            preview_file=args.preview_file,
            draw_detections=args.draw_detections,
            overwrite=args.overwrite,
            inputs=args.input,
            regions=args.regions,
            regions_only=args.regions_only,
        )

    return run_jobs(jobs, run_one, overwrite=args.overwrite, inputs=args.input)


def check_regions_args(args: argparse.Namespace) -> None:
    """--regions numbers the frames of one input from its first (tracking/regions.py)."""
    if args.regions_only and not args.regions:
        raise ConfigError("--regions-only needs --regions FILE")
    if not args.regions:
        return
    if len(args.input) > 1 or args.ray is not None:
        raise ConfigError("--regions FILE describes one INPUT: give one, without --ray")
    if args.start is not None:
        raise ConfigError("--regions counts frames from the input's first: not with --start")


def main(argv: Sequence[str] | None = None) -> int:
    install_log_redaction()  # before the first log line: no camera password in any of them
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:
        # argparse reports a subcommand's unknown flags with the top-level usage; show the command's own
        error = getattr(args, "usage_error", parser.error)
        error(f"unrecognized arguments: {' '.join(unknown)}")
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
        print(f"camstream: error: {redact(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("camstream: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as exc:
        missing = missing_extra(exc)
        if missing is None:
            raise
        if args.debug:
            log.exception("error")
        print(f"camstream: error: {redact(missing)}", file=sys.stderr)
        return ModelError.exit_code
    except Exception as exc:  # noqa: BLE001 - one line, never a traceback, unless --debug
        if args.debug:
            log.exception("internal error")
        print(f"camstream: internal error: {type(exc).__name__}: {redact(str(exc))} (rerun with --debug for details)", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
