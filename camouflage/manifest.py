"""The model manifest (configs/models.yaml) and the one loader that finds a model's files.

Resolution order for a manifest entry ``name``:

1. ``--models-dir DIR``: the folder ``DIR/name`` (same files as the hub repo);
2. the Hugging Face cache (``huggingface_hub``, ``local_files_only=True``; honours
   ``HF_HUB_CACHE``/``HF_HOME`` at call time);
3. the hub, unless offline (``HF_HUB_OFFLINE=1`` or ``models.offline: true``).

Diffusion weights are safetensors only: a folder that holds a pickle (.bin/.pt/.ckpt)
where safetensors are required is refused, never loaded.

>>> manifest = load_manifest()
>>> path = ModelResolver(manifest, models_dir="models").resolve("vae")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamer.errors import ModelError

MANIFEST_PATH = Path(__file__).resolve().parent.parent / "configs" / "models.yaml"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
RANDOM_MARKER = "RANDOM_WEIGHTS.txt"


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint: where it lives on the hub and how it is loaded."""

    name: str
    section: str
    repo: str
    revision: str
    kind: str
    files: tuple[str, ...]
    format: str = "safetensors"  # "safetensors" | "pickle" (annotator .pth only)
    licence: str = "unknown"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def pinned(self) -> bool:
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)


@dataclass
class Manifest:
    entries: dict[str, ModelEntry]

    def __getitem__(self, name: str) -> ModelEntry:
        try:
            return self.entries[name]
        except KeyError:
            raise ModelError(f"{name!r} is not in the model manifest (known: {', '.join(self.entries)})") from None

    def __iter__(self):  # noqa: ANN204
        return iter(self.entries.values())

    @property
    def sections(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for e in self.entries.values():
            out.setdefault(e.section, []).append(e.name)
        return out

    def expand(self, names: Iterable[str]) -> list[str]:
        """Entry names from a mix of entry names, section names and method names."""
        from .methods import METHODS

        out: list[str] = []
        for name in names:
            if name in self.entries:
                found = [name]
            elif name in METHODS:  # a method: everything it loads (before the section of the same name)
                found = [n for s in METHODS[name].models for n in (self.sections.get(s) or [s])]
            elif name in self.sections:
                found = self.sections[name]
            else:
                known = ", ".join([*METHODS, *self.sections])
                raise ModelError(f"{name!r} is neither a model, a section nor a method (try: {known})")
            out += [n for n in found if n not in out]
        return out


_KNOWN_KEYS = {"repo", "revision", "kind", "files", "format", "licence", "note"}


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read configs/models.yaml (or ``path``): ``section: {name: {repo, revision, ...}}``."""
    path = Path(path) if path else MANIFEST_PATH
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ModelError(f"{path}: cannot read the model manifest ({exc})") from None
    entries: dict[str, ModelEntry] = {}
    for section, models in data.items():
        for name, spec in (models or {}).items():
            if name in entries:
                raise ModelError(f"{path}: model {name!r} appears twice")
            missing = {"repo", "kind", "files"} - set(spec)
            if missing:
                raise ModelError(f"{path}: model {name!r} lacks {', '.join(sorted(missing))}")
            if spec.get("format", "safetensors") not in ("safetensors", "pickle"):
                raise ModelError(f"{path}: model {name!r}: format must be safetensors or pickle")
            entries[name] = ModelEntry(
                name=name,
                section=section,
                repo=spec["repo"],
                revision=str(spec.get("revision", "main")),
                kind=spec["kind"],
                files=tuple(spec["files"]),
                format=spec.get("format", "safetensors"),
                licence=str(spec.get("licence", "unknown")),
                note=str(spec.get("note", "")),
                extra={k: v for k, v in spec.items() if k not in _KNOWN_KEYS},
            )
    return Manifest(entries)


def hub_offline(offline: bool | None = None) -> bool:
    """``offline`` when given, else ``HF_HUB_OFFLINE`` read now (not at import time)."""
    if offline is not None:
        return offline
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def hub_cache_dir() -> str | None:
    """The HF cache folder from the environment, read now (tests point it elsewhere)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return str(Path(os.environ["HF_HOME"]) / "hub")
    return None


def missing_message(names: Iterable[str], why: str = "", fetch_as: str | None = None) -> str:
    """The ONE line a user sees when models are missing (exit code 5)."""
    names = list(names)
    why = f" ({why})" if why else ""
    return (
        f"model(s) not found: {', '.join(names)}{why}; run `camstream models fetch {fetch_as or ' '.join(names)}` "
        "(needs the hub) or pass --models-dir, or use a method without models, e.g. --method pixelate"
    )


def _matches(folder: Path, pattern: str) -> bool:
    return any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern) for p in folder.rglob("*") if p.is_file())


def check_files(entry: ModelEntry, folder: Path) -> list[str]:
    """Patterns of ``entry.files`` with no match in ``folder`` (empty: complete).

    A tiny random stand-in (written by make-tiny) declares its own files in
    ``camstream_tiny.json``; it is then complete when those exist.
    """
    if (folder / "camstream_tiny.json").exists():
        import json

        declared = json.loads((folder / "camstream_tiny.json").read_text()).get("files", [])
        return [f for f in declared if not (folder / f).exists()]
    return [pattern for pattern in entry.files if not _matches(folder, pattern)]


def refuse_pickles(entry: ModelEntry, folder: Path) -> None:
    """Diffusion weights must be safetensors: refuse a folder that offers a pickle instead."""
    if entry.format != "safetensors":
        return
    pickles = [p for p in folder.rglob("*") if p.suffix in PICKLE_SUFFIXES and p.is_file()]
    for p in pickles:
        siblings = list(p.parent.glob("*.safetensors"))
        if not siblings:
            raise ModelError(
                f"{entry.name}: {p.relative_to(folder)} is a pickle; camstream loads diffusion weights "
                "from safetensors only (convert it, or fetch the .safetensors files)"
            )


_WARNED_RANDOM: set[Path] = set()


class ModelResolver:
    """Finds each manifest entry's folder: --models-dir, then HF cache, then hub."""

    def __init__(self, manifest: Manifest | None = None, models_dir: str | Path | None = None,
                 offline: bool | None = None) -> None:
        self.manifest = manifest or load_manifest()
        self.models_dir = Path(models_dir) if models_dir else None
        self.offline = offline
        self.random_weights = bool(self.models_dir and (self.models_dir / RANDOM_MARKER).exists())

    def warn_if_random(self) -> None:
        """Logs once per process and folder that it holds tiny random models (make-tiny)."""
        if self.random_weights and self.models_dir not in _WARNED_RANDOM:
            _WARNED_RANDOM.add(self.models_dir)
            import logging

            logging.getLogger("camstream").warning(
                "RANDOM WEIGHTS: %s holds tiny random models (%s); the output is noise, not anonymized faces",
                self.models_dir, RANDOM_MARKER)

    def find(self, name: str) -> Path | None:
        """The folder holding ``name``'s files, or None. Never downloads."""
        entry = self.manifest[name]
        if self.models_dir is not None:
            local = self.models_dir / name
            if local.is_dir() and not check_files(entry, local):
                return local
        return self._from_cache(entry)

    def resolve(self, name: str) -> Path:
        """The folder holding ``name``'s files; downloads when online. Raises ModelError."""
        return self.resolve_many([name])[name]

    def resolve_many(self, names: Iterable[str], fetch_as: str | None = None) -> dict[str, Path]:
        """Resolve all ``names``; one ModelError naming every missing one (and ``fetch_as``,
        a method or section name, as what to fetch)."""
        found: dict[str, Path] = {}
        missing: list[str] = []
        for name in names:
            path = self.find(name)
            if path is None and not hub_offline(self.offline):
                path = self._download(self.manifest[name])
            if path is None:
                missing.append(name)
            else:
                refuse_pickles(self.manifest[name], path)
                found[name] = path
        if missing:
            why = "offline" if hub_offline(self.offline) else "not on the hub"
            raise ModelError(missing_message(missing, why, fetch_as))
        return found

    def _from_cache(self, entry: ModelEntry) -> Path | None:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(entry.repo, revision=entry.revision, allow_patterns=list(entry.files),
                                          cache_dir=hub_cache_dir(), local_files_only=True))
        except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, or a cache in an odd state: not there
            return None
        return path if path.is_dir() and not check_files(entry, path) else None

    def _download(self, entry: ModelEntry, local_dir: Path | None = None) -> Path | None:
        from huggingface_hub import snapshot_download

        try:
            path = Path(snapshot_download(entry.repo, revision=entry.revision, allow_patterns=list(entry.files),
                                          cache_dir=hub_cache_dir(), local_dir=local_dir))
        except Exception:  # noqa: BLE001 - network, auth, missing repo: reported as missing
            return None
        return path if not check_files(entry, path) else None

    def fetch(self, name: str, into: Path | None = None) -> Path:
        """Download ``name`` (to the HF cache, or to ``into/name`` in the manifest layout)."""
        entry = self.manifest[name]
        if hub_offline(self.offline):
            raise ModelError(f"cannot fetch {name}: HF_HUB_OFFLINE is set (unset it on a machine with network access)")
        path = self._download(entry, local_dir=(into / name) if into else None)
        if path is None:
            raise ModelError(f"cannot fetch {name} from {entry.repo}@{entry.revision} (network, or files missing: {', '.join(entry.files)})")
        refuse_pickles(entry, path)
        return path
