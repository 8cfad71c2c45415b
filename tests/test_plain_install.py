"""The plain install (no extra) runs what the README promises it runs: the tests' environment
has every extra, so here each extra's packages are made unimportable in a child interpreter
and the CLI is run there, as CI's plain install runs it.

``camstream models list`` once failed on a plain install (exit 5, "needs the diffusion
extra"): looking for a model in the hub's cache imported huggingface_hub."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from streamer.extras import EXTRAS

REPO = Path(__file__).resolve().parent.parent
# every extra's top-level packages: [diffusion], [light], [eval], [yolo], [ray], [plates]
BLOCKED = sorted({p for packages in EXTRAS.values() for p in packages} | {"ray", "prometheus_client", "onnxruntime"})
CHILD = (
    "import sys\n"
    f"for name in {BLOCKED!r}:\n"
    "    sys.modules[name] = None  # import raises ModuleNotFoundError, find_spec answers None\n"
    "from streamer.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _camstream(*args: object, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", CHILD, *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin", "HOME": str(cwd)}, timeout=300)


def test_the_block_holds(tmp_path: Path) -> None:
    code = CHILD.replace("from streamer.cli import main\nsys.exit(main(sys.argv[1:]))\n", "import huggingface_hub\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode != 0 and "ModuleNotFoundError" in r.stderr


def test_models_list_without_any_extra(tmp_path: Path) -> None:
    r = _camstream("models", "list", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "sd15" in r.stdout and "missing" in r.stdout


@pytest.mark.parametrize("method", ["solid", "auto"])
def test_a_classical_run_without_any_extra(data: Path, tmp_path: Path, method: str) -> None:
    out = tmp_path / "g.jpg"
    r = _camstream("run", data / "grace_hopper_512x512.jpg", "--method", method, "-o", out, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert out.stat().st_size > 0


def test_a_diffusion_method_without_its_extra_says_which(data: Path, tmp_path: Path) -> None:
    r = _camstream("run", data / "grace_hopper_512x512.jpg", "--method", "camouflage", "-o", tmp_path / "g.jpg",
                   cwd=tmp_path)
    assert r.returncode == 5, r.stderr
    assert "pip install '.[diffusion]'" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "g.jpg").exists()
