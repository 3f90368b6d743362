"""The floors of docs/architecture.md hold: no import runs up a floor, packages on one floor stay apart,
the methods do not reach the store, the tasks or the terminal, and no import circle is left but the
ones the contracts in pyproject.toml name (each justified in its package's docstring).

import-linter checks the contracts; it runs in its own process, as its command does, on the
prompthone these tests import (a worktree's `src/` given in PYTHONPATH, else the installed one).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import prompthone

ROOT = Path(__file__).resolve().parents[1]
SRC = Path(prompthone.__file__).resolve().parents[1]
LINT = "import sys; from importlinter.cli import lint_imports_command; sys.exit(lint_imports_command())"


def lint_imports(src: Path, config: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run(
        [sys.executable, "-c", LINT, str(config), "--no-cache"],
        capture_output=True,
        text=True,
        env=env,
        cwd=config.parent,
        timeout=300,
    )


def test_the_import_contracts_are_kept():
    done = lint_imports(SRC, ROOT / "pyproject.toml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "3 kept, 0 broken" in done.stdout, done.stdout


def test_an_import_up_a_floor_breaks_the_contracts(tmp_path):
    """The contracts are not vacuous: on a copy of the package where a metric imports the application
    and a method imports the store, they fail and name both imports."""
    copy = tmp_path / "src" / "prompthone"
    source_only = shutil.ignore_patterns(
        "*.txt", "*.json", "*.jsonl", "*.tsv", "*.csv", "*.gz", "*.html", "__pycache__"
    )
    shutil.copytree(SRC / "prompthone", copy, ignore=source_only)
    for module, line in (("metrics/judge.py", "from prompthone.runs import spec"),
                         ("optimize/budget.py", "from prompthone.store import RunStore")):  # fmt: skip
        path = copy / module
        path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = lint_imports(copy.parent, tmp_path / "pyproject.toml")
    assert done.returncode != 0, done.stdout
    assert "prompthone.metrics is not allowed to import prompthone.runs" in done.stdout, done.stdout
    assert "prompthone.optimize is not allowed to import prompthone.store" in done.stdout, done.stdout
