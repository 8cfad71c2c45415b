"""Who is where: face/person detectors, the tracker and per-identity state."""

from .detectors import CenterFaceDetector, Detector, LibFaceDetector, YoloPersonDetector, build_detector
from .tracker import FaceTracker, Region, TrackStats

__all__ = [
    "CenterFaceDetector",
    "Detector",
    "FaceTracker",
    "LibFaceDetector",
    "Region",
    "TrackStats",
    "YoloPersonDetector",
    "build_detector",
]
