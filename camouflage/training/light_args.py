"""``camstream train light``'s arguments, apart from the trainer: the parser is built on
every ``camstream`` call and must not import torch."""

from __future__ import annotations

import argparse

from .loop import add_common_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamer.config import LightConfig

    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout (sd15, vae, farl)")
    p.add_argument("--output", required=True, metavar="DIR", help="checkpoints, loss.csv, validation/ and the trained adapters")
    add_common_arguments(p, lr=1e-4, resolution=LightConfig().resolution, what=" --light")
    p.add_argument("--drop-rate", type=float, default=0.05, help="probability to drop each condition (map, identity, caption)")
    p.add_argument("--strength", type=float, default=0.6, help="img2img strength of the validation images (default 0.6)")
