"""Light's models by manifest name (configs/models.yaml, sections ``light`` and ``public``,
plus the shared ``sd15`` and ``vae``), resolved by :class:`camouflage.manifest.ModelResolver`:
``--models-dir DIR/<name>``, then the cache, then the hub unless offline. A missing
model is one :class:`~streamer.errors.ModelError` line naming all of them.

FaRL resolves to the transformers folder converted at load time beside its published
``.pth`` (:func:`camouflage.light.farl.converted_folder`), so whatever reads
``paths[FARL]`` reads a ``CLIPVisionModelWithProjection`` folder.
"""

from __future__ import annotations

from pathlib import Path

SD15 = "sd15"
VAE = "vae"
FARL = "farl"
FACER_ATTRIBUTES = "facer_attributes"
IP_ADAPTER = "ip_adapter_light"
T2I_ADAPTER = "t2i_adapter_light"
LIGHT_MODELS = (SD15, VAE, FARL, FACER_ATTRIBUTES, IP_ADAPTER, T2I_ADAPTER)
CAMOUFLAGE_ADAPTERS = (FARL, FACER_ATTRIBUTES, IP_ADAPTER, T2I_ADAPTER)  # trained Light (light.adapters: camouflage)

IP_ADAPTER_WEIGHTS = "ip-adapter_light.safetensors"

# the public adapters (light.adapters: public): IP-Adapter plus-face + Base's openpose ControlNet
IP_ADAPTER_PLUS = "ip_adapter_plus_face"
IP_ADAPTER_PLUS_SUBFOLDER = "models"
IP_ADAPTER_PLUS_WEIGHTS = "ip-adapter-plus-face_sd15.safetensors"
IP_ADAPTER_PLUS_ENCODER = "image_encoder"  # under models/: CLIP ViT-H/14
POSE_CONTROLNET = "controlnet_pose"
POSE_ANNOTATOR = "annotator_pose"
PUBLIC_MODELS = (SD15, VAE, IP_ADAPTER_PLUS, POSE_CONTROLNET, POSE_ANNOTATOR)


def resolve_models(models_dir: str | Path | None, names=LIGHT_MODELS, offline: bool | None = None) -> dict[str, Path]:  # noqa: ANN001
    """``{name: folder}`` for ``names``; raises ModelError (exit code 5) naming every missing one."""
    from camouflage.manifest import ModelResolver

    resolver = ModelResolver(models_dir=models_dir, offline=offline)
    paths = resolver.resolve_many(names)
    resolver.warn_if_random()
    if FARL in paths:
        from .farl import converted_folder

        paths[FARL] = converted_folder(paths[FARL])
    return paths
