"""A task of the user's own: their program (plain Python), their examples file and a metric, from a config.

A run's config must be enough to rebuild everything (resume, report, export), so a user task is plain
data: the program as an import reference `module:attribute` (a `Program` subclass, or a function that
returns a `Program`), the examples as a file with a field mapping (`prompthone.data.load_examples`), and
the metric as a built-in name or an import reference `module:function`. `path` is the folder put on
`sys.path` for the imports (the config file's folder when the config is loaded from a file).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from prompthone.data import Example, load_examples
from prompthone.metrics import ChoiceMatch, ExactMatch, Metric, NumericMatch, TokenF1, as_metric
from prompthone.program import Program
from prompthone.tasks.task import Task

#: built-in metric names for user tasks: each compares one label field with the same-named output field
METRICS: dict[str, Callable[..., Metric]] = {
    "exact_match": ExactMatch,
    "numeric": NumericMatch,
    "token_f1": TokenF1,
    "choice": ChoiceMatch,
}


#: label types a config may declare (CSV text is converted; JSON values must already have the type)
LABEL_TYPES: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool}


#: `source` of a task given as Python objects (`prompthone.optimize`): the stored config names it, nothing
#: can rebuild it from the config alone
PYTHON_SOURCE = "python"


class UserTaskError(ValueError):
    """A user task that cannot be built as written; the message says which key and what to change."""


def import_reference(ref: str, *, path: str | None, what: str) -> Any:
    """The object `module:attribute` names, importing `module` with `path` first on `sys.path`."""
    module_name, sep, attr = ref.partition(":")
    if not sep or not module_name or not attr:
        raise UserTaskError(f"{what}: expected 'module:attribute' (e.g. my_pipeline:RAG), got {ref!r}")
    if path and path not in sys.path:
        sys.path.insert(0, path)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        where = f" (looked in {path} and on sys.path)" if path else ""
        raise UserTaskError(f"{what}: cannot import module {module_name!r}{where}: {exc}") from None
    try:
        obj: Any = module
        for part in attr.split("."):
            obj = getattr(obj, part)
    except AttributeError:
        raise UserTaskError(f"{what}: module {module_name!r} has no attribute {attr!r}") from None
    return obj


def build_program(ref: str, *, path: str | None) -> Program:
    factory = import_reference(ref, path=path, what="task.program")
    program = factory
    if callable(factory) and not isinstance(factory, Program):
        try:
            program = factory()
        except TypeError as exc:
            raise UserTaskError(
                f"task.program: calling {ref!r} with no arguments failed ({exc}); expected a Program subclass, "
                "or a function returning a Program instance"
            ) from None
    if not isinstance(program, Program):
        raise UserTaskError(
            f"task.program: {ref!r} gave a {type(program).__name__}, expected a prompthone Program "
            "(a Program subclass, or a function returning a Program instance)"
        )
    if not program.named_prompts():
        raise UserTaskError(f"task.program: {ref!r} has no Predict or ChainOfThought module, so nothing to optimize")
    return program


def build_metric(spec: str, *, label_field: str, path: str | None) -> Metric:
    if spec in METRICS:
        return METRICS[spec](label_field=label_field, pred_field=label_field)
    if ":" not in spec:
        raise UserTaskError(
            f"task.metric: unknown metric {spec!r}; expected one of {', '.join(METRICS)} or 'module:function'"
        )
    return as_metric(import_reference(spec, path=path, what="task.metric"))


def task_label(task: str | Mapping[str, Any]) -> str:
    """How a run's task is shown: a built-in name, or a user task's `name` (else its program reference)."""
    if isinstance(task, Mapping):
        return str(task.get("name") or task.get("program") or "user task")
    return str(task)


def user_task(spec: Mapping[str, Any]) -> Task:
    """A `Task` built from a user-task mapping (see the module docstring)."""
    if spec.get("source") == PYTHON_SOURCE:
        raise UserTaskError(
            f"the run's program, data and metric ({spec.get('program')}) were given in Python, not in a config; "
            "resume it from Python: prompthone.optimize(program, trainset=..., valset=..., metric=..., "
            "resume=RUN_FOLDER)"
        )
    missing = [k for k in ("program", "data") if k not in spec]
    if missing:
        raise UserTaskError(f"a user task needs {' and '.join(missing)} (task.program, task.data)")
    path = spec.get("path")
    data = dict(spec["data"])
    labels = data.get("labels") or []
    first_label = (list(labels.values()) if isinstance(labels, Mapping) else list(labels) or ["answer"])[0]
    metric_spec = str(spec.get("metric", "exact_match"))
    program_ref = str(spec["program"])

    def read(key: str) -> list[Example]:
        file = Path(data[key])
        if not file.is_absolute() and path:
            file = Path(path) / file
        types = {k: LABEL_TYPES[v] if isinstance(v, str) else v for k, v in (data.get("label_types") or {}).items()}
        id_field = data.get("id_field")
        return load_examples(file, inputs=data["inputs"], labels=labels, id_field=id_field, label_types=types)

    def load(_root: Any) -> list[Example]:
        return read("path") if data.get("path") else []

    fixed = [name for name in ("train", "val", "test") if data.get(name)]

    def fixed_splits(_root: Any) -> dict[str, list[Example]]:
        return {name: read(name) for name in fixed}

    name = task_label(spec)
    return Task(
        name=name,
        description=f"user task: {program_ref} on {', '.join(str(data[k]) for k in ('path', *fixed) if data.get(k))}",
        load=load,
        fixed_splits=fixed_splits if fixed else None,
        make_program=lambda _root: build_program(program_ref, path=path),
        metric=lambda: build_metric(metric_spec, label_field=first_label, path=path),
    )
