"""Optimizers by name, for the CLI and configs. Imported lazily so that one method's dependencies
(Optuna for MIPRO, matplotlib for OPRO's plots) load only when that method runs."""

from __future__ import annotations

import importlib
import inspect
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
        factory = entry
    else:
        module, _, attr = entry.partition(":")
        try:
            factory = getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            raise KeyError(f"optimizer {name!r} is not available in this version ({exc})") from None
    _check_setting_names(name, factory, settings)
    return factory(**settings)


def _check_setting_names(name: str, factory: Callable[..., Optimizer], settings: dict[str, Any]) -> None:
    """Name the unknown settings and list the known ones (a factory taking **settings checks its own)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # pragma: no cover - builtins without a signature
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    unknown = sorted(set(settings) - set(known))
    if unknown:
        raise TypeError(f"unknown {name} setting(s) {unknown}; known settings: {', '.join(known) or '(none)'}")
