"""CAMOUFLaGE for video (``--method camouflage``) and the crop geometry its generators share.

  anonymizer.py  CamouflageVideoAnonymizer: one fake person per track, Base keyframes,
                 Light in between, within a latency budget on live streams
  compositor.py  crops in, generated crops back (feathered, colour-matched); also used by
                 Light alone and by ``camstream data prepare`` (training crops = inference crops)

Importing this package imports neither torch nor diffusers (the compositor is numpy + cv2).
"""
