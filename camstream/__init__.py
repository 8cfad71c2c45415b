"""camstream: anonymize people in video files, images and live camera streams.

The command line lives in :mod:`streamer.cli`; the presets and the model manifest ship
here, in ``camstream/configs/`` (read through :mod:`streamer.presets`).
"""
