"""The library API (camstream/api.py): a file run, frames from NumPy, a detector of the
user's own; each checked with the independent detector (CenterFace) on real faces."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, probe, read_frames, read_image, write_video
from privacy import faces, leaks

import camstream


@pytest.fixture(scope="module")
def face(data: Path) -> np.ndarray:
    return read_image(data / "grace_hopper_512x512.jpg")


def test_import_camstream_is_light() -> None:
    """`import camstream` loads nothing heavy until a function is used (the CLI imports the package)."""
    code = "import camstream, sys; print(sorted({m.split('.')[0] for m in sys.modules} & {'numpy', 'av', 'cv2', 'torch'}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
    assert callable(camstream.anonymize) and callable(camstream.anonymize_frames)


def test_anonymize_a_file_returns_the_report(tmp_path: Path, face: np.ndarray) -> None:
    clip = write_video(tmp_path / "clip.mp4", [face] * 12, rate=12)
    out = tmp_path / "out.mp4"
    report = camstream.anonymize(clip, out, method="pixelate", report=tmp_path / "r.json")
    assert isinstance(report, camstream.Report)
    assert report.status == "ok" and report.frames_out == 12 and report.output == str(out)
    assert (tmp_path / "r.json").exists() and probe(out)["frames"] == 12
    found, leaked = leaks(read_frames(clip), read_frames(out))
    assert found == 12 and leaked == []
    with pytest.raises(camstream.CamstreamError) as err:  # an existing output is refused, as on the CLI
        camstream.anonymize(clip, out, method="pixelate")
    assert err.value.exit_code == 4


def test_anonymize_frames_yields_every_frame_covered(face: np.ndarray) -> None:
    frames = [face] * 9
    stream = camstream.anonymize_frames(frames, method="solid", detect_every=4)
    out = list(stream)
    assert len(out) == 9 and all(o.shape == face.shape and o.dtype == np.uint8 for o in out)
    assert all(len(faces(o, threshold=0.3)) == 0 for o in out)
    assert (frames[0] == face).all()  # the caller's arrays are never written
    assert stream.report.status == "ok" and stream.report.frames_in == stream.report.frames_out == 9
    assert stream.report.tracks and stream.report.regions_covered >= 9


def test_a_reused_buffer_does_not_change_frames_held_for_backfill(face: np.ndarray) -> None:
    """A caller that fills one array again and again (as a camera loop may): the frames
    the pipeline holds until the next detection must be the ones it was given."""
    buffer = face.copy()
    blank = np.full_like(face, 90)

    def camera():  # noqa: ANN202
        for i in range(8):
            buffer[:] = face if i % 2 == 0 else blank
            yield buffer

    out = list(camstream.anonymize_frames(camera(), method="solid", detect_every=4))
    # (a corner no cover reaches: the blank frames may be covered where the face was)
    assert [bool((o[:8, :8] == 90).all()) for o in out] == [False, True] * 4
    assert all((o[:8, :8] == face[:8, :8]).all() for o in out[::2])


class FixedBoxes:
    """A detector of the user's own: plain arrays, no supervision needed."""

    def __init__(self, box: list[float]) -> None:
        self.box, self.calls = box, 0

    def detect(self, image: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.array([[*self.box, 0.9]], np.float32)


def test_a_detector_of_ones_own_is_plugged_in(face: np.ndarray) -> None:
    box = [120, 80, 380, 400]
    mine = FixedBoxes(box)
    assert isinstance(mine, camstream.Detector)
    out = list(camstream.anonymize_frames([face] * 6, method="solid", detector=mine, detect_every=2))
    assert mine.calls >= 3
    for o in out:
        assert (o[240, 250] == 0).all()  # the middle of its box is covered
        assert (o[10, 10] == face[10, 10]).all()  # outside, untouched


def test_a_failing_detector_covers_whole_frames(face: np.ndarray) -> None:
    class Broken:
        def detect(self, image: np.ndarray) -> np.ndarray:
            raise RuntimeError("no model")

    stream = camstream.anonymize_frames([face] * 3, method="pixelate", detector=Broken())
    out = list(stream)
    assert len(out) == 3 and all((o == 0).all() for o in out)
    assert stream.report.frames_blanked == 3


def test_the_detector_can_run_a_file(tmp_path: Path, face: np.ndarray) -> None:
    clip = write_video(tmp_path / "clip.mp4", [face] * 4, rate=4)
    mine = FixedBoxes([100, 60, 400, 420])
    report = camstream.anonymize(clip, tmp_path / "out.mp4", method="solid", detector=mine)
    assert report.status == "ok" and mine.calls >= 1
    assert all(len(faces(f, threshold=0.3)) == 0 for f in read_frames(tmp_path / "out.mp4"))


@pytest.mark.parametrize(("settings", "needle"), [
    ({"threshold": 2.0}, "threshold"),  # would detect nothing: protection off, refused
    ({"detect_every": 500}, "every"),
    ({"thresh": 0.3}, "unknown setting"),
    ({"overrides": {"detection.nope": 1}}, "unknown"),
    ({"fps": 0}, "fps"),
])
def test_bad_settings_are_one_clear_error(face: np.ndarray, settings: dict, needle: str) -> None:
    with pytest.raises(camstream.CamstreamError) as err:
        camstream.anonymize_frames([face], method="solid", **settings)
    assert err.value.exit_code == 2 and needle in str(err.value)


def test_a_frame_that_is_not_rgb_is_refused(face: np.ndarray) -> None:
    stream = camstream.anonymize_frames([face, face[:, :, 0]], method="solid")
    with pytest.raises(camstream.CamstreamError) as err:
        list(stream)
    assert err.value.exit_code == 3 and "frame 1" in str(err.value)
    assert stream.report.status == "error"


def test_close_stops_early_and_says_so(face: np.ndarray) -> None:
    with camstream.anonymize_frames([face] * 20, method="solid") as stream:
        first = next(stream)
    assert len(faces(first, threshold=0.3)) == 0
    assert stream.report.status == "interrupted" and stream.report.frames_out == 1
