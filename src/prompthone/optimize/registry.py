"""Optimizers by name, for the CLI and configs. Imported lazily so that one method's dependencies
(Optuna for MIPRO, matplotlib for OPRO's plots) load only when that method runs."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import typing
from collections.abc import Callable
from typing import Any

from pydantic import TypeAdapter, ValidationError

from prompthone.optimize.base import Optimizer
from prompthone.optimize.settings import SettingError, expected

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
    _check_setting_types(name, factory, settings)
    return factory(**settings)


def setting_types(factory: Callable[..., Optimizer]) -> dict[str, Any]:
    """Setting name -> declared type: the factory's typed parameters (and its base classes' when it passes
    `**settings` on), plus the fields of its `settings_class` dataclass if it has one (MIPRO)."""
    types: dict[str, Any] = {}
    if isinstance(factory, type):
        functions = [vars(c)["__init__"] for c in factory.__mro__ if "__init__" in vars(c) and c is not object]
    else:
        functions = [factory]
    for fn in functions:
        try:
            hints = typing.get_type_hints(fn)
            params = inspect.signature(fn).parameters
        except (NameError, TypeError, ValueError):  # annotations that cannot be resolved: the factory checks
            continue
        for key, hint in hints.items():
            if key in params and params[key].kind in (inspect.Parameter.VAR_KEYWORD, inspect.Parameter.VAR_POSITIONAL):
                continue
            types.setdefault(key, hint)
    settings_class = getattr(factory, "settings_class", None)
    if settings_class is not None and dataclasses.is_dataclass(settings_class):
        for key, hint in typing.get_type_hints(settings_class).items():
            types.setdefault(key, hint)
    types.pop("return", None)
    return types


def _check_setting_types(name: str, factory: Callable[..., Optimizer], settings: dict[str, Any]) -> None:
    """Raise `SettingError` naming the first setting whose value cannot be read as its declared type:
    `num_trials="abc"` must say num_trials, not "invalid literal for int()". Values are passed on as
    given (what converts, like "5" for an int, the factory converts as before)."""
    types = setting_types(factory)
    for key, value in settings.items():
        hint = types.get(key)
        if hint is None or hint is Any:
            continue
        try:
            adapter = TypeAdapter(hint)
        except Exception:  # pragma: no cover - a type pydantic cannot check: the factory checks it
            continue
        try:
            adapter.validate_python(value)
        except ValidationError as exc:
            raise SettingError.of_type(name, key, f"{expected(exc)}, got {value!r}") from None


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
