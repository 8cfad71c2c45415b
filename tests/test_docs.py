"""The README stays short and true, and the docs site builds with every link checked."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO

README = REPO / "README.md"


def _blocks(text: str) -> list[str]:
    return re.findall(r"```[a-z]*\n(.*?)```", text, flags=re.S)


def test_readme_is_short_and_its_links_resolve() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 200
    for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (REPO / target).exists(), target


def test_ci_runs_the_readme_commands() -> None:
    """The two set-up commands, word for word, are what .ci/run runs."""
    blocks = _blocks(README.read_text())
    install = next(b.strip() for b in blocks if b.startswith("python3 -m venv"))
    tests = next(b.strip() for b in blocks if b.strip().startswith("bash tests/run.sh"))
    ci = (REPO / ".ci" / "run").read_text()
    assert install in ci and f"\n{tests}" in ci


def test_install_hints_name_commands_that_work_from_a_clone() -> None:
    """camstream is not on PyPI: `pip install 'camstream[...]'` resolves to nothing."""
    code = [p for package in ("streamer", "tracking", "camouflage", "camstream") for p in (REPO / package).rglob("*.py")]
    for path in [README, *(REPO / "docs").glob("*.md"), *code]:
        assert "pip install 'camstream[" not in path.read_text(), path


def test_docs_site_builds_strict(tmp_path: Path) -> None:
    """`mkdocs build --strict`: a missing page, a broken link or anchor fails it."""
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    r = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert (tmp_path / "site" / "api" / "index.html").exists()


@pytest.mark.parametrize("command", [[], ["run"], ["eval"], ["models"], ["train"], ["data"], ["serve"]])
def test_help_names_extras_as_a_clone_installs_them(command: list[str]) -> None:
    """`camstream[yolo]` in a help text reads as `pip install camstream[yolo]`, which
    resolves to nothing; and `python -m camstream` is the command where the venv's
    scripts are not on PATH."""
    r = subprocess.run(
        [sys.executable, "-m", "camstream", *command, "--help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and "usage: camstream" in r.stdout, r.stderr
    assert "camstream[" not in r.stdout, r.stdout
