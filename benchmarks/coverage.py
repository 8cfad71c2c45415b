"""Does any face stay visible? camstream (default, paranoid) against deface, same clips, same run.

    python benchmarks/coverage.py [CLIPS...] [--step 2] [--cache DIR] [--hard]

For each clip: a reference set of faces per frame (several detectors run harder than
the pipeline runs its own: streamer/evaluation/reference.py), then, for every run
below, each reference face's inner box (eyes-nose-mouth) is checked in the output:
"exposed" if less than 90 % of it was replaced, "bare" if less than 50 %. Every run
uses a solid cover, so a replaced pixel is unambiguous:
  * camstream run CLIP --method solid            (default settings: detect every 4th frame)
  * camstream run CLIP --method solid -c paranoid (detect on every frame)
  * deface CLIP --replacewith solid               (the peer: CenterFace on every frame)
"frame covered %" is the mean share of the frame's pixels a run replaced: the price of
the cover (false cover included). The reference is cached (``--cache``), keyed by clip,
step and frame limit; the camstream runs use the checkout given by ``--repo``.
"""

from __future__ import annotations

import argparse
import pickle
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from streamer.evaluation.reference import CoverageCount, ReferenceFinder, covered_area, covered_fraction  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def frames(path: Path, step: int, limit: int | None):  # noqa: ANN201
    with av.open(str(path)) as c:
        for i, f in enumerate(c.decode(video=0)):
            if limit is not None and i >= limit:
                return
            if i % step == 0:
                yield i, f.to_ndarray(format="rgb24")


def reference(clip: Path, step: int, limit: int | None, cache: Path) -> dict[int, list]:
    key = cache / f"{clip.stem}-{clip.stat().st_size}-s{step}-n{limit}.pkl"
    if key.exists():
        return pickle.loads(key.read_bytes())
    finder = ReferenceFinder()
    ref = {i: finder(image) for i, image in frames(clip, step, limit)}
    cache.mkdir(parents=True, exist_ok=True)
    key.write_bytes(pickle.dumps(ref))
    return ref


# Reference detections looked at by eye and found not to be faces: (clip name, size in
# bytes) -> (frame, box xyxy, what it is). Left out of the counts, and said so under the row.
NOT_FACES: dict[tuple[str, int], list[tuple[int, tuple[int, int, int, int], str]]] = {
    ("Megamind.avi", 1189270): [
        (138, (190, 6, 264, 112), "a tuft of hair at the top edge"),
        (198, (110, 400, 228, 498), "a hand holding a glass"),
    ],
}


def _iou(a: np.ndarray, b: tuple[int, int, int, int]) -> float:
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
    return float(w * h / union) if union > 0 else 0.0


def without_not_faces(clip: Path, ref: dict[int, list]) -> tuple[dict[int, list], list[str]]:
    """``ref`` less the detections reviewed as not faces (NOT_FACES), and what was left out."""
    reviewed = NOT_FACES.get((clip.name, clip.stat().st_size), [])
    left: list[str] = []
    kept = {}
    for i, faces in ref.items():
        kept[i] = []
        for face in faces:
            hit = next((what for frame, box, what in reviewed if frame == i and _iou(face.box, box) >= 0.5), None)
            if hit is None:
                kept[i].append(face)
            else:
                left.append(f"frame {i}: {hit}")
    return kept, left


def runs(clip: Path, out: Path, limit: int | None, extra: list[str] | None = None) -> dict[str, list[str]]:  # noqa: ARG001
    py = [sys.executable, "-m", "streamer", "run", str(clip), "-q", "--method", "solid", "--no-audio", *(extra or [])]
    todo = {
        "camstream default": [*py, "-o", str(out / "default.mp4")],
        "camstream paranoid": [*py, "-c", "paranoid", "-o", str(out / "paranoid.mp4")],
    }
    deface = shutil.which("deface") or str(Path(sys.executable).parent / "deface")
    if Path(deface).exists():
        todo["deface"] = [deface, str(clip), "-o", str(out / "deface.mp4"), "--replacewith", "solid"]
    return todo


def measure(clip: Path, output: Path, ref: dict[int, list], step: int, limit: int | None) -> tuple[CoverageCount, float]:
    """The reference faces' coverage, and the mean share of the frame covered (the price)."""
    count = CoverageCount()
    area: list[float] = []
    with av.open(str(output)) as c:
        produced = c.decode(video=0)
        for (i, original), out in zip(frames(clip, 1, limit), produced, strict=False):
            if i not in ref:
                continue
            image = out.to_ndarray(format="rgb24")
            for face in ref[i]:
                count.add(i, face, covered_fraction(original, image, face.inner))
            area.append(covered_area(original, image))
    return count, 100 * float(np.mean(area)) if area else 0.0


def write_hard_clips(folder: Path) -> list[Path]:
    """The hard clips of the tests (tests/hard_clips.py), written losslessly (FFV1, 10 fps)."""
    sys.path.insert(0, str(REPO / "tests"))
    from hard_clips import clips

    paths = []
    for name, clip in clips(DATA).items():
        path = folder / f"hard-{name}.mkv"
        with av.open(str(path), "w") as out:
            stream = out.add_stream("ffv1", rate=10)
            stream.width, stream.height, stream.pix_fmt = clip.frames[0].shape[1], clip.frames[0].shape[0], "bgr0"
            for image in clip.frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="bgr0")))
            out.mux(stream.encode(None))
        paths.append(path)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", default=[str(DATA / "vtest.avi"), str(DATA / "Megamind.avi")])
    parser.add_argument("--step", type=int, default=2, help="measure every N-th frame (the runs see every frame)")
    parser.add_argument("--frames", type=int, help="measure only the first N frames")
    parser.add_argument("--cache", type=Path, default=Path(tempfile.gettempdir()) / "camstream-coverage")
    parser.add_argument("--only", action="append", help="run only these (default, paranoid, deface)")
    parser.add_argument("--worst", action="store_true", help="list the exposed faces")
    parser.add_argument("--repo", type=Path, default=REPO, help="the camstream checkout to run (e.g. another branch's worktree)")
    parser.add_argument("--hard", action="store_true", help="also the hard clips of the tests (crossing, cut, rotation, ...)")
    parser.add_argument("--camstream-args", default="", help="more options for the camstream runs, e.g. '--detect-every 8'")
    parser.add_argument("--moving", action="store_true", help="the large-frame and moving-camera clips with exact truth "
                        "instead (benchmarks/moving.py: pan, zoom, handheld, static 4K, 24 MP, 8K)")
    parser.add_argument("--scale", type=float, default=1.0, help="--moving: shrink every clip by this")
    args = parser.parse_args()
    if args.moving:  # truth is known there: no reference detectors, runs in-process
        import moving

        only = [o for o in (args.only or []) if o in ("default", "paranoid", "deface")] or ["default", "paranoid", "deface"]
        moving.report(args.scale, None, only)
        return
    clips = list(map(Path, args.clips))
    if args.hard:
        folder = args.cache / "hard"
        folder.mkdir(parents=True, exist_ok=True)
        clips += write_hard_clips(folder)
    print("| clip | run | reference faces | exposed (<90 %) | bare (<50 %) | exposed, faces >= 24 px | frame covered % | wall s |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for clip in clips:
        ref, left_out = without_not_faces(clip, reference(clip, args.step, args.frames, args.cache))
        with tempfile.TemporaryDirectory() as tmp:
            for name, cmd in runs(clip, Path(tmp), args.frames, shlex.split(args.camstream_args)).items():
                if args.only and not any(o in name for o in args.only):
                    continue
                start = time.perf_counter()
                subprocess.run(cmd, check=True, cwd=args.repo, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                wall = time.perf_counter() - start
                c, area = measure(clip, Path(cmd[cmd.index("-o") + 1]), ref, args.step, args.frames)
                print(f"| {clip.name} | {name} | {c.faces} | {c.exposed} | {c.bare} | {c.exposed_24} of {c.faces_24} | {area:.2f} | {wall:.0f} |",
                      flush=True)
                if args.worst and c.worst:
                    print("   exposed:", c.worst[:30], flush=True)
        if left_out:
            print(f"   {clip.name}: left out of the reference, reviewed by eye as not faces: {'; '.join(left_out)}", flush=True)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
