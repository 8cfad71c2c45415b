"""CAMOUFLaGE-Base: five ControlNets (depth, normal, seg, pose, lineart) plus the
identity-function (IDF) ControlNet's negative guidance on Stable Diffusion 1.5, img2img.

Modules, in data-flow order:
  annotators.py  the five control images (controlnet-aux / transformers) and the BLIP captioner
  pipeline.py    CamouflageBasePipeline (all branches in one batched UNet call per step)
  anonymizer.py  BaseAnonymizer: crops around regions, one batch per frame, feathered paste back

Base's manifest names (``CONTROLS``, ``IDF``, ``BASE_MODELS``) live in
camouflage/models/names.py; its files are read by camouflage/models/annotators.py, written
small by camouflage/models/tiny_base.py; ``camstream train idf`` is camouflage/training/idf.py.
Importing this package imports neither torch nor diffusers.
"""
