"""The manifest names (configs/models.yaml) the code refers to, and the few format facts
tied to them: Base's, Light's and the speed components'. Resolved by
:class:`camouflage.models.manifest.ModelResolver`: ``--models-dir DIR/<name>``, then the
cache, then the hub unless offline. A missing model is one
:class:`~streamer.errors.ModelError` line naming all of them.

Light's FaRL resolves to the transformers folder converted at load time beside its published
``.pth`` (:func:`camouflage.models.farl.converted_folder`), so whatever reads
``paths[FARL]`` reads a ``CLIPVisionModelWithProjection`` folder.

Importing this module imports neither torch nor diffusers: ``models check``, the video
method's planning and the tiny writers all read it.
"""

from __future__ import annotations

from pathlib import Path

# -- Base (camouflage/base/) -------------------------------------------------------------
CONTROLS = ("depth", "normal", "seg", "pose", "lineart")  # the five positive controls of Base, in order
IDF = "idf_controlnet"  # trained by `camstream train idf`; optional: without it Base runs at a_s = 1
BASE_MODELS = ("sd15", "vae", *(f"controlnet_{c}" for c in CONTROLS))  # required

# -- the speed components (camouflage/speed.py) ------------------------------------------
LCM_LORA = "lcm_lora_sd15"
TINY_VAE = "taesd"
LCM_LORA_WEIGHTS = "pytorch_lora_weights.safetensors"

# -- Light (camouflage/light/) -----------------------------------------------------------
SD15 = "sd15"
VAE = "vae"
FARL = "farl"
FACER_ATTRIBUTES = "facer_attributes"
IP_ADAPTER = "ip_adapter_light"
T2I_ADAPTER = "t2i_adapter_light"
LIGHT_MODELS = (SD15, VAE, FARL, FACER_ATTRIBUTES, IP_ADAPTER, T2I_ADAPTER)
CAMOUFLAGE_ADAPTERS = (FARL, FACER_ATTRIBUTES, IP_ADAPTER, T2I_ADAPTER)  # trained Light (light.adapters: camouflage)

IP_ADAPTER_WEIGHTS = "ip-adapter_light.safetensors"
MAP_CHANNELS = 41  # the trained T2I-Adapter's input: FACER's 40 attribute probabilities + 1 keypoint channel

# the public adapters (light.adapters: public): IP-Adapter plus-face + Base's openpose ControlNet
IP_ADAPTER_PLUS = "ip_adapter_plus_face"
IP_ADAPTER_PLUS_SUBFOLDER = "models"
IP_ADAPTER_PLUS_WEIGHTS = "ip-adapter-plus-face_sd15.safetensors"
IP_ADAPTER_PLUS_ENCODER = "image_encoder"  # under models/: CLIP ViT-H/14
POSE_CONTROLNET = "controlnet_pose"
POSE_ANNOTATOR = "annotator_pose"
PUBLIC_MODELS = (SD15, VAE, IP_ADAPTER_PLUS, POSE_CONTROLNET, POSE_ANNOTATOR)


def resolve_models(models_dir: str | Path | None, names=LIGHT_MODELS, offline: bool | None = None) -> dict[str, Path]:  # noqa: ANN001
    """Light's models: ``{name: folder}`` for ``names``; raises ModelError (exit code 5) naming every missing one."""
    from .manifest import ModelResolver

    resolver = ModelResolver(models_dir=models_dir, offline=offline)
    paths = resolver.resolve_many(names)
    resolver.warn_if_random()
    if FARL in paths:
        from .farl import converted_folder

        paths[FARL] = converted_folder(paths[FARL])
    return paths
