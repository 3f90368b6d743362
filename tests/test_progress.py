"""The live progress line: what the optimizer is doing, trials, best score, spend."""

from __future__ import annotations

import io
from types import SimpleNamespace

from rich.console import Console

from prompthone.optimize import Budget
from prompthone.runs.progress import LiveProgress


def test_the_line_names_the_stage_until_the_next_trial():
    progress = LiveProgress(Console(file=io.StringIO(), width=200), Budget(max_lm_calls=50))
    assert progress.line().startswith("trial 0 · best val -")
    progress.update("step", {"stage": "propose instructions"})
    assert progress.line().startswith("propose instructions · trial 0")
    progress.update("step", {"iteration": 3})  # steps without a stage (GRAD-SUM, OPRO) keep the line as it was
    assert progress.line().startswith("propose instructions · trial 0")
    trial = SimpleNamespace(index=1, score=0.5, full=True)
    progress.update("trial", {"trial": trial, "best": 0.5})
    line = progress.line()
    assert line.startswith("trial 1 · best val 0.500") and "propose" not in line and "/ 50" in line
