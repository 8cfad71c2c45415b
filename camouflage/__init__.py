"""CAMOUFLaGE (arXiv 2403.14790) as diffusers pipelines, laid out by job; imports run down
this list only (models/ imports neither inference nor training; inference never imports
training; tests/test_imports.py checks both):

  models/       model management: configs/models.yaml, the manifest names, the publishers'
                file formats, loaders, ``camstream models list|fetch|check|import|make-tiny``
  inference:
    base/       CAMOUFLaGE-Base (multi-ControlNet + IDF negative guidance)
    light/      CAMOUFLaGE-Light (IP-Adapter + T2I-Adapter)
    video/      the video method (Base keyframes, Light in between) and the compositor
    blind.py, masked.py, guidance.py   identity-blind conditioning, masked img2img, guidance
    speed.py, schedulers.py            LCM-LoRA / TAESD; the samplers
    device.py, memory.py               devices, dtypes, seeds; out-of-memory policy
  training/     the shared loop, the shards (``camstream data prepare``), both trainers,
                ``camstream train``
"""
