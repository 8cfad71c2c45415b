"""Temporal consistency of ``--method camouflage`` against per-frame Base on one clip:
flicker (warping error), identity drift and UNet evaluations per face and frame, from the
run reports of three ``camstream run`` calls on the same clip and model set.

    python benchmarks/bench_flicker.py                              # Megamind.avi, tiny random set (made here)
    python benchmarks/bench_flicker.py --clip CLIP --models-dir DIR   # e.g. real weights on a GPU
    python benchmarks/bench_flicker.py --end 2 --no-identity          # a quick look: 2 s, no dlib drift

Rows: ``camouflage`` (the default: Base keyframes, Light in between from the identity's
seeded noise); ``per-frame Base, seeded`` (``camouflage.keyframe_every=1``: Base on every
frame from the identity's noise); ``per-frame Base, fresh noise`` (also
``camouflage.fresh_noise=true``: what running the image method frame by frame gives).
With the tiny random set the faces are noise-like, so the figures compare how stable the
methods are, not how good the faces look.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
VARIANTS = {
    "camouflage": [],
    "per-frame Base, seeded": ["camouflage.keyframe_every=1"],
    "per-frame Base, fresh noise": ["camouflage.keyframe_every=1", "camouflage.fresh_noise=true"],
}


def run(clip: Path, models: Path, out: Path, sets: list[str], args: argparse.Namespace) -> dict:
    cmd = [sys.executable, "-m", "streamer.cli", "run", str(clip), "--method", "camouflage", "--models-dir", str(models),
           "-o", str(out / "out.mp4"), "--report", str(out / "report.json"), "-q",
           "--set", f"camouflage.measure_identity={str(args.identity).lower()}"]
    if args.end is not None:
        cmd += ["--end", str(args.end)]
    for s in sets + args.set:
        cmd += ["--set", s]
    subprocess.run(cmd, check=True)
    return json.loads((out / "report.json").read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", default=str(DATA / "Megamind.avi"))
    p.add_argument("--models-dir", help="model set (default: a tiny random set made in a temp folder, 64 px crops, 4 steps)")
    p.add_argument("--end", type=float, help="stop after this many seconds of the clip")
    p.add_argument("--no-identity", dest="identity", action="store_false", help="skip identity drift (dlib, ~0.6 s/frame)")
    p.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE", help="passed to every run")
    args = p.parse_args()

    with tempfile.TemporaryDirectory(prefix="camstream-flicker-") as tmp:
        models = args.models_dir
        if models is None:
            from camouflage.models.tiny import make_tiny

            models = make_tiny(Path(tmp) / "tiny", resolution=64)
            args.set = ["base.resolution=64", "light.resolution=64", "base.steps=4", "light.steps=4", *args.set]
        rows = []
        for name, sets in VARIANTS.items():
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            out.mkdir()
            print(f"{name} ...", file=sys.stderr, flush=True)
            rows.append((name, run(Path(args.clip), Path(models), out, sets, args)))

    print(f"\n{Path(args.clip).name}{f' (first {args.end:g} s)' if args.end else ''}, "
          f"models: {'tiny random set' if args.models_dir is None else args.models_dir}")
    print("| method | frames | fps | identities | keyframes | Light regions | fallback | UNet evals/face/frame "
          "| flicker (warping error) | identity drift | real person's drift |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for name, r in rows:
        a = r["anonymizer"]

        def f(v: object, fmt: str = "{:.4f}") -> str:
            return "-" if v is None else fmt.format(v)

        print(f"| {name} | {r['frames_out']} | {r['fps']:.2f} | {a['identities']} | {a['keyframes']} | "
              f"{a['light_regions']} | {a['fallback_failed_regions'] + a['fallback_late_regions']} | "
              f"{f(a['unet_evals_per_face_frame'], '{:.2f}')} | {f(a['flicker_warping_error'])} | "
              f"{f(a['identity_drift'])} | {f(a['identity_drift_original'])} |")
    print("\nfps: the run report's (decode to encode, measures included; model load excluded).")


if __name__ == "__main__":
    main()
