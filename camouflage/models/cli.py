"""``camstream models list|fetch|check|import|make-tiny``.

Registered by streamer/cli.py through :func:`register` (``camstream train`` and
``camstream data`` are camouflage/training/cli.py's). Its top-level imports stay light: the
parser is built on every ``camstream`` call.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    m = sub.add_parser("models", help="list, fetch or fake the diffusion models (configs/models.yaml)")
    msub = m.add_subparsers(dest="models_command", metavar="ACTION")
    msub.required = True
    p = msub.add_parser("list", help="every model in the manifest and whether it is available here")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout")
    p.set_defaults(func=cmd_list)
    p = msub.add_parser("fetch", help="download models (NAMES: models, sections or methods, e.g. 'camouflage'); "
                                      "every entry is checked before anything downloads",
                        description="Download models from the hub, by method, manifest section or model name; every entry "
                                    "is checked before anything downloads.",
                        formatter_class=argparse.RawDescriptionHelpFormatter)
    _epilog_on_help(p, _fetch_names)  # the manifest is read for --help only
    p.add_argument("names", nargs="+", metavar="NAMES", help="methods, sections or models of configs/models.yaml (listed below)")
    p.add_argument("--models-dir", metavar="DIR", help="download into DIR/<name> (the publishers' layout, locked in "
                                                      "DIR/camstream.lock.json) instead of the HF cache")
    p.set_defaults(func=cmd_fetch)
    p = msub.add_parser("check", help="per model: present, unchanged since fetched, loads; per method: ready or not "
                                      "(exit 0 only when METHOD is ready)")
    p.add_argument("method", nargs="?", metavar="METHOD", help="the method that must be ready (default: camouflage)")
    p.add_argument("--models-dir", metavar="DIR", help="folder in the manifest layout")
    p.add_argument("--no-load", action="store_true", help="do not load the weights (presence and hashes only)")
    p.set_defaults(func=cmd_check)
    p = msub.add_parser("import", help="put a file you obtained yourself (e.g. FaRL's .pth) in place, after checking it loads")
    p.add_argument("name", metavar="NAME", help="the manifest entry, e.g. farl")
    p.add_argument("path", metavar="PATH", help="the publisher's file (or a folder of its files)")
    p.add_argument("--models-dir", metavar="DIR", help="default: $CAMSTREAM_MODELS or ~/.cache/camstream/models")
    p.set_defaults(func=cmd_import)
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


def cmd_list(args: argparse.Namespace) -> int:
    from .manifest import RANDOM_MARKER, ModelResolver, read_lock

    resolver = ModelResolver(models_dir=args.models_dir, offline=True)
    if resolver.random_weights:
        print(f"WARNING: {args.models_dir} holds RANDOM WEIGHTS ({RANDOM_MARKER}): output is noise")
    lock = read_lock(resolver.models_dir) if resolver.models_dir else {}
    rows = [("name", "section", "size", "licence", "here", "source")]
    for e in resolver.manifest:
        path = resolver.find(e.name)
        rows.append((e.name, e.section, entry_size(e, path, lock.get(e.name)), e.licence,
                     str(path) if path else "missing", e.where))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + "  " + r[5])
    return 0


def entry_size(entry, path: Path | None, record: dict | None) -> str:  # noqa: ANN001 - a ModelEntry
    """What ``models list`` says of an entry's size: exact when its files are here (or were
    locked at fetch), else the sizes its publisher's page lists (marked as such), else that
    nobody knows yet. Never a guess."""
    from .manifest import entry_files, human_size

    if path is not None:
        files = entry_files(entry, path)
        if files:
            return human_size(sum(f.stat().st_size for f in files))
    if record and record.get("files"):
        return human_size(sum(f["size"] for f in record["files"].values())) + " (locked)"
    if entry.size:
        return human_size(entry.size) + " (published)"
    if entry.listed_sizes:
        return f"~{human_size(entry.listed_bytes)} (listed)"
    return "size unknown until " + {"trained": "trained", "manual": "imported"}.get(entry.source, "fetched")


def cmd_fetch(args: argparse.Namespace) -> int:
    from .manifest import ModelResolver

    into = Path(args.models_dir) if args.models_dir else None
    resolver = ModelResolver(models_dir=into)
    names = _expand(resolver, args.names)
    todo, skipped = resolver.plan_fetch(names, explicit=required_entries(resolver.manifest, args.names))
    for line in skipped:
        print(f"skipped: {line}")
    for name in todo:
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


def required_entries(manifest, names: list[str]) -> list[str]:  # noqa: ANN001 - Manifest
    """Entries named directly, or optional ones a named method cannot do without."""
    from .methods import METHODS

    out = [n for n in names if n in manifest.entries]
    for name in names:
        if name in METHODS:
            out += [n for s in METHODS[name].strict for n in manifest.sections.get(s, [])]
    return out


def cmd_check(args: argparse.Namespace) -> int:
    from .check import run_check

    return run_check(args.models_dir, args.method, load=not args.no_load)


def cmd_import(args: argparse.Namespace) -> int:
    from .check import import_file
    from .manifest import default_local_dir

    target = import_file(args.models_dir or default_local_dir(), args.name, args.path)
    print(f"{args.name}: {target}")
    return 0


def cmd_make_tiny(args: argparse.Namespace) -> int:
    from streamer.extras import require

    require("models make-tiny", "diffusion", "light")  # pyfacer is needed too: say so before writing anything
    from .tiny import make_tiny

    root = make_tiny(args.dir, resolution=args.resolution)
    print(f"{root}: tiny models with RANDOM WEIGHTS written (for tests and demos only; output is noise); run them at "
          f"--set base.resolution={args.resolution} --set base.steps=4 (and light.*): see 'camstream models make-tiny --help'")
    return 0
