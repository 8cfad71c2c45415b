"""Settings that would switch privacy off are refused with one line and exit 2 (or 5)."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamer.cli import main


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--threshold", "2"], "detection.threshold"),
        (["--threshold", "nan"], "detection.threshold"),
        (["--threshold", "0"], "detection.threshold"),
        (["--detect-every", "100"], "detection.every"),
        (["--detect-every", "0"], "detection.every"),
        (["--hold", "-5"], "tracking.hold_frames"),
        (["--margin", "-5"], "anonymize.margin"),
        (["--margin", "inf"], "anonymize.margin"),
        (["--set", "anonymize.pixelate_blocks=0"], "anonymize.pixelate_blocks"),
        (["--set", "tracking.hold_growth=-1"], "tracking.hold_growth"),
        (["--set", "anonymize.color=[0, 0, 300]"], "anonymize.color"),
        (["--crf", "99"], "output.crf"),
    ],
)
def test_unsafe_settings_exit_2_with_one_line(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture, args: list[str], words: str) -> None:
    out = tmp_path / "g.jpg"
    code = main(["run", str(data / "grace_hopper_512x512.jpg"), "-o", str(out), "--method", "solid", "-q", *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("camstream: error: ") and words in err[0]
    assert not out.exists()


def test_sparse_detection_needs_the_explicit_flag(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.jpg"
    args = ["run", str(data / "grace_hopper_512x512.jpg"), "-o", str(out), "--method", "solid", "-q", "--detect-every", "40"]
    assert main(args) == 2
    assert main([*args, "--allow-sparse-detection"]) == 0 and out.exists()
