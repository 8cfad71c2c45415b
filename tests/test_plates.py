"""--detect plates and persons: the loaders on models in their publishers' formats, the
manifest entries, and synthetic plates tracked and covered through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, camstream, read_frames, read_image
from plate_models import PLATES, YELLOW, draw_plate, plate_clip
from tiny_models import RESOLUTION, STEPS, public_models, tiny_models  # noqa: F401 - fixture

from camouflage.models.tiny_detectors import ONNX_NAME, egoblur_lp, rtdetr, yolo_v9_end2end
from streamer.errors import ConfigError, ModelError
from tracking.classes import PLATE, parse_classes
from tracking.plates import EgoBlurPlateDetector, OnnxPlateDetector


def _yellow(image: np.ndarray) -> np.ndarray:
    """Plate-yellow pixels (what the yellow head scores), with room for video compression."""
    r, g, b = (image[..., i].astype(int) for i in range(3))
    return (r > 170) & (g > 140) & (b < 110) & (r + g - 2 * b > 250)


@pytest.fixture(scope="module")
def plate_models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A --models-dir whose plate_yolo_v9_t_384 is the yellow head, in open-image-models' format."""
    root = tmp_path_factory.mktemp("plate-models")
    yolo_v9_end2end(root / "plate_yolo_v9_t_384" / ONNX_NAME, head="yellow")
    return root


def test_random_weights_onnx_in_the_publishers_format_runs_through_the_loader(tmp_path: Path) -> None:
    detector = OnnxPlateDetector(yolo_v9_end2end(tmp_path / ONNX_NAME, head="random"), threshold=0.0)
    assert (detector.input_name, detector.output_name, detector.size) == ("images", "output", 384)
    image = np.random.default_rng(1).integers(0, 255, (360, 640, 3), np.uint8)
    det = detector.detect(image)
    assert len(det) > 0 and set(det.class_id) == {PLATE}
    assert (det.xyxy[:, [0, 2]] <= 640).all() and (det.xyxy[:, [1, 3]] <= 360).all() and (det.xyxy >= 0).all()
    assert (det.xyxy[:, 2] > det.xyxy[:, 0]).all() and (det.xyxy[:, 3] > det.xyxy[:, 1]).all()
    assert len(OnnxPlateDetector(tmp_path / ONNX_NAME, threshold=0.99).detect(image)) < len(det)


@pytest.mark.parametrize("shape", [(360, 640), (640, 360), (1080, 1920)])
def test_letterboxed_boxes_come_back_to_frame_pixels(tmp_path: Path, shape: tuple[int, int]) -> None:
    """The yellow head marks the cells a plate lies in: their union must hold the plate, in
    the frame's pixels, whatever the frame's aspect (the padding the letterbox added)."""
    detector = OnnxPlateDetector(yolo_v9_end2end(tmp_path / ONNX_NAME, head="yellow"), threshold=0.05)
    h, w = shape
    image = np.full((h, w, 3), 90, np.uint8)
    mask = draw_plate(image, (w * 0.6, h * 0.4), max(60, w // 6), 0.0)
    det = detector.detect(image)
    ys, xs = np.nonzero(mask)
    cell = 8 * max(h, w) / 384  # one network cell, in frame pixels
    x1, y1 = det.xyxy[:, :2].min(0)
    x2, y2 = det.xyxy[:, 2:].max(0)
    assert abs(x1 - xs.min()) <= cell and abs(y1 - ys.min()) <= cell
    assert abs(x2 - xs.max()) <= cell and abs(y2 - ys.max()) <= cell


def test_a_file_that_is_not_onnx_is_a_model_error(tmp_path: Path) -> None:
    path = tmp_path / ONNX_NAME
    path.write_bytes(b"<html>a login page, not a model</html>")
    with pytest.raises(ModelError, match="not an ONNX model"):
        OnnxPlateDetector(path)


def _onnx_of_shapes(path: Path, inp: list, out: list) -> Path:
    """A graph with these input and output shapes (the output a constant): only the shapes matter here."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    value = numpy_helper.from_array(np.zeros([d if isinstance(d, int) else 5 for d in out], np.float32))
    graph = helper.make_graph(
        [helper.make_node("Constant", [], ["y"], value=value)],
        "shapes",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, inp)],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, out)],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.mark.parametrize(
    ("inp", "out", "says"),
    [
        ([1, 3, 384, 640], ["N", 7], "input \\[batch, 3, S, S\\]"),
        ([4, 3, 384, 384], ["N", 7], "batch of 1"),
        ([1, 3, 384, 384], ["N", 6], "end2end output"),
        ([1, 3, 384, 384], [1, "N", 7], None),  # [batch, N, 7]: accepted
    ],
)
def test_onnx_files_of_other_shapes_are_refused(tmp_path: Path, inp: list, out: list, says: str | None) -> None:
    path = _onnx_of_shapes(tmp_path / ONNX_NAME, inp, out)
    if says is None:
        assert len(OnnxPlateDetector(path).detect(np.zeros((90, 160, 3), np.uint8))) == 0  # all rows score 0
        return
    with pytest.raises(ModelError, match=says):
        OnnxPlateDetector(path)


def test_egoblur_signature_module_runs_through_the_loader(tmp_path: Path) -> None:
    detector = EgoBlurPlateDetector(egoblur_lp(tmp_path / "ego_blur_lp.jit"), threshold=0.0)
    image = np.random.default_rng(2).integers(0, 255, (240, 320, 3), np.uint8)
    det = detector.detect(image)
    assert len(det) > 0 and set(det.class_id) == {PLATE} and (det.xyxy[:, 2] <= 320).all()
    # NMS at EgoBlur's IoU: no two kept boxes overlap by more than 0.3
    from supervision.detection.utils.iou_and_nms import box_iou_batch

    iou = box_iou_batch(det.xyxy, det.xyxy)
    np.fill_diagonal(iou, 0)
    assert iou.max() <= 0.3 + 1e-6


def test_models_list_shows_plates_and_persons_with_sources_and_licences() -> None:
    r = camstream("models", "list")
    assert r.returncode == 0, r.stderr
    lines = {line.split()[0]: line for line in r.stdout.splitlines() if line.strip()}
    assert "mit" in lines["plate_yolo_v9_t_384"].split()
    assert "https://github.com/ankandrew/open-image-models/releases/download/assets/" + ONNX_NAME in lines["plate_yolo_v9_t_384"]
    assert "apache-2.0" in lines["egoblur_lp"].split() and "projectaria.com" in lines["egoblur_lp"]
    assert "apache-2.0" in lines["rtdetr_r50vd"].split() and "hub PekingU/rtdetr_r50vd@" in lines["rtdetr_r50vd"]


def test_models_import_egoblur_lp_checks_the_file_then_runs_with_it(data: Path, tmp_path: Path) -> None:
    models = tmp_path / "models"
    bad = tmp_path / "ego_blur_lp.jit"
    bad.write_bytes(b"not torchscript")
    r = camstream("models", "import", "egoblur_lp", bad, "--models-dir", models)
    assert r.returncode == 5 and "not a TorchScript module" in r.stderr and not (models / "egoblur_lp").exists()
    good = egoblur_lp(tmp_path / "src" / "ego_blur_lp.jit")
    r = camstream("models", "import", "egoblur_lp", good, "--models-dir", models)
    assert r.returncode == 0, r.stderr
    assert (models / "egoblur_lp" / "ego_blur_lp.jit").read_bytes() == good.read_bytes()
    out, report = tmp_path / "g.jpg", tmp_path / "r.json"
    r = camstream(
        "run",
        "--method",
        "solid",
        data / "grace_hopper_512x512.jpg",
        "-o",
        out,
        "--detect",
        "faces,plates",
        "--models-dir",
        models,
        "--set",
        "detection.plate_model=egoblur_lp",
        "--set",
        "detection.plate_threshold=0.0001",
        "--report",
        report,
    )
    assert r.returncode == 0, r.stderr
    counts = json.loads(report.read_text())["classes"]
    assert counts["plate"]["regions_covered"] > 0 and counts["face"]["regions_covered"] > 0


def test_detect_words() -> None:
    assert parse_classes("faces, plates,plates") == ["faces", "plates"]
    with pytest.raises(ConfigError, match="unknown class 'cars'"):
        parse_classes("faces,cars")
    with pytest.raises(ConfigError, match="faces are always detected"):
        parse_classes("plates")


def test_missing_plate_model_is_a_model_error_naming_the_fetch(data: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.jpg"
    r = camstream(
        "run",
        "--method",
        "solid",
        data / "grace_hopper_512x512.jpg",
        "-o",
        out,
        "--detect",
        "faces,plates",
        "--models-dir",
        tmp_path / "empty",
    )
    assert r.returncode == 5, r.stderr
    assert "camstream models fetch plate_yolo_v9_t_384" in r.stderr.strip().splitlines()[-1] and not out.exists()


@pytest.fixture(scope="module")
def synthetic(data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[list[np.ndarray]]]:
    return plate_clip(data / "vtest.avi", tmp_path_factory.mktemp("plates") / "plates.mp4")


def _run(clip: Path, out: Path, models: Path, *args: str) -> dict:
    report = out.with_suffix(".json")
    r = camstream(
        "run",
        clip,
        "-o",
        out,
        "--detect",
        "faces,plates",
        "--models-dir",
        models,
        "--set",
        "detection.plate_threshold=0.05",
        "--report",
        report,
        "-q",
        *args,
    )
    assert r.returncode == 0, r.stderr
    return json.loads(report.read_text())


def test_synthetic_plates_are_tracked_covered_in_every_frame_and_counted(
    synthetic: tuple[Path, list[list[np.ndarray]]], plate_models: Path, tmp_path: Path
) -> None:
    """Three plates (120, 70 and 44 px wide; 0, 12 and -20 degrees) moving over vtest.avi,
    detected on every 4th frame only: the tracker's holds and backfill cover the frames between."""
    clip, masks = synthetic
    report = _run(clip, tmp_path / "o.mp4", plate_models, "--method", "solid")
    before, after = read_frames(clip), read_frames(tmp_path / "o.mp4")
    assert len(after) == len(before) == len(masks)
    for i, (src, out, plates) in enumerate(zip(before, after, masks, strict=True)):
        for k, mask in enumerate(plates):
            assert _yellow(src)[mask].mean() > 0.5, (i, k)  # the plate is there to find ...
            assert _yellow(out)[mask].mean() < 0.02, (i, k)  # ... and gone from the output
    plates = report["classes"]["plate"]
    assert plates["tracks"] >= len(PLATES) and plates["regions_covered"] >= len(PLATES) * len(masks)
    assert report["classes"]["face"]["regions_covered"] > 0  # vtest's pedestrians: faces are still covered
    assert any(t["track_id"] >= 2_000_000 for t in report["tracks"])  # plate tracks have their own ids


def test_plates_get_a_classical_cover_when_faces_get_a_picture(
    synthetic: tuple[Path, list[list[np.ndarray]]], plate_models: Path, data: Path, tmp_path: Path
) -> None:
    """Whatever replaces faces (here a picture, --method image) never replaces a plate: plates
    get the fallback, a solid box."""
    clip, masks = synthetic
    _run(clip, tmp_path / "o.mp4", plate_models, "--method", "image", "--replace-with", data / "messi5.jpg")
    out = read_frames(tmp_path / "o.mp4")
    for frame, plates in zip(out, masks, strict=True):
        for mask in plates:
            assert frame[mask].mean() < 25  # solid black (the fallback), not a picture of a face


@pytest.mark.full
def test_plates_keep_a_classical_cover_under_a_diffusion_method(
    synthetic: tuple[Path, list[list[np.ndarray]]],
    plate_models: Path,
    tiny_models: Path,  # noqa: F811 - the fixture
    tmp_path: Path,
) -> None:
    """CAMOUFLaGE-Base on the tiny random models: faces go to the generator, plates are boxed in solid black."""
    clip, masks = synthetic
    models = public_models(tiny_models, tmp_path / "models")
    (models / "plate_yolo_v9_t_384").unlink()  # make-tiny's random head: the yellow one instead
    (models / "plate_yolo_v9_t_384").symlink_to(plate_models / "plate_yolo_v9_t_384")
    report = _run(
        clip,
        tmp_path / "o.mp4",
        models,
        "--method",
        "base",
        "--end",
        "0.4",
        "--device",
        "cpu",
        "--set",
        f"base.resolution={RESOLUTION}",
        "--set",
        f"base.steps={STEPS}",
    )
    assert report["classes"]["plate"]["regions_covered"] > 0
    out = read_frames(tmp_path / "o.mp4")
    for frame, plates in zip(out, masks, strict=False):
        for mask in plates:
            assert frame[mask].mean() < 25


def test_yellow_is_what_the_test_head_finds() -> None:
    image = np.full((20, 20, 3), YELLOW, np.uint8)
    assert _yellow(image).all() and not _yellow(np.full((20, 20, 3), 255, np.uint8)).any()


def test_persons_with_rtdetr_random_weights_feed_the_person_scope(data: Path, tmp_path: Path) -> None:
    """RT-DETR R50-vd's configuration with random weights, loaded from the folder the hub ships."""
    models = tmp_path / "models"
    rtdetr(models / "rtdetr_r50vd", tiny=False)
    out, report = tmp_path / "m.jpg", tmp_path / "r.json"
    r = camstream(
        "run",
        "--method",
        "solid",
        data / "messi5.jpg",
        "-o",
        out,
        "--detect",
        "faces,persons",
        "--scope",
        "person",
        "--models-dir",
        models,
        "--set",
        "detection.person_threshold=0.0001",
        "--report",
        report,
    )
    assert r.returncode == 0, r.stderr
    counts = json.loads(report.read_text())["classes"]
    assert counts["person"]["regions_covered"] > 0 and "plate" not in counts
    assert not np.array_equal(read_image(out), read_image(data / "messi5.jpg"))


def test_plates_on_a_classical_install_import_no_torch(plate_models: Path, data: Path, tmp_path: Path) -> None:
    """The whole classical run with --detect plates (detector, tracker, cover, report) needs
    onnxruntime and no torch: camstream[plates] without camstream[diffusion]."""
    code = (
        "import sys\nfrom streamer.cli import main\n"
        f"rc = main(['run', {str(data / 'grace_hopper_512x512.jpg')!r}, '-o', {str(tmp_path / 'g.jpg')!r}, '--method', 'solid', "
        f"'--detect', 'faces,plates', '--models-dir', {str(plate_models)!r}, '-q'])\n"
        "print(rc, sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers'}))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout.strip().splitlines()[-1] == "0 []", r.stdout + r.stderr


def test_models_fetch_plates_downloads_the_default_and_skips_egoblurs_manual_file(tmp_path: Path) -> None:
    from camouflage.models.manifest import ModelResolver

    resolver = ModelResolver(models_dir=tmp_path, offline=False)
    todo, skipped = resolver.plan_fetch(resolver.manifest.expand(["plates"]))
    assert todo == ["plate_yolo_v9_t_384"] and len(skipped) == 1 and skipped[0].startswith("egoblur_lp (manual, optional")
