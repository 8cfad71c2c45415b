"""``camstream data prepare``'s parser, apart from the work: the parser is built on every
``camstream`` call and must not import numpy or torch."""

from __future__ import annotations

import argparse

DEFAULT_CAPTION = "a photo of a person"


def _main(args: argparse.Namespace) -> int:
    from .prepare import main

    return main(args)


def register(sub: argparse._SubParsersAction) -> None:
    """``camstream data prepare`` (called by camouflage/training/cli.py)."""
    d = sub.add_parser("data", help="prepare training data (webdataset shards) for camstream train")
    dsub = d.add_subparsers(dest="data_command", metavar="ACTION")
    dsub.required = True
    p = dsub.add_parser("prepare", help="face crops, captions (and Light's attributes) of images/videos -> tar shards")
    add_arguments(p)
    p.set_defaults(func=_main)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from streamer.config import BaseConfig, LightConfig

    p.add_argument("sources", nargs="+", metavar="SRC", help="image/video files or folders (searched recursively)")
    p.add_argument("--output", required=True, metavar="SHARDS", help="folder for train-*.tar, val-*.tar and info.json")
    p.add_argument("--models-dir", metavar="DIR", help="models for --light, --captioner, --latent-resolution")
    p.add_argument("--size", type=int, default=BaseConfig().resolution,
                   help=f"side of the stored crops in pixels (default {BaseConfig().resolution}, the inference size)")
    p.add_argument("--context", type=float, default=LightConfig().context, help="crop = face + this fraction of its size on each side")
    p.add_argument("--min-face", type=int, default=24, help="smaller faces give no sample of their own (pixels, default 24)")
    p.add_argument("--faces-only", action="store_true", help="skip frames without a face (default: their centre square)")
    p.add_argument("--frames-per-video", type=int, default=32, help="frames sampled evenly from each video (default 32)")
    p.add_argument("--caption", default=DEFAULT_CAPTION, help="caption when there is no NAME.txt (and no --captioner)")
    p.add_argument("--captioner", action="store_true", help="caption crops without a NAME.txt with the BLIP captioner")
    p.add_argument("--light", action="store_true", help="also store FACER attributes and FaRL embeddings (camstream train light)")
    p.add_argument("--latent-resolution", type=int, metavar="R", help="also store the crops' VAE latents at R pixels")
    p.add_argument("--holdout", type=float, default=0.02, help="fraction of samples held out in val-*.tar (default 0.02)")
    p.add_argument("--per-shard", type=int, default=1000, help="samples per tar shard (default 1000)")
    p.add_argument("--detector", default="libfacedetection", help="face detector (default libfacedetection)")
    p.add_argument("--device", default="auto", help="device of the models (auto: a GPU when there is one)")
