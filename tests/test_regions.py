"""``camstream run --regions FILE [--regions-only]``: the MOTChallenge detection CSV, its
one-line errors, and fail-closed coverage of every box on every frame the file names,
between detections too (no models needed: --method solid)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import camstream, read_frames, write_video

from streamer.errors import ConfigError, InputError
from streamer.frame import Frame
from tracking.regions import RegionsFile


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "det.txt"
    path.write_text(text)
    return path


def test_rows_of_every_width_and_frames_from_one(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "\n".join(
            [
                "# comment",
                "1,-1,10,20,30,40,0.9",  # plain
                "1,3,100,20,30,40,1.7,-1,-1,-1",  # MOT det with world coordinates; conf above 1
                "",
                "2,-1,10,20,30,40,0.5," + ",".join(str(v) for v in range(10)),  # 5 landmarks
                "3,-1,10,20,30,40,0.5,-1,-1,-1," + ",".join(str(v) for v in range(10)),  # both
            ]
        ),
    )
    regions = RegionsFile.load(path)
    assert len(regions) == 4 and sorted(regions.boxes) == [0, 1, 2]
    first = regions.regions(Frame(0, np.zeros((1, 1, 3), np.uint8)))
    np.testing.assert_array_equal(first[0].box, [10, 20, 40, 60])
    assert first[1].confidence == 1.0 and first[0].landmarks is None and first[0].track_id == -1
    assert regions.boxes[1][0].landmarks.shape == (5, 2) and regions.boxes[2][0].landmarks[4, 1] == 9
    dets = regions.detector().detect_frame(Frame(1, np.zeros((1, 1, 3), np.uint8)))
    assert len(dets) == 1 and dets.data["landmarks"].shape == (1, 5, 2)
    assert len(regions.detector().detect_frame(Frame(7, np.zeros((1, 1, 3), np.uint8)))) == 0
    with pytest.raises(RuntimeError, match="frame"):  # a caller that cannot say the frame: a failed detection
        regions.detector().detect(np.zeros((4, 4, 3), np.uint8))


@pytest.mark.parametrize(
    ("row", "why"),
    [
        ("1,-1,10,20,30", "5 values"),
        ("0,-1,10,20,30,40,0.9", "frames are whole numbers from 1"),
        ("1.5,-1,10,20,30,40,0.9", "frames are whole numbers from 1"),
        ("1,-1,10,20,-3,40,0.9", "must be positive"),
        ("1,-1,ten,20,30,40,0.9", "'ten' is not a number"),
        ("1,-1,10,20,30,40,nan", "not finite"),
        ("1,-1,10,20,30,40,0.9,1,2", "9 values"),
    ],
)
def test_a_bad_row_is_one_line_naming_the_line(tmp_path: Path, row: str, why: str) -> None:
    path = _write(tmp_path, f"1,-1,1,1,5,5,1\n{row}\n")
    with pytest.raises(InputError) as err:
        RegionsFile.load(path)
    assert str(err.value).startswith(f"{path}:2: ") and why in str(err.value) and "\n" not in str(err.value)


def test_cli_errors_and_exit_codes(tmp_path: Path) -> None:
    image = tmp_path / "in.png"
    write_video(tmp_path / "in.mp4", [np.full((64, 64, 3), 200, np.uint8)] * 2)
    import cv2

    cv2.imwrite(str(image), np.full((64, 64, 3), 200, np.uint8))
    bad = _write(tmp_path, "1,-1,1,1,0,5,1\n")
    cases = [
        (["--regions", tmp_path / "missing.txt"], 2, "no such file"),
        (["--regions-only"], 2, "--regions-only needs --regions"),
        (["--regions", bad], 3, "width and height must be positive"),
    ]
    for extra, code, text in cases:
        r = camstream("run", image, "-o", tmp_path / "out.png", "--method", "solid", *extra)
        lines = [line for line in r.stderr.splitlines() if line.strip()]
        assert r.returncode == code and len(lines) == 1 and text in lines[0], (extra, r.stderr)
        assert not (tmp_path / "out.png").exists()
    r = camstream("run", tmp_path / "in.mp4", "-o", tmp_path / "o.mp4", "--method", "solid", "--regions", bad, "--start", "1")
    assert r.returncode == 2 and "--start" in r.stderr


@pytest.mark.parametrize("only", [False, True], ids=["added", "only"])
def test_every_named_frame_is_covered_between_detections(tmp_path: Path, only: bool) -> None:
    """A box the face detector cannot see (flat grey, no face), moving 6 px a frame, named
    on every frame of a 12-frame clip: covered on each, with --detect-every 4 (frames
    between detections: the file's box is added where the regions are assembled)."""
    frames = [np.full((96, 160, 3), 180, np.uint8) for _ in range(12)]
    clip = write_video(tmp_path / "grey.mp4", frames)
    boxes = [(10 + 6 * k, 30, 24, 24) for k in range(12)]
    csv = _write(tmp_path, "".join(f"{k + 1},-1,{x},{y},{w},{h},0.8\n" for k, (x, y, w, h) in enumerate(boxes)))
    out = tmp_path / "out.mp4"
    args = ["run", clip, "-o", out, "--method", "solid", "--regions", csv, "--detect-every", "4", "--margin", "0", "-q"]
    r = camstream(*args, *(["--regions-only"] if only else []))
    assert r.returncode == 0, r.stderr
    result = read_frames(out)
    assert len(result) == 12
    for k, (x, y, w, h) in enumerate(boxes):
        centre = result[k][y + h // 4 : y + 3 * h // 4, x + w // 4 : x + 3 * w // 4]
        assert centre.max() < 40, f"frame {k + 1}: the file's box is not covered"


def test_regions_file_config_checks() -> None:
    with pytest.raises(ConfigError):
        RegionsFile.load("/nonexistent/regions.txt")
