"""A real wheel, installed into a fresh venv: the presets and the model manifest must be
inside it (package data read with importlib.resources), not beside a source tree.

``pip install .`` shipped no ``configs/``: ``-c paranoid`` answered "cannot read config"
and every ``camstream models`` command "cannot read the model manifest". Tests ran from
the checkout only, where the files sit beside the code, so nothing caught it. Here the
wheel is built from a copy of the project, installed with ``--no-deps`` into a new venv
(its dependencies are this interpreter's, reached through a path entry, so no download),
and the commands run from an empty folder with no PYTHONPATH: only the wheel's files count.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from conftest import DATA, REPO


def _run(*args: object, **kwargs) -> subprocess.CompletedProcess:  # noqa: ANN003
    return subprocess.run([*map(str, args)], capture_output=True, text=True, timeout=600, **kwargs)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The fresh venv's bin folder, with the wheel installed."""
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    for package in ("streamer", "tracking", "camouflage", "camstream"):
        shutil.copytree(REPO / package, src / package, ignore=shutil.ignore_patterns("__pycache__"))
    r = _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", work / "dist", src)
    assert r.returncode == 0, r.stderr
    (wheel,) = (work / "dist").glob("camstream-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {
        "camstream/configs/models.yaml",
        "camstream/configs/paranoid.yaml",
        "camstream/configs/quality.yaml",
        "camstream/configs/realtime.yaml",
        "camstream/configs/default.yaml",
    } <= set(names), names
    venv = work / "venv"
    r = _run(sys.executable, "-m", "venv", "--without-pip", venv)
    assert r.returncode == 0, r.stderr
    python = venv / "bin" / "python"
    target = Path(_run(python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").stdout.strip())
    # The dependencies: this interpreter's site folders, after the venv's own (a plain path
    # entry: their .pth files, such as an editable install of this checkout, are not run).
    ours = [p for p in {*site.getsitepackages(), sysconfig.get_paths()["purelib"]} if Path(p).is_dir()]
    (target / "zz_test_dependencies.pth").write_text("\n".join(ours) + "\n")
    # Without the caller's PYTHONPATH: with a checkout on it, pip saw camstream "already
    # satisfied" there (its egg-info) and installed nothing.
    r = _run(sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel, env=_env())
    if r.returncode != 0 and "--python" in r.stderr:  # an older pip: install with the target's own
        r = _run(python, "-m", "ensurepip", "-q", env=_env())
        r = _run(python, "-m", "pip", "install", "--no-deps", "--no-index", "-q", wheel, env=_env())
    assert r.returncode == 0, r.stderr
    return venv / "bin"


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}


def test_the_wheel_runs_from_its_own_files(installed: Path, tmp_path: Path) -> None:
    r = _run(
        installed / "python",
        "-c",
        "import streamer, camouflage; print(streamer.__file__, camouflage.__file__)",
        cwd=tmp_path,
        env=_env(),
    )
    assert r.returncode == 0, r.stderr
    assert all(str(REPO) not in p for p in r.stdout.split()), r.stdout  # the wheel's copy, not the checkout


def test_a_preset_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    out = tmp_path / "g.jpg"
    r = _run(
        installed / "camstream",
        "run",
        DATA / "grace_hopper_512x512.jpg",
        "-c",
        "paranoid",
        "--method",
        "solid",
        "-o",
        out,
        "--report",
        tmp_path / "r.json",
        "-q",
        cwd=tmp_path,
        env=_env(),
    )
    assert r.returncode == 0, r.stderr
    assert out.exists()
    import json

    config = json.loads((tmp_path / "r.json").read_text())["config"]
    assert config["detection"]["every"] == 1 and config["tracking"]["hold_frames"] == 24  # paranoid's values
    r = _run(installed / "camstream", "run", "--help", cwd=tmp_path, env=_env())
    assert "paranoid, quality, realtime" in " ".join(r.stdout.split()), r.stdout


def test_models_list_from_the_wheel(installed: Path, tmp_path: Path) -> None:
    r = _run(installed / "camstream", "models", "list", cwd=tmp_path, env=_env())
    assert r.returncode == 0, r.stderr
    assert "controlnet_depth" in r.stdout and "cannot read the model manifest" not in r.stderr
