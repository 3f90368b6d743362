"""Optimizers and what they share: setup, result, budget."""

from prompthone.optimize.base import OptimizationResult, OptimizationSetup, Optimizer, Run, Trial
from prompthone.optimize.budget import Budget, BudgetExhausted

__all__ = ["Budget", "BudgetExhausted", "OptimizationResult", "OptimizationSetup", "Optimizer", "Run", "Trial"]
