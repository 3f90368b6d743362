"""The methods and what they share: setup, result, budget, proposers, and the registry of methods.

A method gets everything a run gives it in an `OptimizationSetup` (program, splits, evaluator, one LM per
role, budget, seed, an event callback) and returns an `OptimizationResult`; the application around it
(`prompthone.runs`: store, tasks, files, the terminal) is one floor up, so nothing here imports the run
store, the tasks or `rich`, and no module here imports another in a circle (pyproject.toml's import
contracts check both).
"""

from prompthone.optimize.base import OptimizationResult, OptimizationSetup, Optimizer, Run, Trial
from prompthone.optimize.budget import Budget, BudgetExhausted

__all__ = ["Budget", "BudgetExhausted", "OptimizationResult", "OptimizationSetup", "Optimizer", "Run", "Trial"]
