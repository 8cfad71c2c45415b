"""CAMOUFLaGE-Light: IP-Adapter (FaRL identity embedding) + T2I-Adapter (41-channel
FACER attribute/keypoint map) on a frozen Stable Diffusion 1.5, img2img; or, with the
public adapters, IP-Adapter plus-face (CLIP ViT-H) + the openpose ControlNet.

Modules, in data-flow order:
  farl.py           FaRL's published .pth -> CLIPVisionModelWithProjection (at load time)
  facer.py          FACER's attribute model (pyfacer's modules, on the CPU), 5-point alignment
  attributes.py     FaRL encoder, FACER's 40 CelebA attributes, face keypoints
  attribute_map.py  the 41-channel map (per-face regions, z-buffered by box area)
  adapters.py       T2IAdapter(in_channels=41) and the IP-Adapter in diffusers' layout
  pipeline.py       CamouflageLightPipeline (img2img + negative identity guidance)
  anonymizer.py     LightAnonymizer: crops around regions, paste back, per-track identity
  train.py          ``camstream train light``: both adapters jointly, SD frozen
  loading.py        the manifest names Light resolves
  tiny.py           random models in the publishers' formats, for tests
"""
