"""CAMOUFLaGE-Base: five ControlNets (depth, normal, seg, pose, lineart) plus the
identity-function (IDF) ControlNet's negative guidance on Stable Diffusion 1.5, img2img.

Modules, in data-flow order:
  annotators.py  the five control images (controlnet-aux / transformers) and the BLIP captioner
  pipeline.py    CamouflageBasePipeline (all branches in one batched UNet call per step)
  anonymizer.py  BaseAnonymizer: crops around regions, one batch per frame, feathered paste back
  train.py       ``camstream train idf``: the IDF ControlNet, SD frozen
  tiny.py        random models in the publishers' formats, for tests

The names below are shared with light-weight modules (``models check``, the video method's
planning), so they live here: importing this package imports neither torch nor diffusers.
"""

CONTROLS = ("depth", "normal", "seg", "pose", "lineart")  # the five positive controls of Base, in order
IDF = "idf_controlnet"  # trained by `camstream train idf`; optional: without it Base runs at a_s = 1
BASE_MODELS = ("sd15", "vae", *(f"controlnet_{c}" for c in CONTROLS))  # required
