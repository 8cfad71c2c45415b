"""``camstream train NAME`` and ``camstream data prepare``.

Registered by streamer/cli.py through :func:`register`. Trainers plug in with one line in
:data:`TRAINERS`: a module exposing ``add_arguments(parser)`` and ``main(args) -> int``
(keep its top-level imports light: the parser is built on every ``camstream`` call).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class Trainer:
    module: str  # has main(args) -> int (and add_arguments(parser) unless ``arguments`` names another module)
    help: str
    arguments: str | None = None  # a torch-free module with add_arguments(parser): the parser is built on every call


TRAINERS: dict[str, Trainer] = {
    "idf": Trainer("camouflage.training.idf", "train the identity-function (IDF) ControlNet of CAMOUFLaGE-Base"),
    "light": Trainer("camouflage.training.light", "train CAMOUFLaGE-Light's IP-Adapter and T2I-Adapter jointly (SD frozen)",
                     "camouflage.training.light_args"),
}


def register(sub: argparse._SubParsersAction) -> None:
    t = sub.add_parser("train", help="train the CAMOUFLaGE components (GPU recommended)")
    tsub = t.add_subparsers(dest="train_command", metavar="MODEL")
    tsub.required = True
    for name, trainer in TRAINERS.items():
        p = tsub.add_parser(name, help=trainer.help)
        importlib.import_module(trainer.arguments or trainer.module).add_arguments(p)
        p.set_defaults(func=_run_trainer(trainer))

    from .data.cli import register as register_data

    register_data(sub)


def _run_trainer(trainer: Trainer):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(trainer.module).main(args) or 0)

    return run
