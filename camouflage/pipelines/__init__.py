"""Diffusers-style pipelines: ``CamouflageBasePipeline`` (base.py); Light lives in camouflage/light/.

Names shared with light-weight modules live here, so that checking for models does not
import torch or diffusers.
"""

CONTROLS = ("depth", "normal", "seg", "pose", "lineart")  # the five positive controls of Base, in order
IDF = "idf_controlnet"  # trained by `camstream train idf`; optional: without it Base runs at a_s = 1
BASE_MODELS = ("sd15", "vae", *(f"controlnet_{c}" for c in CONTROLS))  # required
