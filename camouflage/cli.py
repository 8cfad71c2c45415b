"""``camstream models list|fetch|make-tiny``, ``camstream train NAME`` and ``camstream data prepare``.

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
    module: str  # has main(args) -> int (and add_arguments(parser) unless ``arguments`` names another module)
    help: str
    arguments: str | None = None  # a torch-free module with add_arguments(parser): the parser is built on every call


TRAINERS: dict[str, Trainer] = {
    "idf": Trainer("camouflage.training.idf", "train the identity-function (IDF) ControlNet of CAMOUFLaGE-Base"),
    "light": Trainer("camouflage.light.train", "train CAMOUFLaGE-Light's IP-Adapter and T2I-Adapter jointly (SD frozen)",
                     "camouflage.light.train_args"),
}


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list, fetch or fake the diffusion models (configs/models.yaml)")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    p = msub.add_parser("list", help="every model in the manifest and whether it is available here")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout")
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("fetch", help="download models (NAMES: models, sections or methods, e.g. 'base')",
                        description="Download models from the hub, by method, manifest section or model name.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _epilog_on_help(p, _fetch_names)  # the manifest is read for --help only
    p.add_argument("names", nargs="+", metavar="NAMES", help="methods, sections or models of configs/models.yaml (listed below)")
    p.add_argument("--models-dir", metavar="DIR", help="download into DIR/<name> instead of the HF cache")
    p.set_defaults(func=cmd_fetch)
    p = msub.add_parser(
        "make-tiny", help="write tiny RANDOM-weight models for every manifest entry (tests, demos)",
        description="Write tiny models with RANDOM weights in the manifest layout: checks an install offline; the output is noise.",
        epilog="run them small, or they are slow for nothing: at the default 768 px and 25 steps one image through a\n"
        "tiny Base took 200 s on a 2-core CPU, at 64 px and 4 steps 18 s:\n"
        "  camstream run photo.jpg --method base --models-dir DIR --set base.resolution=64 --set base.steps=4\n"
        "  camstream run clip.mp4 --method camouflage --models-dir DIR --set base.resolution=64 --set base.steps=4 \\\n"
        "      --set light.resolution=64 --set light.steps=4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("dir", metavar="DIR", help="folder to write the tiny set into (use it as --models-dir DIR)")
    p.add_argument("--resolution", type=int, default=64, help="resolution the tiny set is meant for (default 64; run at it)")
    p.set_defaults(func=cmd_make_tiny)

    t = sub.add_parser("train", help="train the CAMOUFLaGE components (GPU recommended)")
    tsub = t.add_subparsers(dest="train_command", metavar="MODEL")
    tsub.required = True
    for name, trainer in TRAINERS.items():
        p = tsub.add_parser(name, help=trainer.help)
        importlib.import_module(trainer.arguments or trainer.module).add_arguments(p)
        p.set_defaults(func=_run_trainer(trainer))

    from .data.cli import register as register_data

    register_data(sub)


def _epilog_on_help(parser: argparse.ArgumentParser, epilog) -> None:  # noqa: ANN001 - () -> str
    format_help = parser.format_help

    def lazy() -> str:
        parser.epilog = epilog()
        return format_help()

    parser.format_help = lazy  # type: ignore[method-assign]


def _fetch_names() -> str:
    """The names ``models fetch`` takes, from the manifest (YAML only: cheap at parse time)."""
    from .manifest import load_manifest
    from .methods import METHODS

    try:
        manifest = load_manifest()
    except Exception as exc:  # noqa: BLE001 - a broken manifest must not break --help
        return f"(the manifest could not be read: {exc})"
    lines = ["methods (everything the method loads):", "  " + ", ".join(METHODS), "sections and their models:"]
    lines += [f"  {section}: {', '.join(names)}" for section, names in manifest.sections.items()]
    return "\n".join(lines)


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
    print(f"{root}: tiny models with RANDOM WEIGHTS written (for tests and demos only; output is noise); run them at "
          f"--set base.resolution={args.resolution} --set base.steps=4 (and light.*): see 'camstream models make-tiny --help'")
    return 0
