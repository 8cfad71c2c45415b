"""CAMOUFLaGE (arXiv 2403.14790) as diffusers pipelines.

  manifest.py, loaders.py     configs/models.yaml and the one resolver/loader of its entries
  cli.py, models_check.py     ``camstream models list|fetch|check|import|make-tiny``, ``camstream train``
  base/                       CAMOUFLaGE-Base (multi-ControlNet + IDF negative guidance)
  light/                      CAMOUFLaGE-Light (IP-Adapter + T2I-Adapter)
  video/                      the video method (Base keyframes, Light in between) and the compositor
  speed.py, device.py         LCM-LoRA / TAESD; devices, dtypes, seeds
  training.py, data/          what both trainers share; their shards (``camstream data prepare``)
  tiny.py                     ``make-tiny``: the shared tiny sd15/vae/speed models, then base/ and light/'s
"""
