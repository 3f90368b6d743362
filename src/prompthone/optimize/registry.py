"""Optimizers by name, for the CLI and configs. Imported lazily so that one method's dependencies
(Optuna for MIPRO, matplotlib for OPRO's plots) load only when that method runs."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from prompthone.optimize.base import Optimizer

#: name -> "module:factory" (or the factory itself); it takes the method's settings as keyword arguments
OPTIMIZERS: dict[str, str | Callable[..., Optimizer]] = {
    "mipro": "prompthone.optimize.mipro:MIPRO",
    "mipro-0shot": "prompthone.optimize.mipro:MIPRO0Shot",
    "bayesian-bootstrap": "prompthone.optimize.mipro:BayesianBootstrap",
    "mipro++": "prompthone.optimize.mipro:MIPROPlusPlus",
    "labeled-fewshot": "prompthone.optimize.baselines:LabeledFewShot",
    "bootstrap-fewshot": "prompthone.optimize.baselines:BootstrapFewShot",
    "bootstrap-random-search": "prompthone.optimize.baselines:BootstrapRandomSearch",
    "opro": "prompthone.optimize.opro:OPRO",
    "gradsum": "prompthone.optimize.gradsum:GradSum",
    "gradsum-nosum": "prompthone.optimize.gradsum:GradSumNoSummary",
}


def make_optimizer(name: str, **settings: Any) -> Optimizer:
    """Build optimizer `name` with `settings`, or say which names exist."""
    if name not in OPTIMIZERS:
        raise KeyError(f"unknown optimizer {name!r}; expected one of: {', '.join(OPTIMIZERS)}")
    entry = OPTIMIZERS[name]
    if callable(entry):
        return entry(**settings)
    module, _, attr = entry.partition(":")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise KeyError(f"optimizer {name!r} is not available in this version ({exc})") from None
    return factory(**settings)
