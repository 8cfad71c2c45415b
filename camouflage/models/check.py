"""``camstream models check`` and ``camstream models import``: is each entry here, unchanged
since it was fetched, and loadable; is each method ready; put a user-supplied file in place.

Per entry: ``present``/``missing``, the lock verdict (``ok``, ``no lock``, ``MISMATCH ...``)
and ``loads``/``FAILS: why`` (through :mod:`camouflage.models.loaders`, the run's own readers).
Per method one line, e.g. ``base: ready (a_s <= 1: no trained IDF)`` or
``camouflage: ready (public Light adapters)``.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from streamer.errors import InputError, ModelError

from .manifest import ModelEntry, ModelResolver, read_lock, verify_lock


@dataclass
class EntryState:
    name: str
    path: Path | None
    lock: str = ""
    loads: str = ""

    @property
    def ok(self) -> bool:
        return self.path is not None and not self.lock.startswith("MISMATCH") and self.loads in ("loads", "not loaded")


def check_entry(resolver: ModelResolver, entry: ModelEntry, load: bool = True) -> EntryState:
    state = EntryState(entry.name, resolver.find(entry.name))
    if state.path is None:
        return state
    lock = read_lock(resolver.models_dir).get(entry.name) if resolver.models_dir else None
    state.lock = verify_lock(entry, state.path, lock)
    state.loads = "not loaded"
    if load:
        from .loaders import load_entry

        try:
            load_entry(entry.kind, state.path)
            state.loads = "loads"
        except ModelError as exc:
            state.loads = f"FAILS: {exc}"
    return state


def method_verdicts(states: dict[str, EntryState]) -> dict[str, tuple[bool, str]]:
    """``{method: (ready, one line)}`` from the entry states."""
    from . import names
    from .names import BASE_MODELS, CONTROLS, IDF

    def bad(names) -> list[str]:  # noqa: ANN001
        return [n for n in names if not states[n].ok]

    base_needed = [*BASE_MODELS, *(f"annotator_{c}" for c in CONTROLS), "captioner"]
    out: dict[str, tuple[bool, str]] = {}
    missing = bad(base_needed)
    idf = states[IDF].ok
    out["base"] = (not missing, f"not ready: {', '.join(missing)}" if missing else
                   "ready (a_s 1.25: trained IDF)" if idf else "ready (a_s <= 1: no trained IDF)")
    light_missing = bad(names.LIGHT_MODELS)
    out["light"] = (not light_missing, f"not ready: {', '.join(light_missing)}" if light_missing
                    else "ready (trained CAMOUFLaGE-Light adapters)")
    public_missing = bad(names.PUBLIC_MODELS)
    if missing:
        out["camouflage"] = (False, f"not ready: {', '.join(missing)}")
    elif not light_missing:
        out["camouflage"] = (True, "ready (CAMOUFLaGE-Light adapters; public ones "
                             + ("too" if not public_missing else "missing") + ")")
    elif not public_missing:
        out["camouflage"] = (True, "ready (public Light adapters)")
    else:
        out["camouflage"] = (False, f"not ready: {', '.join(public_missing)} (or the trained Light adapters)")
    return out


def run_check(models_dir: str | None, method: str | None, load: bool = True) -> int:
    """Print the table and the verdicts; 0 only when ``method`` (default: the default
    method, camouflage) is ready; 5 (models missing) otherwise."""
    from .methods import METHODS

    resolver = ModelResolver(models_dir=models_dir, offline=True)
    if resolver.random_weights:
        print(f"WARNING: {models_dir} holds RANDOM WEIGHTS: output is noise")
    states = {}
    for entry in resolver.manifest:
        if entry.section == "speed" and method not in (None, "speed"):
            continue
        states[entry.name] = state = check_entry(resolver, entry, load)
        where = str(state.path) if state.path else "missing"
        extra = "" if state.path is None else f"  {state.lock}  {state.loads}"
        optional = " (optional)" if entry.optional else ""
        print(f"{entry.name:22s} {'present' if state.path else 'MISSING'}{optional:11s} {where}{extra}")
    for name in ("lcm_lora_sd15", "taesd"):
        states.setdefault(name, check_entry(resolver, resolver.manifest[name], load))
    verdicts = method_verdicts(states)
    speed_ok = all(states[n].ok for n in ("lcm_lora_sd15", "taesd"))
    verdicts["speed"] = (speed_ok, "ready (-c realtime)" if speed_ok else "not ready (-c realtime needs lcm_lora_sd15, taesd)")
    for name, (_, line) in verdicts.items():
        print(f"{name}: {line}")
    asked = method or "camouflage"
    if asked not in verdicts:
        raise ModelError(f"models check: {asked!r} is not a method (try: {', '.join([*METHODS, 'speed'])})")
    return 0 if verdicts[asked][0] else 5


def import_file(models_dir: str | Path, name: str, source: str | Path) -> Path:
    """Copy a user-supplied file (or folder) into ``DIR/name/`` under its publisher's name,
    after checking it is what the manifest says (it loads through the entry's loader)."""
    from .loaders import load_entry
    from .manifest import check_files, load_manifest, lock_record, write_lock

    entry = load_manifest()[name]
    source = Path(source)
    if not source.exists():
        raise InputError(f"{source}: no such file")
    target = Path(models_dir) / name
    staging = Path(models_dir) / f".{name}.importing"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        if source.is_dir():
            shutil.copytree(source, staging, dirs_exist_ok=True)
        else:
            import fnmatch

            if not any(fnmatch.fnmatch(source.name, pattern) for pattern in entry.files):
                raise ModelError(f"{name} expects {', '.join(entry.files)} (the publisher's file name), not {source.name}")
            shutil.copy2(source, staging / source.name)
        missing = check_files(entry, staging)
        if missing:
            raise ModelError(f"{name}: {', '.join(missing)} missing from {source}")
        load_entry(entry.kind, staging)  # the format check: it loads as a run loads it
        shutil.rmtree(staging / ".camstream-converted", ignore_errors=True)
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    write_lock(Path(models_dir), name, lock_record(entry, target))
    return target
