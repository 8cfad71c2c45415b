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
        (["--set", "detection.full_every=0"], "detection.full_every"),
        (["--set", "detection.full_every=100"], "detection.full_every"),
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


def test_unrelated_photos_in_a_folder_share_no_state(data: Path, tmp_path: Path) -> None:
    """A held cover of one photo was pasted onto the next, unrelated one."""
    import cv2
    import numpy as np
    from conftest import read_image

    folder, out = tmp_path / "photos", tmp_path / "out"
    folder.mkdir()
    face = read_image(data / "grace_hopper_512x512.jpg")
    plain = np.full_like(face, 128)
    plain[::8] = 140  # a texture, no face
    cv2.imwrite(str(folder / "hopper.png"), face[:, :, ::-1])
    cv2.imwrite(str(folder / "wall.png"), plain[:, :, ::-1])
    assert main(["run", str(folder), "-o", str(out), "--method", "solid", "-q"]) == 0
    assert (read_image(out / "wall.png") == plain).all()  # nothing held from hopper.png
    assert (read_image(out / "hopper.png") != face).any()


def test_numbered_frames_of_one_prefix_are_a_sequence() -> None:
    from streamer.stills import numbered_sequence

    assert numbered_sequence([Path("frame_0001.png"), Path("frame_0002.png"), Path("frame_0010.png")])
    assert not numbered_sequence([Path("frame_0001.png"), Path("holiday.png")])
    assert not numbered_sequence([Path("a1.png"), Path("b2.png")])
    assert not numbered_sequence([Path("f1.png"), Path("f2.jpg")])
    assert not numbered_sequence([Path("f1.png")])


def test_every_preset_and_example_passes_validation() -> None:
    from streamer.config import load_config
    from streamer.validate import validate

    root = Path(__file__).resolve().parent.parent
    files = [p for p in [*(root / "camstream" / "configs").glob("*.yaml"), *(root / "examples").glob("*.yaml")] if p.name != "models.yaml"]
    assert len(files) >= 4
    for file in files:
        validate(load_config([file]))
