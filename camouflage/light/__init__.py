"""CAMOUFLaGE-Light: IP-Adapter (FaRL identity embedding) + T2I-Adapter (41-channel
FACER attribute/keypoint map) on a frozen Stable Diffusion 1.5, img2img.

Modules, in data-flow order:
  attributes.py     FaRL encoder, FACER-style 40 CelebA attributes, face keypoints
  attribute_map.py  the 41-channel map (per-face regions, z-buffered by box area)
  adapters.py       T2IAdapter(in_channels=41) and the IP-Adapter in diffusers' layout
  pipeline.py       CamouflageLightPipeline (img2img + negative identity guidance)
  anonymizer.py     LightAnonymizer: crops around regions, paste back, per-track identity
  train.py          ``camstream train light``: both adapters jointly, SD frozen
  tiny.py           tiny random models in the manifest layout, for tests
"""
