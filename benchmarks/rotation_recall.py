"""Which detector finds tilted and turned faces? Recall on a rotation sweep and a yaw proxy.

    python benchmarks/rotation_recall.py [--sizes 30 60 100]

The faces are the shared photos (tests/hard_clips.py) pasted over the vtest.avi street:
  * in-plane rotation 0-90 degrees in 15-degree steps (both directions), and
  * a yaw proxy: the face squeezed horizontally to 80/60/45 % of its width (a turned
    head is foreshortened; the shared photos hold no true profiles),
each at several face sizes. A face is found when a detection at ``--threshold`` or
more lies at its place (IoU >= 0.3 with the turned face's box, or each centre in the
other box).
Candidates: libfacedetection, CenterFace, and libfacedetection run on copies of the
frame rotated by +-30 and +-60 degrees (boxes mapped back), with the time per frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from hard_clips import FaceSource, backgrounds, paste, sources  # noqa: E402

from streamer.evaluation.faces import same_place  # noqa: E402
from tracking.detectors import CenterFaceDetector, LibFaceDetector, RotatedDetector  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def squeezed(src: FaceSource, factor: float) -> FaceSource:
    h, w = src.patch.shape[:2]
    patch = cv2.resize(src.patch, (max(1, round(w * factor)), h), interpolation=cv2.INTER_AREA)
    scale = np.array([factor, 1, factor, 1], np.float32)
    return FaceSource(patch, src.box * scale, src.landmarks * np.array([factor, 1], np.float32))




def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[24, 48, 96])
    parser.add_argument("--threshold", type=float, default=0.2, help="count detections at or above this confidence (the pipeline: 0.2)")
    args = parser.parse_args()
    (street,) = backgrounds(DATA)
    faces = sources(DATA)
    detectors = {
        "libfacedetection": LibFaceDetector(threshold=0.1),
        "centerface": CenterFaceDetector(threshold=0.1),
        "libfacedetection + rotated copies": RotatedDetector(LibFaceDetector(threshold=0.1)),
    }
    angles = [a for a in range(-90, 91, 15)]
    squeezes = [1.0, 0.8, 0.6, 0.45]
    cases = [("angle", a, src, a, 1.0) for a in angles for src in faces] + [("yaw", s, src, 0, s) for s in squeezes for src in faces]
    header = [f"{a:+d} deg" for a in angles] + [f"width {int(s * 100)} %" for s in squeezes]
    print("| detector | size px | " + " | ".join(header) + " | ms/frame |")
    print("|---|---:|" + "---:|" * (len(header) + 1))
    for name, det in detectors.items():
        for size in args.sizes:
            hits: dict[tuple[str, float], list[bool]] = {}
            spent, calls = 0.0, 0
            for kind, key, src, angle, squeeze in cases:
                for dx in (-120, 0, 120):  # three places, so one background spot does not decide
                    image = street.copy()
                    truth = paste(image, squeezed(src, squeeze) if squeeze != 1 else src, (320 + dx, 240), size * squeeze, angle)
                    start = time.perf_counter()
                    found = det.detect(image)
                    boxes, confident = found.xyxy, found.confidence >= args.threshold
                    spent += time.perf_counter() - start
                    calls += 1
                    hits.setdefault((kind, key), []).append(same_place(truth.box, boxes[confident]))
            cells = [f"{np.mean(hits[('angle', a)]):.2f}" for a in angles] + [f"{np.mean(hits[('yaw', s)]):.2f}" for s in squeezes]
            print(f"| {name} | {size} | " + " | ".join(cells) + f" | {1000 * spent / calls:.0f} |", flush=True)


if __name__ == "__main__":
    main()
