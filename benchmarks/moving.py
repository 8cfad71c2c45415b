"""Large frames and moving cameras with exact truth: camstream against deface, same frames.

    python benchmarks/moving.py [--scale 0.5] [--only pan-4k handheld] [--runs default paranoid deface]

The clips (tests/moving_clips.py) are worlds tiled from the shared photos with the shared
faces pasted at known sizes, filmed by a virtual camera: a 4K pan and zoom, a 960x540
handheld shake (+-30 deg roll, motion blur), a static 4K row of faces, a 24 MP still and
an 8K frame. Every face's box is known on every frame, so a face is "exposed" when less
than 90 % of its eyes-nose-mouth box was replaced ("bare": under 50 %), without a
reference detector. "truth cover %" is what covering exactly the true faces takes (the
default shape and margin): the floor a perfect detector and tracker would pay. The worlds'
backgrounds hold people of their own (messi5.jpg's blurred crowd, vtest.avi's walkers)
that the truth does not list: covering them counts as cover, not as a found face.

Runs are in-process, one frame list each: camstream's pipeline as ``camstream run``
builds it (solid cover; ``paranoid`` = ``-c paranoid``) and deface's own detector and
cover (CenterFace at native size on every frame, threshold 0.2, mask scale 1.3).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests"), str(REPO / "benchmarks")]

from moving_clips import CLIPS  # noqa: E402
from test_coverage import ListSink, ListSource  # noqa: E402

from streamer.anonymizers import Shape, SolidAnonymizer  # noqa: E402
from streamer.config import load_config  # noqa: E402
from streamer.evaluation.reference import covered_area, covered_fraction  # noqa: E402
from streamer.pipeline import Pipeline  # noqa: E402
from streamer.report import RunReport  # noqa: E402
from streamer.runner import build_tracker  # noqa: E402
from tracking.detectors import build_detector  # noqa: E402
from tracking.tracker import Region  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def run_camstream(images: list[np.ndarray], preset: str | None) -> list[np.ndarray]:
    config = load_config([preset] if preset else [])
    det, trk, ano = config.detection, config.tracking, config.anonymize
    shape = Shape(kind=ano.shape, margin=ano.margin)
    sink = ListSink()
    Pipeline(
        source=ListSource(images),
        sink=sink,
        detector=build_detector(det.detector, det.threshold, det.max_side, rotated=det.rotated),
        tracker=build_tracker(config, 25),
        anonymizer=SolidAnonymizer(shape),
        fallback=SolidAnonymizer(shape),
        detect_every=det.every if len(images) > 1 else 1,
        scene_cut=det.scene_cut,
        hold_growth=trk.hold_growth,
        report=RunReport(input="memory"),
        full_every=det.full_every,
    ).run()
    return sink.frames


def run_deface(images: list[np.ndarray]) -> list[np.ndarray]:
    from deface.centerface import CenterFace
    from deface.deface import anonymize_frame

    h, w = images[0].shape[:2]
    with contextlib.redirect_stdout(io.StringIO()):
        centerface = CenterFace(in_shape=(w, h), backend="opencv")
    out = []
    for image in images:
        frame = image.copy()
        dets, _ = centerface(frame, threshold=0.2)
        anonymize_frame(dets, frame, mask_scale=1.3, replacewith="solid", ellipse=True, draw_scores=False,
                        replaceimg=None, mosaicsize=20)
        out.append(frame)
    return out


def run_truth(clip) -> list[np.ndarray]:  # noqa: ANN001
    """Exactly the true faces covered: the floor of the share covered."""
    ano = load_config([]).anonymize
    solid = SolidAnonymizer(Shape(kind=ano.shape, margin=ano.margin))
    return [solid.anonymize(f.copy(), [Region(box=np.asarray(t.box, np.float32)) for t in truth]) if truth else f
            for f, truth in zip(clip.frames, clip.truth, strict=True)]


def measure(clip, outs: list[np.ndarray]) -> dict:  # noqa: ANN001
    exposed = bare = exposed16 = faces = 0
    shares = []
    for original, out, truth in zip(clip.frames, outs, clip.truth, strict=True):
        for t in truth:
            covered = covered_fraction(original, out, t.inner)
            faces += 1
            exposed += covered < 0.9
            bare += covered < 0.5
            exposed16 += covered < 0.9 and max(t.box[2] - t.box[0], t.box[3] - t.box[1]) >= 16
        shares.append(covered_area(original, out))
    return {"faces": faces, "exposed": exposed, "bare": bare, "exposed16": exposed16,
            "mean": 100 * float(np.mean(shares)), "max": 100 * float(np.max(shares))}


def report(scale: float, only: list[str] | None, runs: list[str]) -> None:
    """The table: every clip (``only``: these), every run, same frames."""
    print("| clip | size x frames | run | faces | exposed | bare | exposed >= 16 px | frame covered % (mean / max) | truth cover % | s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in only or list(CLIPS):
        clip = CLIPS[name](DATA, scale)
        h, w = clip.frames[0].shape[:2]
        floor = measure(clip, run_truth(clip))["mean"]
        for run in runs:
            started = time.perf_counter()
            outs = run_deface(clip.frames) if run == "deface" else run_camstream(clip.frames, None if run == "default" else run)
            seconds = time.perf_counter() - started
            m = measure(clip, outs)
            print(f"| {name} | {w}x{h} x {len(clip.frames)} | {run} | {m['faces']} | {m['exposed']} | {m['bare']} | "
                  f"{m['exposed16']} | {m['mean']:.1f} / {m['max']:.1f} | {floor:.1f} | {seconds:.0f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--scale", type=float, default=1.0, help="shrink every clip (frame and faces) by this")
    ap.add_argument("--only", nargs="*", choices=list(CLIPS), help="these clips only")
    ap.add_argument("--runs", nargs="*", default=["default", "paranoid", "deface"], choices=["default", "paranoid", "deface"])
    a = ap.parse_args()
    report(a.scale, a.only, a.runs)


if __name__ == "__main__":
    main()
