"""The presets (``camstream run -c NAME``) and the model manifest, shipped as package data.

Read them through :mod:`streamer.presets`, never by a path relative to the source tree:
an installed wheel has no ``configs/`` folder beside its packages.
"""
