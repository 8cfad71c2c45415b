"""``camstream models list|fetch|make-tiny`` and ``camstream train NAME``.

Registered by streamer/cli.py through :func:`register`. Trainers plug in with one line in
:data:`TRAINERS`: a module exposing ``add_arguments(parser)`` and ``main(args) -> int``
(keep its top-level imports light: the parser is built on every ``camstream`` call).
"""

from __future__ import annotations

import argparse
import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Trainer:
    module: str  # has add_arguments(parser) and main(args) -> int
    help: str


TRAINERS: dict[str, Trainer] = {
    "idf": Trainer("camouflage.training.idf", "train the identity-function (IDF) ControlNet of CAMOUFLaGE-Base"),
    "light": Trainer("camouflage.light.train", "train CAMOUFLaGE-Light's IP-Adapter and T2I-Adapter jointly (SD frozen)"),
}


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list, fetch or fake the diffusion models (configs/models.yaml)")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    p = msub.add_parser("list", help="every model in the manifest and whether it is available here")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout")
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("fetch", help="download models (NAMES: models, sections or methods, e.g. 'base')")
    p.add_argument("names", nargs="+", metavar="NAMES")
    p.add_argument("--models-dir", metavar="DIR", help="download into DIR/<name> instead of the HF cache")
    p.set_defaults(func=cmd_fetch)
    p = msub.add_parser("make-tiny", help="write tiny RANDOM-weight models for every manifest entry (tests, demos)")
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--resolution", type=int, default=64, help="resolution the tiny set is meant for (default 64)")
    p.set_defaults(func=cmd_make_tiny)

    t = sub.add_parser("train", help="train the CAMOUFLaGE components (GPU recommended)")
    tsub = t.add_subparsers(dest="train_command", metavar="MODEL")
    tsub.required = True
    for name, trainer in TRAINERS.items():
        p = tsub.add_parser(name, help=trainer.help)
        importlib.import_module(trainer.module).add_arguments(p)
        p.set_defaults(func=_run_trainer(trainer))


def _run_trainer(trainer: Trainer):  # noqa: ANN202
    def run(args: argparse.Namespace) -> int:
        return int(importlib.import_module(trainer.module).main(args) or 0)

    return run


def cmd_list(args: argparse.Namespace) -> int:
    from .manifest import RANDOM_MARKER, ModelResolver

    resolver = ModelResolver(models_dir=args.models_dir, offline=True)
    if resolver.random_weights:
        print(f"WARNING: {args.models_dir} holds RANDOM WEIGHTS ({RANDOM_MARKER}): output is noise")
    rows = [("name", "section", "repo@revision", "licence", "here")]
    for e in resolver.manifest:
        path = resolver.find(e.name)
        rev = e.revision if e.pinned else f"{e.revision} (unpinned)"
        rows.append((e.name, e.section, f"{e.repo}@{rev}", e.licence, str(path) if path else "missing"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[4])
    return 0


def cmd_fetch(args: argparse.Namespace) -> int:
    from .manifest import ModelResolver

    resolver = ModelResolver(models_dir=None)
    into = Path(args.models_dir) if args.models_dir else None
    for name in _expand(resolver, args.names):
        path = resolver.fetch(name, into)
        print(f"{name}: {path}")
    return 0


def _expand(resolver, names: list[str]) -> list[str]:  # noqa: ANN001
    """An unknown name is bad usage (exit 2), not a missing model."""
    from streamer.errors import ConfigError, ModelError

    try:
        return resolver.manifest.expand(names)
    except ModelError as exc:
        raise ConfigError(str(exc)) from None


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from .tiny import make_tiny

    root = make_tiny(args.dir, resolution=args.resolution)
    print(f"{root}: tiny models with RANDOM WEIGHTS written (for tests and demos only; output is noise)")
    return 0
