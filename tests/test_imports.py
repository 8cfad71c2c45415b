"""The package layout: no import circle, camouflage's layers import down only (lazy imports
inside functions count too), and the modules every ``camstream`` call or ``models check``
imports stay free of torch."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PACKAGES = ("streamer", "tracking", "camouflage", "camstream")


def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            out[name] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The project modules ``name`` imports anywhere in its body (not its parent packages)."""
    here = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(here[: len(here) - node.level + 1] + [node.module or ""]).strip(".") if node.level else node.module
            targets = [base, *(f"{base}.{a.name}" for a in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def test_no_import_circle() -> None:
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "camouflage.models.tiny_light" in graph["camouflage.models.tiny"]  # the graph sees imports (sanity)
    assert _cycles(graph) == []


def test_a_made_circle_is_found() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


# camouflage's layers, by job: each may import its own and those listed before it, never one after
LAYERS = ("models", "inference", "training")


def _layer(name: str) -> str | None:
    """``models`` (camouflage.models), ``training`` (camouflage.training), ``inference``
    (every other camouflage module: base/, light/, video/ and the shared helpers); None
    outside camouflage and for the package itself."""
    if not name.startswith("camouflage."):
        return None
    top = name.split(".")[1]
    return top if top in ("models", "training") else "inference"


def _upward(graph: dict[str, set[str]]) -> list[str]:
    """Every import that runs back up the layers, as ``importer -> imported``."""
    out = []
    for name, targets in graph.items():
        layer = _layer(name)
        for target in targets:
            other = _layer(target)
            if layer and other and LAYERS.index(other) > LAYERS.index(layer):
                out.append(f"{name} -> {target}")
    return sorted(out)


def test_layers_import_down_only() -> None:
    """Model management imports neither inference nor training; inference never imports training."""
    modules = _modules()
    graph = {name: _imports(name, path, modules) for name, path in modules.items()}
    assert "camouflage.models.names" in graph["camouflage.light.pipeline"]  # inference -> models is seen (sanity)
    assert {"camouflage.models.loaders", "camouflage.models.names"} <= graph["camouflage.models.check"]  # lazy ones too
    assert _upward(graph) == []


def test_a_made_upward_import_is_found(tmp_path: Path) -> None:
    made = tmp_path / "camouflage" / "models" / "made.py"
    made.parent.mkdir(parents=True)
    made.write_text("def load():\n    from ..light.facer import FacerAttributeModel\n    return FacerAttributeModel\n")
    modules = {**_modules(), "camouflage.models.made": made}
    graph = {"camouflage.models.made": _imports("camouflage.models.made", made, modules),  # a lazy import, up one layer
             "camouflage.base.anonymizer": {"camouflage.training.loop", "camouflage.models.names"},
             "camouflage.training.idf": {"camouflage.base.pipeline", "camouflage.models.adapters"}}
    assert _upward(graph) == ["camouflage.base.anonymizer -> camouflage.training.loop",
                              "camouflage.models.made -> camouflage.light.facer"]


def test_modules_named_by_string_follow_the_layers() -> None:
    """The methods' factories and the trainers are imported by name at run time: the method
    registry (models) names inference modules, ``camstream train`` names training ones."""
    from camouflage.models.methods import METHODS
    from camouflage.training.cli import TRAINERS

    modules = _modules()
    factories = [m.factory.partition(":")[0] for m in METHODS.values()]
    trainers = [m for t in TRAINERS.values() for m in (t.module, t.arguments) if m]
    assert all(m in modules and _layer(m) == "inference" for m in factories), factories
    assert all(m in modules and _layer(m) == "training" for m in trainers), trainers


def test_light_modules_import_no_torch() -> None:
    """What the parser, ``models check`` and the method registry import: no torch, no diffusers."""
    light = ["camouflage", "camouflage.base", "camouflage.light", "camouflage.video", "camouflage.video.compositor",
             "camouflage.models", "camouflage.models.names", "camouflage.models.manifest", "camouflage.models.methods",
             "camouflage.models.check", "camouflage.models.cli", "camouflage.training", "camouflage.training.cli",
             "camouflage.training.idf", "camouflage.training.light_args", "camouflage.training.loop",
             "camouflage.training.data", "camouflage.training.data.cli"]
    code = (f"import importlib, sys\nfor m in {light!r}:\n    importlib.import_module(m)\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'torch', 'diffusers', 'transformers'}))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
