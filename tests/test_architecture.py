"""The package layering of docs/architecture.md holds: ``lint-imports`` keeps every contract of
pyproject.toml's ``[tool.importlinter]``, and breaks when a module imports against the arrows."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONTRACTS = ("dse packages import only the packages below them",
             "hwmodels (pure numpy) imports nothing from dse",
             "the CLI parses and prints: it reaches the packages only through dse.api",
             "no import cycles between the modules of any package")


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")  # import-linter's script in this environment
    assert exe.is_file(), "import-linter is not installed (pip install -e '.[test]')"
    # the packages of ``cwd`` (not the installed ones); no cache, so each run reads the files anew
    env = {**os.environ, "PYTHONPATH": str(cwd)}
    return subprocess.run([exe, "--no-cache"], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_contracts_are_kept() -> None:
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout + run.stderr
    for name in CONTRACTS:
        assert f"{name} KEPT" in run.stdout
    assert f"Contracts: {len(CONTRACTS)} kept, 0 broken." in run.stdout


@pytest.fixture
def copy_of_the_packages(tmp_path: Path) -> Path:
    """dse/, hwmodels/ and pyproject.toml (the contracts) in a temporary folder."""
    for package in ("dse", "hwmodels"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def test_hwmodels_importing_dse_breaks_the_contract(copy_of_the_packages: Path) -> None:
    module = copy_of_the_packages / "hwmodels" / "workload.py"
    module.write_text(module.read_text() + "\nimport dse  # noqa: E402,F401 - against the layering\n")
    run = lint_imports(copy_of_the_packages)
    assert run.returncode != 0
    assert "hwmodels (pure numpy) imports nothing from dse BROKEN" in run.stdout
    assert "hwmodels.workload -> dse" in run.stdout


def test_an_upward_import_breaks_the_layers(copy_of_the_packages: Path) -> None:
    module = copy_of_the_packages / "dse" / "config" / "knobs.py"
    module.write_text(module.read_text() + "\nimport dse.study.engine  # noqa: E402,F401 - against the layering\n")
    run = lint_imports(copy_of_the_packages)
    assert run.returncode != 0
    assert "dse packages import only the packages below them BROKEN" in run.stdout
    assert "dse.config.knobs -> dse.study.engine" in run.stdout
