"""The model manifest (configs/models.yaml) and the one resolver that finds a model's files.

Every entry says where its files really come from (``source``):

* ``hub``: a Hugging Face repo at a revision (a commit, a PR ref such as ``refs/pr/1``, or
  ``main``: then the commit and file hashes a first fetch resolved are written to the
  models folder's lock file, ``camstream.lock.json``, and ``camstream models check``
  verifies them afterwards);
* ``url``: a publisher's download link (sha256 and size when known, else locked at first fetch);
* ``manual``: the publisher's links are gone; the user supplies the file
  (``camstream models import NAME PATH``), under the publisher's own file name;
* ``trained``: written by ``camstream train ...``; nobody publishes it.

``sizes`` gives, per file, the size its publisher's page lists (the hub's rounded "1.45 GB"):
informational, for ``camstream models list`` before anything is fetched. Exact sizes come
from the files themselves, or the lock file, once fetched; nothing else is ever shown.

Resolution order for an entry ``name``:

1. ``--models-dir DIR``: the folder ``DIR/name``, holding the files exactly as their
   publisher ships them (a hub repo's relative paths; a release file under its own name);
2. hub entries: the Hugging Face cache (``local_files_only``; ``HF_HUB_CACHE``/``HF_HOME``
   read at call time); other entries: the default local folder (``CAMSTREAM_MODELS``,
   else ``~/.cache/camstream/models``);
3. hub entries: the hub, unless offline (``HF_HUB_OFFLINE=1`` or ``models.offline: true``).

Diffusion weights are safetensors only: a folder that holds a pickle (.bin/.pt/.ckpt)
where safetensors are required is refused. Entries with ``format: pickle`` (annotators,
FACER, FaRL, the two transformers repos whose main holds only ``pytorch_model.bin``) are
read with ``torch.load(weights_only=True)``: tensors only, no code.

>>> manifest = load_manifest()
>>> path = ModelResolver(manifest, models_dir="models").resolve("vae")  # doctest: +SKIP
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from streamer.errors import ModelError
from streamer.presets import config_file

MANIFEST_PATH = config_file("models.yaml")  # package data (camstream/configs/)
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
RANDOM_MARKER = "RANDOM_WEIGHTS.txt"
LOCK_NAME = "camstream.lock.json"
SOURCES = ("hub", "url", "manual", "trained")
# onnx and torchscript: the detectors of --detect plates (tracking/plates.py), as their publishers ship them
FORMATS = ("safetensors", "pickle", "onnx", "torchscript")
# the hub lists sizes in decimal units ("1.45 GB", "723 MB", "98.2 MB", "560 Bytes")
SIZE_UNITS = {"B": 1, "Bytes": 1, "kB": 10**3, "KB": 10**3, "MB": 10**6, "GB": 10**9}


def parse_size(text: str) -> int:
    """Bytes of a size as a publisher's page lists it (``"1.45 GB"``); ValueError otherwise."""
    number, _, unit = str(text).strip().partition(" ")
    if unit not in SIZE_UNITS:
        raise ValueError(f"{text!r}: not a size like '1.45 GB' (units: {', '.join(SIZE_UNITS)})")
    value = float(number)
    if value < 0:
        raise ValueError(f"{text!r}: negative size")
    return round(value * SIZE_UNITS[unit])


def human_size(size: int) -> str:
    """Three significant digits in the hub's decimal units, so exact and listed sizes compare."""
    for unit, scale in (("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if size >= scale:
            value = size / scale
            return f"{value:.3g} {unit}" if value < 1000 else f"{value:.0f} {unit}"
    return f"{size} B"


@dataclass(frozen=True)
class ModelEntry:
    """One checkpoint: where its publisher ships it and how it is loaded."""

    name: str
    section: str
    kind: str
    files: tuple[str, ...]  # the publisher's file names (hub: paths in the repo; glob patterns allowed)
    source: str = "hub"  # hub | url | manual | trained
    repo: str = ""  # hub: owner/name
    revision: str = "main"  # hub: commit, refs/pr/N or main
    url: str = ""  # url: the download link (one file: files[0])
    sha256: str = ""  # url: the file's sha256 when published
    size: int = 0  # url: the file's exact size in bytes, when published
    listed_sizes: dict[str, str] = field(default_factory=dict, compare=False)  # file -> size as its page lists it
    hint: str = ""  # manual/trained: where the file comes from, one line
    optional: bool = False  # a method runs without it (Base without IDF, public Light adapters)
    format: str = "safetensors"  # "safetensors" | "pickle" (read with weights_only=True)
    licence: str = "unknown"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def pinned(self) -> bool:
        """A revision that cannot move: a commit hash (a PR ref can get new commits)."""
        return len(self.revision) == 40 and all(c in "0123456789abcdef" for c in self.revision)

    @property
    def listed_bytes(self) -> int:
        """The listed sizes added up (approximate: the hub rounds to 3 digits); 0 when none is listed."""
        return sum(parse_size(s) for s in self.listed_sizes.values())

    @property
    def fetchable(self) -> bool:
        return self.source in ("hub", "url")

    @property
    def where(self) -> str:
        """The source in one line, as ``models list`` prints it."""
        if self.source == "hub":
            if self.pinned:
                return f"hub {self.repo}@{self.revision[:12]} (pinned)"
            return f"hub {self.repo}@{self.revision} (locked at fetch)"
        if self.source == "url":
            return f"url {self.url}" + ("" if self.sha256 else " (sha256 locked at fetch)")
        return f"{self.source}: {self.hint}"


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


_KNOWN_KEYS = {"source", "repo", "revision", "url", "sha256", "size", "sizes", "hint", "optional", "kind", "files",
               "format", "licence", "note"}


def _entry(path: Path, section: str, name: str, spec: dict) -> ModelEntry:
    source = spec.get("source", "hub")
    if source not in SOURCES:
        raise ModelError(f"{path}: model {name!r}: source must be one of {', '.join(SOURCES)}")
    needed = {"kind", "files"} | {"hub": {"repo", "revision"}, "url": {"url"}}.get(source, {"hint"})
    missing = needed - set(spec)
    if missing:
        raise ModelError(f"{path}: model {name!r} ({source}) lacks {', '.join(sorted(missing))}")
    if spec.get("format", "safetensors") not in FORMATS:
        raise ModelError(f"{path}: model {name!r}: format must be one of {', '.join(FORMATS)}")
    if source == "url" and len(spec["files"]) != 1:
        raise ModelError(f"{path}: model {name!r}: a url entry names exactly one file")
    sizes = spec.get("sizes") or {}
    try:
        if not isinstance(sizes, dict):
            raise ValueError("a mapping file -> size as listed, e.g. {config.json: 999 Bytes}")
        for size in sizes.values():
            parse_size(size)
    except ValueError as exc:
        raise ModelError(f"{path}: model {name!r}: sizes: {exc}") from None
    return ModelEntry(
        name=name, section=section, kind=spec["kind"], files=tuple(spec["files"]), source=source,
        repo=str(spec.get("repo", "")), revision=str(spec.get("revision", "main")), url=str(spec.get("url", "")),
        sha256=str(spec.get("sha256", "")), size=int(spec.get("size", 0)), hint=str(spec.get("hint", "")),
        listed_sizes={str(k): str(v) for k, v in sizes.items()},
        optional=bool(spec.get("optional", False)), format=spec.get("format", "safetensors"),
        licence=str(spec.get("licence", "unknown")), note=str(spec.get("note", "")),
        extra={k: v for k, v in spec.items() if k not in _KNOWN_KEYS},
    )


def load_manifest(path: str | Path | None = None) -> Manifest:
    """Read configs/models.yaml (or ``path``): ``section: {name: {source, repo, revision, ...}}``."""
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
            entries[name] = _entry(path, section, name, spec)
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


def default_local_dir() -> Path:
    """Where url/manual entries live when no --models-dir is given."""
    env = os.environ.get("CAMSTREAM_MODELS")
    return Path(env) if env else Path.home() / ".cache" / "camstream" / "models"


def missing_message(names: Iterable[str], why: str = "", fetch_as: str | None = None,
                    manifest: Manifest | None = None) -> str:
    """The ONE line a user sees when models are missing (exit code 5)."""
    names = list(names)
    why = f" ({why})" if why else ""
    by_hand = []
    if manifest is not None:
        by_hand = [f"{n}: {manifest[n].hint}" for n in names if n in manifest.entries and not manifest[n].fetchable]
    hand = f"; not downloadable: {'; '.join(by_hand)}" if by_hand else ""
    return (
        f"model(s) not found: {', '.join(names)}{why}; run `camstream models fetch {fetch_as or ' '.join(names)}` "
        f"(needs the hub) or pass --models-dir{hand}; or use a method without models, e.g. --method pixelate"
    )


def _matches(folder: Path, pattern: str) -> bool:
    return any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pattern) for p in folder.rglob("*") if p.is_file())


def check_files(entry: ModelEntry, folder: Path) -> list[str]:
    """Patterns of ``entry.files`` with no match in ``folder`` (empty: complete)."""
    return [pattern for pattern in entry.files if not _matches(folder, pattern)]


def entry_files(entry: ModelEntry, folder: Path) -> list[Path]:
    """The files of ``folder`` that ``entry.files`` name (what is hashed and locked)."""
    return sorted(p for p in folder.rglob("*") if p.is_file()
                  and any(fnmatch.fnmatch(p.relative_to(folder).as_posix(), pat) for pat in entry.files))


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
                "from safetensors only (fetch the .safetensors files)"
            )


def load_pickle(path: str | Path) -> Any:
    """A pickle checkpoint, tensors and plain containers only (``weights_only=True``)."""
    import torch

    return torch.load(str(path), map_location="cpu", weights_only=True)


# -- the lock file ------------------------------------------------------------------------


def sha256_of(path: Path, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_lock(models_dir: Path) -> dict[str, Any]:
    lock = Path(models_dir) / LOCK_NAME
    if not lock.exists():
        return {}
    try:
        return json.loads(lock.read_text())
    except (OSError, ValueError) as exc:
        raise ModelError(f"{lock}: unreadable lock file ({exc})") from None


def lock_record(entry: ModelEntry, folder: Path, commit: str = "") -> dict[str, Any]:
    """What a fetch resolved: the source, the commit (hub) and every file's sha256 and size."""
    files = {p.relative_to(folder).as_posix(): {"sha256": sha256_of(p), "size": p.stat().st_size}
             for p in entry_files(entry, folder)}
    record: dict[str, Any] = {"source": entry.source, "files": files}
    if entry.source == "hub":
        record.update(repo=entry.repo, revision=entry.revision, commit=commit)
    elif entry.source == "url":
        record["url"] = entry.url
    return record


def write_lock(models_dir: Path, name: str, record: dict[str, Any]) -> None:
    lock = read_lock(models_dir)
    lock[name] = record
    path = Path(models_dir) / LOCK_NAME
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(lock, indent=1, sort_keys=True))
    tmp.replace(path)


def verify_lock(entry: ModelEntry, folder: Path, record: dict[str, Any] | None) -> str:
    """``ok`` | ``no lock`` | ``MISMATCH ...``: the files against the lock (and a url's published hash)."""
    if entry.source == "url" and entry.sha256:
        path = folder / entry.files[0]
        if path.exists() and sha256_of(path) != entry.sha256:
            return f"MISMATCH {entry.files[0]}: sha256 differs from the published one"
    if not record:
        return "ok (published sha256)" if entry.source == "url" and entry.sha256 else "no lock"
    for rel, want in record.get("files", {}).items():
        path = folder / rel
        if not path.exists():
            return f"MISMATCH {rel}: missing"
        if path.stat().st_size != want["size"] or sha256_of(path) != want["sha256"]:
            return f"MISMATCH {rel}: changed since it was fetched"
    return "ok"


_WARNED_RANDOM: set[Path] = set()


class ModelResolver:
    """Finds each manifest entry's folder: --models-dir, then the cache, then the hub."""

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
        if entry.source != "hub":
            local = default_local_dir() / name
            return local if local.is_dir() and not check_files(entry, local) else None
        return self._from_cache(entry)

    def available(self, name: str) -> bool:
        return self.find(name) is not None

    def resolve(self, name: str) -> Path:
        """The folder holding ``name``'s files; downloads hub entries when online. Raises ModelError."""
        return self.resolve_many([name])[name]

    def resolve_many(self, names: Iterable[str], fetch_as: str | None = None) -> dict[str, Path]:
        """Resolve all ``names``; one ModelError naming every missing one (and ``fetch_as``,
        a method or section name, as what to fetch)."""
        found: dict[str, Path] = {}
        missing: list[str] = []
        for name in names:
            entry = self.manifest[name]
            path = self.find(name)
            if path is None and entry.source == "hub" and not hub_offline(self.offline):
                path = self._download(entry)[0]
            if path is None:
                missing.append(name)
            else:
                refuse_pickles(entry, path)
                found[name] = path
        if missing:
            why = "offline" if hub_offline(self.offline) else "not found"
            raise ModelError(missing_message(missing, why, fetch_as, self.manifest))
        return found

    def _from_cache(self, entry: ModelEntry) -> Path | None:
        try:
            from huggingface_hub import snapshot_download
        except ModuleNotFoundError:  # the plain install (no [diffusion]): no hub cache can be read, so not there
            return None
        try:
            path = Path(snapshot_download(entry.repo, revision=entry.revision, allow_patterns=list(entry.files),
                                          cache_dir=hub_cache_dir(), local_files_only=True))
        except Exception:  # noqa: BLE001 - LocalEntryNotFoundError, or a cache in an odd state: not there
            return None
        return path if path.is_dir() and not check_files(entry, path) else None

    def _download(self, entry: ModelEntry, local_dir: Path | None = None) -> tuple[Path | None, str]:
        """(folder, commit) of a hub entry; (None, why) when it cannot be had."""
        from huggingface_hub import HfApi, snapshot_download

        try:
            commit = entry.revision if entry.pinned else HfApi().model_info(entry.repo, revision=entry.revision).sha
            path = Path(snapshot_download(entry.repo, revision=commit, allow_patterns=list(entry.files),
                                          cache_dir=hub_cache_dir(), local_dir=local_dir))
        except Exception as exc:  # noqa: BLE001 - network, auth, missing repo: reported as missing
            return None, f"{type(exc).__name__}: {str(exc).splitlines()[0][:160] if str(exc) else ''}"
        missing = check_files(entry, path)
        return (None, f"files missing: {', '.join(missing)}") if missing else (path, commit or "")

    def _download_url(self, entry: ModelEntry, folder: Path) -> Path:
        """One publisher file, with a progress bar, checked against its published sha256/size."""
        import urllib.request

        from tqdm import tqdm

        folder.mkdir(parents=True, exist_ok=True)
        target = folder / entry.files[0]
        part = target.with_name(target.name + ".part")
        try:
            with urllib.request.urlopen(entry.url, timeout=60) as response, open(part, "wb") as out:  # noqa: S310 - manifest URLs
                total = int(response.headers.get("Content-Length") or entry.size or 0) or None
                with tqdm(total=total, unit="B", unit_scale=True, desc=entry.name) as bar:
                    while block := response.read(1 << 20):
                        out.write(block)
                        bar.update(len(block))
        except OSError as exc:
            part.unlink(missing_ok=True)
            raise ModelError(f"cannot fetch {entry.name} from {entry.url} ({exc})") from None
        if entry.sha256 and sha256_of(part) != entry.sha256:
            part.unlink()
            raise ModelError(f"{entry.name}: the download's sha256 is not the published one; nothing kept")
        part.replace(target)
        return folder

    def plan_fetch(self, names: Iterable[str], explicit: Iterable[str] = ()) -> tuple[list[str], list[str]]:
        """(to download, skipped) for ``names``, checked before anything downloads: a required
        entry that cannot be downloaded and is not here raises one ModelError naming all."""
        explicit = set(explicit)
        todo, skipped, blocking = [], [], []
        for name in names:
            entry = self.manifest[name]
            if entry.fetchable:
                todo.append(name)
            elif self.find(name) is not None:
                skipped.append(f"{name} (already here)")
            elif entry.optional and name not in explicit:
                skipped.append(f"{name} ({entry.source}, optional: {entry.hint})")
            else:
                blocking.append(f"{name}: {entry.hint}")
        if blocking:
            raise ModelError("cannot be downloaded, nothing fetched: " + "; ".join(blocking)
                             + " (then `camstream models import NAME PATH`)")
        if todo and hub_offline(self.offline):
            raise ModelError(f"cannot fetch {', '.join(todo)}: HF_HUB_OFFLINE is set (unset it on a machine with network access)")
        return todo, skipped

    def fetch(self, name: str, into: Path | None = None) -> Path:
        """Download ``name`` (hub: to the HF cache, or to ``into/name`` in the publisher's
        layout; url: to ``into/name`` or the default local folder) and lock what came."""
        entry = self.manifest[name]
        if not entry.fetchable:
            raise ModelError(f"{name} cannot be downloaded ({entry.source}): {entry.hint}")
        if hub_offline(self.offline):
            raise ModelError(f"cannot fetch {name}: HF_HUB_OFFLINE is set (unset it on a machine with network access)")
        root = into or (default_local_dir() if entry.source == "url" else None)
        if entry.source == "url":
            path, commit = self._download_url(entry, root / name), ""
        else:
            path, commit = self._download(entry, local_dir=(root / name) if root else None)
            if path is None:
                raise ModelError(f"cannot fetch {name} from {entry.repo}@{entry.revision} ({commit})")
        refuse_pickles(entry, path)
        if root is not None:
            write_lock(root, name, lock_record(entry, path, commit))
        return path
