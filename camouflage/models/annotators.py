"""The files of Base's annotators and captioner, read into their publishers' model classes:
what a run wraps (camouflage/base/annotators.py) and what ``models check`` loads.

The controlnet-aux annotators are read from lllyasviel/Annotators' ``.pth`` files with
``torch.load(weights_only=True)`` into controlnet-aux's own model classes; the transformers
ones (depth, seg, the BLIP captioner) with ``from_pretrained``. A broken checkpoint is one
:class:`~streamer.errors.ModelError` line.
"""

from __future__ import annotations

import contextlib
import io
import warnings
from pathlib import Path
from typing import Any

from streamer.errors import ModelError

from .manifest import load_pickle


def controlnet_aux_module():  # noqa: ANN202
    """controlnet_aux, imported without its import-time noise (mediapipe missing, timm deprecations)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import controlnet_aux
        import controlnet_aux.util

    return controlnet_aux


def _openpose(path: Path):  # noqa: ANN202 - controlnet_aux.OpenposeDetector
    """controlnet-aux's OpenPose (body, hand, face) from lllyasviel/Annotators' three .pth files,
    each read with ``weights_only=True`` into controlnet-aux's own model classes."""
    from controlnet_aux.open_pose import Body, Face, Hand, OpenposeDetector, util
    from controlnet_aux.open_pose import face as face_module
    from controlnet_aux.open_pose.model import bodypose_model, handpose_model

    def net(cls, model, file):  # noqa: ANN001, ANN202 - Body/Hand: keys without the block prefix (util.transfer)
        obj = cls.__new__(cls)
        obj.model = model
        obj.model.load_state_dict(util.transfer(obj.model, load_pickle(path / file)))
        obj.model.eval()
        return obj

    face = Face.__new__(Face)
    params = face_module.params
    face.inference_size, face.sigma, face.threshold = (params["inference_img_size"], params["gaussian_sigma"],
                                                        params["heatmap_peak_thresh"])
    face.model = face_module.FaceNet()
    face.model.load_state_dict(load_pickle(path / "facenet.pth"))
    face.model.eval()
    return OpenposeDetector(net(Body, bodypose_model(), "body_pose_model.pth"),
                            net(Hand, handpose_model(), "hand_pose_model.pth"), face)


def _normalbae(path: Path):  # noqa: ANN202 - controlnet_aux.NormalBaeDetector
    """NormalBAE from scannet.pt (``{"model": state_dict}``), as controlnet-aux builds it."""
    import types

    from controlnet_aux.normalbae import NormalBaeDetector
    from controlnet_aux.normalbae.nets.NNET import NNET

    args = types.SimpleNamespace(mode="client", architecture="BN", pretrained="scannet", sampling_ratio=0.4,
                                 importance_ratio=0.7)
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):  # it prints while building
        warnings.simplefilter("ignore")
        model = NNET(args)
    state = load_pickle(path / "scannet.pt")["model"]
    model.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})
    return NormalBaeDetector(model.eval())


def _lineart(path: Path):  # noqa: ANN202 - controlnet_aux.LineartDetector
    from controlnet_aux.lineart import Generator, LineartDetector

    fine, coarse = Generator(3, 1, 3), Generator(3, 1, 3)
    fine.load_state_dict(load_pickle(path / "sk_model.pth"))
    coarse.load_state_dict(load_pickle(path / "sk_model2.pth"))
    return LineartDetector(fine.eval(), coarse.eval())


def read_annotator(kind: str, path: Path, device: Any) -> Any:  # noqa: ANN401 - a torch.device or str -> models
    """An annotator entry's network on ``device``: ``(model, processor)`` for the transformers
    kinds, controlnet-aux's detector for the others. Raises ModelError (one line)."""
    import torch

    device = torch.device(device)
    try:
        if kind == "transformers-depth":
            from transformers import AutoImageProcessor, AutoModelForDepthEstimation

            return (AutoModelForDepthEstimation.from_pretrained(path, use_safetensors=True, local_files_only=True).to(device),
                    AutoImageProcessor.from_pretrained(path))
        if kind == "transformers-seg":
            from transformers import AutoImageProcessor, AutoModelForSemanticSegmentation

            # openmmlab/upernet-convnext-small's main holds pytorch_model.bin: transformers reads it weights_only
            return (AutoModelForSemanticSegmentation.from_pretrained(path, local_files_only=True).to(device),
                    AutoImageProcessor.from_pretrained(path))
        controlnet_aux_module()
        if kind == "normalbae":
            return _normalbae(path).to(device)
        if kind == "openpose":
            return _openpose(path).to(device)
        if kind == "lineart":
            return _lineart(path).to(device)
        raise ModelError(f"unknown annotator kind {kind!r}")
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - a broken checkpoint is a model error, one line
        raise ModelError(f"{path}: cannot load {kind} annotator ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc


def read_captioner(path: Path, device: Any = "cpu") -> tuple[Any, Any]:  # noqa: ANN401 - a torch.device or str
    """BLIP (``BlipForConditionalGeneration``, ``BlipProcessor``) on ``device``."""
    from transformers import BlipForConditionalGeneration, BlipProcessor

    try:
        # Salesforce/blip-image-captioning-base's main holds pytorch_model.bin: read weights_only
        model = BlipForConditionalGeneration.from_pretrained(path, local_files_only=True).to(device)
        return model, BlipProcessor.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001
        raise ModelError(f"{path}: cannot load the captioner ({type(exc).__name__})") from exc
