"""CAMOUFLaGE-Light: IP-Adapter (FaRL identity embedding) + T2I-Adapter (41-channel
FACER attribute/keypoint map) on a frozen Stable Diffusion 1.5, img2img; or, with the
public adapters, IP-Adapter plus-face (CLIP ViT-H) + the openpose ControlNet.

Modules, in data-flow order:
  facer.py          FACER's attribute model on aligned faces (5-point alignment)
  attributes.py     FaRL encoder, FACER's 40 CelebA attributes, face keypoints
  attribute_map.py  the 41-channel map (per-face regions, z-buffered by box area)
  pipeline.py       CamouflageLightPipeline (img2img + negative identity guidance)
  anonymizer.py     LightAnonymizer: crops around regions, paste back, per-track identity

The files, in camouflage/models/: names.py (the manifest names Light resolves),
farl.py (FaRL's published .pth -> CLIPVisionModelWithProjection), facer.py (FACER's
published file), adapters.py (the two adapters in the layouts diffusers loads),
tiny_light.py (random models in the publishers' formats, for tests).
``camstream train light`` is camouflage/training/light.py.
"""
