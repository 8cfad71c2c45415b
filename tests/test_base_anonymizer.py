"""BaseAnonymizer (``--method base``) on the tiny models: what it may touch, fail-closed,
annotators and captioner through the manifest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tiny_models import RESOLUTION, one_torch_thread, tiny_config, tiny_models  # noqa: F401 - fixtures

from camouflage.base.annotators import ControlnetAuxAnnotator, WeightFreeAnnotator, load_annotators
from camouflage.base.anonymizer import FEATHER, BaseAnonymizer, build_base_anonymizer
from camouflage.models.manifest import ModelResolver
from camouflage.models.methods import build_method
from camouflage.models.names import CONTROLS
from streamer.errors import ConfigError
from tracking.tracker import Region, enlarge


@pytest.fixture(scope="module")
def anonymizer(tiny_models: Path) -> BaseAnonymizer:  # noqa: F811
    return build_method("base", tiny_config(tiny_models))


@pytest.fixture(scope="module")
def photo(data: Path) -> np.ndarray:
    return np.asarray(Image.open(data / "grace_hopper_512x512.jpg").convert("RGB"))


REGIONS = [Region(box=np.array([180, 90, 330, 290], np.float32), track_id=1),
           Region(box=np.array([-10, 420, 60, 530], np.float32), track_id=2)]  # partly outside the frame


def allowed(regions: list[Region], margin: float, shape: tuple[int, int]) -> np.ndarray:
    """Every pixel the anonymizer may change: the covered shape's box plus the feather ring."""
    ok = np.zeros(shape, bool)
    for r in regions:
        size = max(r.box[2] - r.box[0], r.box[3] - r.box[1])
        x1, y1, x2, y2 = enlarge(r.box, margin)
        ring = int(round(FEATHER * size)) + 1
        ok[max(0, int(y1) - ring):int(np.ceil(y2)) + ring, max(0, int(x1) - ring):int(np.ceil(x2)) + ring] = True
    return ok


@pytest.mark.full  # 21 s; nothing changed outside: test_camouflage_video.py's compositor test
def test_scope_face_changes_pixels_only_inside_the_masks(anonymizer: BaseAnonymizer, photo: np.ndarray) -> None:
    out = anonymizer.anonymize(photo.copy(), REGIONS)
    assert out.shape == photo.shape and out.dtype == np.uint8
    changed = np.any(out != photo, axis=2)
    assert not (changed & ~allowed(REGIONS, anonymizer.shape.margin, photo.shape[:2])).any()
    h, w = photo.shape[:2]
    for r in REGIONS:  # the covered shape itself is regenerated
        (x1, y1, x2, y2), mask = anonymizer.shape.mask(r.box, w, h)
        assert changed[y1:y2, x1:x2][mask[:, :, 0]].mean() > 0.9
    np.testing.assert_array_equal(anonymizer.anonymize(photo.copy(), REGIONS), out)  # same tracks, same faces


def test_scope_scene_regenerates_the_whole_frame(anonymizer: BaseAnonymizer, photo: np.ndarray) -> None:
    scene = BaseAnonymizer(anonymizer.pipeline, anonymizer.annotators, anonymizer.captioner, anonymizer.settings, scope="scene")
    out = scene.anonymize(photo.copy(), REGIONS[:1])
    assert out.shape == photo.shape
    assert np.any(out != photo, axis=2).mean() > 0.9


def test_failure_raises_never_returns_the_original(anonymizer: BaseAnonymizer, photo: np.ndarray) -> None:
    def broken(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("out of memory")

    failing = BaseAnonymizer(broken, anonymizer.annotators, anonymizer.captioner, anonymizer.settings)
    with pytest.raises(RuntimeError):
        failing.anonymize(photo.copy(), REGIONS)


def test_annotators_and_captioner_load_through_the_manifest(anonymizer: BaseAnonymizer, photo: np.ndarray) -> None:
    assert set(anonymizer.annotators) == set(CONTROLS)
    for name, annotator in anonymizer.annotators.items():
        control = annotator(photo, RESOLUTION)
        assert control.shape == (RESOLUTION, RESOLUTION, 3) and control.dtype == np.uint8, name
    assert type(anonymizer.annotators["depth"]).__name__ == "DepthAnnotator"  # a real transformers depth model
    assert type(anonymizer.annotators["seg"]).__name__ == "SegAnnotator"
    # controlnet-aux's own detectors, read from lllyasviel/Annotators' .pth files
    assert all(isinstance(anonymizer.annotators[c], ControlnetAuxAnnotator) for c in ("normal", "pose", "lineart"))
    assert type(anonymizer.annotators["pose"].detector).__name__ == "OpenposeDetector"
    assert isinstance(anonymizer.captioner(photo), str)


def test_weight_free_annotators_only_by_name(tiny_models: Path) -> None:  # noqa: F811
    resolver = ModelResolver(models_dir=tiny_models, offline=True)
    chosen = load_annotators(resolver, overrides={"lineart": "lineart_standard"}, controls=("lineart",))
    assert isinstance(chosen["lineart"], WeightFreeAnnotator)
    with pytest.raises(ConfigError):
        load_annotators(resolver, overrides={"lineart": "hed"}, controls=("lineart",))


def test_prompt_setting_skips_the_captioner(tiny_models: Path) -> None:  # noqa: F811
    a = build_base_anonymizer(tiny_config(tiny_models, prompt="a person"))
    assert a.captioner is None


def test_unknown_control_names_are_config_errors(tiny_models: Path) -> None:  # noqa: F811
    with pytest.raises(ConfigError, match="unknown control"):
        build_base_anonymizer(tiny_config(tiny_models, controls={"depht": 0.5}))
