"""FACER's face-attribute model, built with its authors' own package (pyfacer, MIT) and read
from the file they publish (``face_attribute.farl.celeba.pt``, FACER's GitHub release
models-v1: a plain state dict of ``facer.farl.farl_classification(num_classes=40, layers=[11])``).

The model is a FaRL ViT-B/16 without ``ln_post``/``proj`` whose head
(``VITClassificationHeadV0``) mixes the LayerNorm'd mean, max and CLS features of layer 11
with softmax weights. Running it on aligned faces is camouflage/light/facer.py's
:class:`~camouflage.light.facer.FacerAttributeModel`.

pyfacer's ``farl_classification()`` and ``FACTransformer.__init__`` call ``.cuda()``: here the
same modules are put together on the CPU (:func:`build_attribute_net`), with the sizes read
from the state dict, so a tiny random file in the same format loads through the same code.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from streamer.errors import ModelError

FILE = "face_attribute.farl.celeba.pt"
HEAD_DIM = 64


def _facer():  # noqa: ANN202 - the pyfacer modules the attribute path uses
    import warnings

    try:
        with warnings.catch_warnings():  # pyfacer imports timm.models.layers (deprecated alias)
            warnings.simplefilter("ignore", FutureWarning)
            from facer.face_attribute.farl import get_std_points_xray
            from facer.farl.classification import FACTransformer, VITClassificationHeadV0, add_method, get_clip_encode_func
            from facer.farl.model import VisualTransformer
            from facer.transform import get_face_align_matrix, make_tanh_warp_grid
    except ImportError as exc:
        raise ModelError(f"FACER needs pyfacer (pip install --no-deps pyfacer==0.0.5 validators): {exc}") from None
    return {"VisualTransformer": VisualTransformer, "FACTransformer": FACTransformer, "head": VITClassificationHeadV0,
            "add_method": add_method, "encode": get_clip_encode_func, "std_points": get_std_points_xray,
            "align": get_face_align_matrix, "grid": make_tanh_warp_grid}


def _sizes(state: dict[str, torch.Tensor]) -> dict[str, int]:
    width, _, patch, _ = state["backbone.conv1.weight"].shape
    grid = round((state["backbone.positional_embedding"].shape[0] - 1) ** 0.5)
    layers = 1 + max(int(k.split(".")[3]) for k in state if k.startswith("backbone.transformer.resblocks."))
    return {"width": width, "patch": patch, "resolution": grid * patch, "layers": layers,
            "features": state["head.weights"].shape[1] // 3, "classes": state["head.final_fc.weight"].shape[0]}


def build_attribute_net(width: int = 768, patch: int = 16, resolution: int = 224, layers: int = 12,
                        features: int = 1, classes: int = 40) -> nn.Module:
    """pyfacer's ``farl_classification(classes, layers=[last features layers])`` on the CPU."""
    f = _facer()
    backbone = f["VisualTransformer"](input_resolution=resolution, patch_size=patch, width=width, layers=layers,
                                      heads=max(1, width // HEAD_DIM), output_dim=512)
    del backbone.proj
    del backbone.ln_post
    picked = list(range(layers - features, layers))  # FACER celeba/224: [11]
    f["add_method"](backbone, "forward", f["encode"](picked))
    head = f["head"](num_features=features, channel=width, num_labels=classes, norm=True)
    net = f["FACTransformer"].__new__(f["FACTransformer"])  # its __init__ calls .cuda()
    nn.Module.__init__(net)
    net.backbone, net.head = backbone, head
    return net.float()


def load_attribute_net(path: str | Path) -> tuple[nn.Module, int]:
    """The attribute net (eval mode) and its input resolution, from the folder holding
    ``face_attribute.farl.celeba.pt`` (or the file)."""
    from .manifest import load_pickle

    file = Path(path)
    file = file / FILE if file.is_dir() else file
    try:
        state = load_pickle(file)
        sizes = _sizes(state)
        net = build_attribute_net(**sizes)
        net.load_state_dict(state)
    except ModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - missing, truncated or another model's file: one line
        raise ModelError(f"FACER attribute model {file}: cannot load ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0][:160] if str(exc) else ''})") from None
    if sizes["classes"] != 40:
        raise ModelError(f"FACER attribute model {file}: {sizes['classes']} classes, expected the 40 CelebA attributes")
    return net.eval(), sizes["resolution"]


def random_state(width: int = 64, patch: int = 8, resolution: int = 32, layers: int = 2, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random-weight state dict in the published file's exact format (key names, fp32),
    built by pyfacer's own modules; tiny by default, FACER's sizes with (768, 16, 224, 12)."""
    torch.manual_seed(seed)
    net = build_attribute_net(width, patch, resolution, layers, features=1, classes=40)
    with torch.no_grad():  # the head's mixing weights start equal: make them differ
        net.head.weights.normal_(0, 1)
    return {k: v.contiguous() for k, v in net.state_dict().items()}
