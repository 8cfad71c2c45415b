"""Light's models in their publishers' own formats: FaRL's OpenAI-CLIP .pth, FACER's state
dict (pyfacer's architecture), h94's IP-Adapter plus-face layout; and Light with the public
adapters (IP-Adapter plus + openpose ControlNet)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tiny_models import RESOLUTION, one_torch_thread, tiny_models  # noqa: F401 - fixtures

from camouflage.light.facer import FacerAttributeModel
from camouflage.models import farl
from camouflage.models.facer import build_attribute_net, random_state
from streamer.errors import ModelError

R = RESOLUTION


# -- FaRL ------------------------------------------------------------------------------------

def test_farl_pth_maps_onto_the_clip_vision_encoder_exactly(tmp_path: Path) -> None:
    """The converted encoder's image_embeds equal FaRL's own VisualTransformer (pyfacer) on the
    same weights: the key mapping, the q/k/v split, QuickGELU and the projection are right."""
    checkpoint = farl.random_checkpoint(width=64, patch=8, resolution=32, layers=3, output_dim=24, seed=1)
    from facer.farl.model import VisualTransformer  # imported quietly by random_checkpoint first

    assert any(k.startswith("transformer.") for k in checkpoint["state_dict"])  # the text tower rides along
    torch.save(checkpoint, tmp_path / "FaRL-Base-Patch16-LAIONFace20M-ep16.pth")
    encoder = farl.load_farl_vision(tmp_path)
    assert (encoder.config.hidden_size, encoder.config.num_hidden_layers, encoder.config.image_size,
            encoder.config.projection_dim) == (64, 3, 32, 24)
    own = VisualTransformer(input_resolution=32, patch_size=8, width=64, layers=3, heads=1, output_dim=24).eval()
    own.load_state_dict(farl.visual_state(checkpoint))
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(encoder(pixel_values=pixels).image_embeds, own(pixels), rtol=1e-4, atol=1e-5)
    # the conversion is kept beside the file and redone when the file changes
    converted = tmp_path / farl.CONVERTED / "model.safetensors"
    stamp = converted.stat().st_mtime_ns
    farl.converted_folder(tmp_path)
    assert converted.stat().st_mtime_ns == stamp


def test_farl_full_size_config_is_read_from_the_tensors() -> None:
    shapes = {"conv1.weight": (768, 3, 16, 16), "positional_embedding": (197, 768), "proj": (768, 512),
              "transformer.resblocks.0.mlp.c_fc.weight": (3072, 768), "transformer.resblocks.11.ln_1.weight": (768,)}
    config = farl.vision_config({k: torch.empty(s, device="meta") for k, s in shapes.items()})
    assert (config.hidden_size, config.num_hidden_layers, config.num_attention_heads, config.patch_size,
            config.image_size, config.projection_dim, config.hidden_act) == (768, 12, 12, 16, 224, 512, "quick_gelu")


def test_a_file_that_is_not_farl_is_one_model_error(tmp_path: Path) -> None:
    torch.save({"state_dict": {"conv.weight": torch.ones(1)}}, tmp_path / "FaRL-Base-Patch16-LAIONFace20M-ep64.pth")
    with pytest.raises(ModelError, match="not a FaRL checkpoint"):
        farl.load_farl_vision(tmp_path)
    with pytest.raises(ModelError, match="import farl"):
        farl.farl_file(tmp_path / "nothing")


# -- FACER -----------------------------------------------------------------------------------

def test_facer_state_dict_has_pyfacer_farl_classification_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    """The real file is a state dict of pyfacer's farl_classification(40, layers=[11]); our CPU
    build of the same modules has exactly its keys and shapes (pyfacer's own builder calls
    .cuda(): neutralised here only to build the reference)."""
    from facer.farl import farl_classification

    monkeypatch.setattr(torch.nn.Module, "cuda", lambda self, *a, **k: self)
    reference = farl_classification(num_classes=40, layers=[11]).state_dict()
    ours = build_attribute_net().state_dict()
    assert {k: tuple(v.shape) for k, v in ours.items()} == {k: tuple(v.shape) for k, v in reference.items()}
    assert len(ours) == 158  # as counted in the published file


def test_facer_aligns_on_the_landmarks(tmp_path: Path) -> None:
    torch.save(random_state(seed=3), tmp_path / "face_attribute.farl.celeba.pt")
    model = FacerAttributeModel.from_pretrained(tmp_path)
    image = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    box = np.array([20, 20, 100, 110], np.float32)
    landmarks = np.array([[45, 55], [75, 55], [60, 72], [48, 90], [72, 90]], np.float32)
    a = model.predict_faces(image, [box], [landmarks])
    b = model.predict_faces(image, [box], [landmarks + 12])
    assert a.shape == (1, 40) and ((a > 0) & (a < 1)).all()
    assert np.abs(a - b).max() > 1e-4  # another alignment, another input
    np.testing.assert_array_equal(a, model.predict_faces(image, [box], [landmarks]))
    torch.save({"backbone.conv1.weight": torch.ones(2)}, tmp_path / "face_attribute.farl.celeba.pt")
    with pytest.raises(ModelError, match="FACER attribute model"):
        FacerAttributeModel.from_pretrained(tmp_path)


# -- the public adapters ---------------------------------------------------------------------

@pytest.fixture(scope="module")
def public_pipe(tiny_models: Path):  # noqa: ANN201, F811
    from camouflage.light.pipeline import CamouflageLightPipeline
    from camouflage.models import names

    paths = names.resolve_models(tiny_models, names.PUBLIC_MODELS, offline=True)
    return CamouflageLightPipeline.from_public_paths(paths, scheduler="ddim")


def run_public(pipe, control, identity, seed=0, **kw):  # noqa: ANN001, ANN003, ANN201
    image = np.random.default_rng(1).integers(0, 256, (R, R, 3), dtype=np.uint8)
    return pipe(image, control_image=control, identity_embeds=identity, num_inference_steps=3, strength=0.8,
                generator=torch.Generator().manual_seed(seed), **kw).images


def test_ip_adapter_plus_file_loads_as_the_plus_projection_with_its_vit_h_encoder(public_pipe) -> None:  # noqa: ANN001
    from diffusers.models.embeddings import IPAdapterPlusImageProjection

    assert isinstance(public_pipe.unet.encoder_hid_proj.image_projection_layers[0], IPAdapterPlusImageProjection)
    assert public_pipe.adapters == "public" and public_pipe.identity_from_hidden_states
    faces = torch.rand(2, 3, R, R)
    tokens = public_pipe.encode_identity(faces)
    grid = public_pipe.image_encoder.config.image_size // public_pipe.image_encoder.config.patch_size
    assert tokens.shape == (2, grid * grid + 1, public_pipe.image_encoder.config.hidden_size)  # penultimate hidden states


def test_public_light_follows_the_identity_and_the_pose(public_pipe) -> None:  # noqa: ANN001
    pipe = public_pipe
    rng = np.random.default_rng(2)
    pose = rng.integers(0, 256, (1, R, R, 3), dtype=np.uint8)
    face = pipe.encode_identity(torch.rand(1, 3, R, R, generator=torch.Generator().manual_seed(4)))
    ref = run_public(pipe, pose, face)
    np.testing.assert_array_equal(ref, run_public(pipe, pose, face))
    assert np.abs(ref - run_public(pipe, pose, face, controlnet_conditioning_scale=0.0)).max() > 1e-3  # the ControlNet
    assert np.abs(ref - run_public(pipe, np.zeros_like(pose), face)).max() > 1e-6  # ... reads the pose image
    other = pipe.encode_identity(torch.rand(1, 3, R, R, generator=torch.Generator().manual_seed(5)))
    assert np.abs(ref - run_public(pipe, pose, other)).max() > 1e-3  # the IP-Adapter
    pushed = run_public(pipe, pose, face, original_embeds=other, anonymization_scale=1.5)
    assert np.abs(ref - pushed).max() > 1e-3  # negative identity guidance
    with pytest.raises(ValueError, match="control_image"):
        pipe(np.zeros((R, R, 3), np.uint8), np.zeros((41, R, R), np.float32), num_inference_steps=2)
