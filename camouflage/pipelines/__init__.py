"""Diffusers-style pipelines: ``CamouflageBasePipeline`` (base.py); Light lives in camouflage/light/.

Names shared with light-weight modules live here, so that checking for models does not
import torch or diffusers.
"""

CONTROLS = ("depth", "normal", "seg", "pose", "lineart")  # the five positive controls of Base, in order
BASE_MODELS = ("sd15", "vae", *(f"controlnet_{c}" for c in CONTROLS), "idf_controlnet")
