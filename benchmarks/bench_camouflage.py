"""The video method (``--method camouflage``) at 720p with 1, 2 and 4 tracked faces: fps,
where the time goes per stage, and UNet evaluations per face and frame.

    python benchmarks/bench_camouflage.py                       # CPU, tiny random set (made here)
    python benchmarks/bench_camouflage.py --models-dir DIR      # any model set, e.g. full-size on a GPU
    python benchmarks/bench_camouflage.py --presets default,realtime --faces 1,2,4 --frames 48

Frames are Megamind.avi resized to 1280x720; the faces are its real face plus copies of
its box placed elsewhere in the frame (the generator's cost does not depend on what is
in the crop), each its own track, so keyframes fire as in a real run: at birth and every
``camouflage.keyframe_every`` frames. ``quality`` mode (every frame rendered), so the fps is
throughput; the realtime mode's latency budget is tested in the test suite. Stages:
attributes (crops, FACER), base (keyframes), light (frames in between), paste (compositor),
measure (flicker). With the tiny set the numbers say what the pipeline costs around the
models, not what the models cost: for that run it with full-size weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"
STAGES = ("attributes", "base", "light", "paste", "measure")


def frames_720p(count: int) -> list[np.ndarray]:
    import av

    out = []
    with av.open(str(DATA / "Megamind.avi")) as c:
        for i, f in enumerate(c.decode(video=0)):
            if i >= 18:  # the face is on screen from here
                out.append(cv2.resize(f.to_ndarray(format="rgb24"), (1280, 720), interpolation=cv2.INTER_CUBIC))
            if len(out) == count:
                break
    return out


def regions_for(frame: np.ndarray, faces: int):  # noqa: ANN201
    from tracking.detectors import LibFaceDetector
    from tracking.tracker import Region

    dets = LibFaceDetector(threshold=0.5).detect(frame)
    box = dets.xyxy[np.argmax(dets.confidence)].astype(np.float32)
    w = box[2] - box[0]
    regions = [Region(box=box, track_id=1, landmarks=dets.data["landmarks"][int(np.argmax(dets.confidence))])]
    for k in range(1, faces):  # copies of the box, alternately right and left of it, kept inside the frame
        dx = (k + 1) // 2 * 1.6 * w * (1 if k % 2 else -1)
        moved = box + np.array([dx, 0, dx, 0], np.float32)
        moved[[0, 2]] -= min(0.0, float(moved[0])) + max(0.0, float(moved[2]) - (frame.shape[1] - 1))
        regions.append(Region(box=moved, track_id=k + 1))
    return regions


def run(models: Path, preset: str, faces: int, frames: list[np.ndarray], resolution: int | None,
        steps: int | None, device: str, dtype: str = "auto") -> dict:
    import torch

    from camouflage.models.methods import build_method
    from streamer.config import load_config
    from streamer.frame import Frame

    overrides = [f"models.dir={models}", f"models.device={device}", f"models.dtype={dtype}", "anonymize.method=camouflage",
                 "camouflage.mode=quality"]
    if resolution:
        overrides += [f"light.resolution={resolution}", f"base.resolution={resolution}"]
    if steps:
        overrides += [f"light.steps={steps}", f"base.steps={steps}"]
    config = load_config([] if preset == "default" else [preset], overrides)
    anonymizer = build_method("camouflage", config)
    regions = regions_for(frames[0], faces)
    cuda = torch.cuda.is_available() and device != "cpu"
    if cuda:  # the peak includes the birth keyframes (Base: five ControlNets) as well as Light
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    anonymizer.anonymize(frames[0].copy(), regions, Frame(0, frames[0]))  # warm-up (birth keyframes)
    anonymizer.stats.seconds.clear()
    anonymizer.stats.unet_evals.clear()
    anonymizer.stats.keyframes.clear()
    anonymizer.stats.light_regions = 0
    if cuda:
        torch.cuda.synchronize()
    started = time.perf_counter()
    for i, f in enumerate(frames[1:], 1):
        anonymizer.anonymize(f.copy(), regions, Frame(i, f))
    if cuda:
        torch.cuda.synchronize()
    wall = time.perf_counter() - started
    n = len(frames) - 1
    report = anonymizer.report()
    return {"preset": preset, "faces": faces, "fps": n / wall,
            **{s: 1000 * anonymizer.stats.seconds.get(s, 0.0) / n for s in STAGES},
            "keyframes": report["keyframes"], "evals": report["unet_evals_per_face_frame"],
            "base_evals": report["per_frame_base_unet_evals_per_face_frame"],
            "branches": "{base}/{light}".format(**report["unet_branches"]),
            "peak_gb": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
            # any region the generator did not render: the fallback cover (errors, out of memory, late)
            "fallback": report["fallback_failed_regions"] + report["fallback_late_regions"],
            "memory": f"{report['memory_retries']} retries" + (", offloaded" if report["models_offloaded"] else "")}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models-dir", help="model set (default: a tiny random set made in a temp folder)")
    p.add_argument("--presets", default="default,realtime", help="config presets, comma-separated")
    p.add_argument("--faces", default="1,2,4")
    p.add_argument("--frames", type=int, default=49, help="frames per run (the first one is a warm-up)")
    p.add_argument("--resolution", type=int, help="crop resolution (default: the preset's; 64 with the tiny set)")
    p.add_argument("--steps", type=int, help="denoising steps (default: the preset's; 4 with the tiny set)")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="auto", help="models.dtype: auto (fp16 on a GPU), float16, bfloat16, float32")
    p.add_argument("--threads", type=int, default=1, help="torch threads (tiny models: 1 is fastest)")
    args = p.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    tmp = None
    models = args.models_dir
    resolution, steps = args.resolution, args.steps
    if models is None:
        from camouflage.models.tiny import make_tiny

        tmp = tempfile.TemporaryDirectory(prefix="camstream-bench-")
        models = make_tiny(Path(tmp.name) / "tiny", resolution=64)
        resolution, steps = resolution or 64, steps or 4
    frames = frames_720p(args.frames)
    rows = [run(Path(models), preset, faces, frames, resolution, steps, args.device, args.dtype)
            for preset in args.presets.split(",") for faces in (int(x) for x in args.faces.split(","))]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else "CPU"
    print(f"\ncamouflage at 1280x720, {len(frames) - 1} frames, {device}, models: "
          f"{'tiny random set' if tmp else models}, crops {resolution or 'preset'} px, steps {steps or 'preset'}, dtype {args.dtype}")
    print("| preset | faces | fps | ms/frame: attributes | base | light | paste | measure | keyframes "
          "| UNet branches Base/Light | UNet evals/face/frame | per-frame Base | peak GPU GB | fallback regions | memory |")
    print("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--|")
    for r in rows:
        peak = f"{r['peak_gb']:.1f}" if r["peak_gb"] is not None else "-"
        print(f"| {r['preset']} | {r['faces']} | {r['fps']:.2f} | {r['attributes']:.0f} | {r['base']:.0f} | "
              f"{r['light']:.0f} | {r['paste']:.0f} | {r['measure']:.0f} | {r['keyframes']} | {r['branches']} | {r['evals']} | "
              f"{r['base_evals']} | {peak} | {r['fallback']} | {r['memory']} |")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
