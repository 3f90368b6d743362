"""A run's examples: its train / val / test, and the check that they fit the program before anything is paid."""

from __future__ import annotations

from collections.abc import Mapping

from prompthone.data import Split
from prompthone.data.example import Example
from prompthone.program import Program
from prompthone.program.run import check_program_inputs
from prompthone.runs.spec import RunSpec
from prompthone.tasks import Task
from prompthone.tasks.splits import task_splits
from prompthone.tasks.user import task_label


def splits_for(spec: RunSpec, task: Task) -> Split:
    """`spec`'s train / val / test of `task` (its own split files, else a seeded cut), or `SplitSizeError`
    naming where the examples come from."""
    return task_splits(task, n_train=spec.n_train, n_val=spec.n_val, n_test=spec.n_test, seed=spec.seed,
                       root=spec.data_root, source=data_source(spec))  # fmt: skip


def data_source(spec: RunSpec) -> str:
    """How a message names where a run's examples come from: the user's file, or the built-in task."""
    if isinstance(spec.task, Mapping):
        path = (spec.task.get("data") or {}).get("path")
        return f"the data file {path} (task.data.path)" if path else f"the data of task {task_label(spec.task)!r}"
    return f"task {spec.task!r}"


def check_inputs(program: Program, example: Example, spec: RunSpec) -> None:
    """Raise `ValueError` unless `program.forward` takes the inputs the data gives it, so that a wrong
    input mapping is said before anything is paid for or written, not as an error on every example."""
    try:
        check_program_inputs(program, example.inputs)
    except TypeError as exc:
        where = "task.data.inputs" if isinstance(spec.task, Mapping) else f"task {spec.task!r}"
        raise ValueError(f"{where}: the examples' inputs do not fit the program: {exc}") from None
