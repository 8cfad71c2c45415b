"""Throughput of the video pipeline against a plain transcode and deface, same clips.

    python benchmarks/bench_pipeline.py [CLIPS...] [--method pixelate] [--repeat 1] [--stat best|median]

CLIPS are files, or ``pan-4k``: a 3840x2160 pan over messi5.jpg with the shared faces
pasted (tests/moving_clips.py, 40 frames), made once and kept in the temp folder. The
default is vtest.avi, Megamind.avi and pan-4k.

For each clip it runs, as separate processes, one after the other:
  * transcode: decode -> RGB -> x264 veryfast (what any anonymizer must at least do),
  * camstream run CLIP --method METHOD (detection + tracking + cover + encode + audio),
  * deface CLIP (the peer: CenterFace per frame), when the ``deface`` command exists,
and prints fps, the ratio to the transcode, the speed-up over deface and peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"

TRANSCODE = r"""
import av, sys
src, dst = sys.argv[1], sys.argv[2]
with av.open(src) as i, av.open(dst, 'w') as o:
    s = i.streams.video[0]; s.thread_type = 'AUTO'
    out = o.add_stream('libx264', rate=s.average_rate)
    out.width, out.height, out.pix_fmt = s.codec_context.width, s.codec_context.height, 'yuv420p'
    out.options = {'preset': 'veryfast', 'crf': '20'}
    for f in i.decode(s):
        for p in out.encode(av.VideoFrame.from_ndarray(f.to_ndarray(format='rgb24'), format='rgb24')):
            o.mux(p)
    for p in out.encode(None):
        o.mux(p)
"""


def made_clip(name: str) -> Path:
    """A clip the benchmark makes (``pan-4k``), encoded once into the temp folder."""
    import av

    path = Path(tempfile.gettempdir()) / "camstream-bench" / f"{name}.mp4"
    if path.exists():
        return path
    sys.path[:0] = [str(REPO), str(REPO / "tests")]
    from moving_clips import CLIPS

    clip = CLIPS[name](DATA, 1.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_suffix(".part.mp4")
    with av.open(str(part), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.height, stream.width = clip.frames[0].shape[:2]
        stream.pix_fmt, stream.options = "yuv420p", {"crf": "18", "preset": "veryfast"}
        for image in clip.frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode(None))
    part.rename(path)
    return path


def frame_count(path: Path) -> int:
    import av

    with av.open(str(path)) as c:
        return sum(1 for _ in c.decode(video=0))


def timed(cmd: list[str], cwd: Path = REPO) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of a child process (run in ``cwd``: the checkout whose
    code ``-m streamer`` runs), via GNU time's %M."""
    with tempfile.NamedTemporaryFile("r") as rss:
        start = time.perf_counter()
        subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", rss.name, *cmd], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=cwd)
        wall = time.perf_counter() - start
        return wall, int(rss.read().split()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", default=[str(DATA / "vtest.avi"), str(DATA / "Megamind.avi"), "pan-4k"])
    parser.add_argument("--method", default="pixelate")
    parser.add_argument("--repeat", type=int, default=1, help="runs per tool, taken in turn")
    parser.add_argument("--stat", choices=["best", "median"], default="best", help="which of the --repeat runs is reported")
    parser.add_argument("--no-deface", action="store_true")
    parser.add_argument("--camstream-args", default="", help="more options for the camstream run, e.g. '-c paranoid'")
    parser.add_argument("--compare", type=Path, help="also run camstream from this checkout (e.g. a worktree of the code before), in the same turns")
    args = parser.parse_args()
    deface = shutil.which("deface") or (str(Path(sys.executable).parent / "deface") if (Path(sys.executable).parent / "deface").exists() else None)
    rows = []
    pipeline_fps: dict[str, float] = {}
    detected: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for clip in (made_clip(c) if c == "pan-4k" else Path(c) for c in args.clips):
            n = frame_count(clip)
            camstream = [sys.executable, "-m", "streamer", "run", str(clip), "--overwrite", "--method", args.method, "-q",
                         *shlex.split(args.camstream_args)]
            ours = f"camstream {args.method}"
            tools = {
                "transcode": [sys.executable, "-c", TRANSCODE, str(clip), f"{tmp}/t.mp4"],
                ours: [*camstream, "-o", f"{tmp}/c.mp4", "--report", f"{tmp}/report.json"],
            }
            where = {}
            if args.compare:
                other = f"camstream {args.method} ({args.compare.name})"
                tools[other] = [*camstream, "-o", f"{tmp}/other.mp4"]
                where[other] = args.compare.resolve()
            if deface and not args.no_deface:
                tools["deface"] = [deface, str(clip), "-o", f"{tmp}/d.mp4"]
            # Round-robin, best of --repeat per tool: on a shared machine the load drifts, and
            # all runs of one tool back to back compared one tool's quiet minute with another's busy one.
            runs: dict[str, list[tuple[float, float]]] = {name: [] for name in tools}
            for _ in range(args.repeat):
                for name, cmd in tools.items():
                    runs[name].append(timed(cmd, where.get(name, REPO)))
                    if name == ours:
                        report = json.loads(Path(f"{tmp}/report.json").read_text())
                        pipeline_fps[clip.name] = max(pipeline_fps.get(clip.name, 0.0), report["fps"])
                        detected[clip.name] = report["frames_detected"]
            pick = (lambda r: min(r, key=lambda x: x[0])) if args.stat == "best" else (lambda r: sorted(r)[len(r) // 2])
            results = {name: pick(r) for name, r in runs.items()}
            base = n / results["transcode"][0]
            for name, (wall, rss) in results.items():
                fps = n / wall
                vs_deface = fps / (n / results["deface"][0]) if "deface" in results else float("nan")
                rows.append((clip.name, name, n, wall, fps, fps / base, vs_deface, rss))
    print(f"\n{os.cpu_count()} CPU cores; {args.stat} of {args.repeat} run(s) per tool, taken in turn; seconds and fps are end to end: "
          "process start, imports and model loading included\n")
    print("| clip | tool | frames | seconds | fps | x transcode | x deface | peak RSS MiB |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for clip, name, n, wall, fps, ratio, vs_deface, rss in rows:
        print(f"| {clip} | {name} | {n} | {wall:.1f} | {fps:.1f} | {ratio:.2f} | {vs_deface:.2f} | {rss:.0f} |")
    for clip, fps in pipeline_fps.items():
        print(f"\n{clip}: camstream's own report: {fps:.1f} fps in the pipeline (after start-up), detector ran on {detected[clip]} frames")


if __name__ == "__main__":
    main()
