"""One name for every task a run can name: a built-in task's name, or a user task's mapping."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prompthone.data import BBH_TASKS
from prompthone.tasks.builtin import TASKS
from prompthone.tasks.task import Task
from prompthone.tasks.user import user_task


def get_task(name: str | Mapping[str, Any]) -> Task:
    """The built-in task called `name`, a user task described by a mapping (`prompthone.tasks.user`), or
    an error listing the names there are."""
    if isinstance(name, Mapping):
        return user_task(name)
    if name in TASKS:
        return TASKS[name]
    if f"bbh/{name}" in TASKS:
        return TASKS[f"bbh/{name}"]
    plain = [n for n in TASKS if not n.startswith("bbh/")]
    raise KeyError(
        f"unknown task {name!r}; built-in tasks: {', '.join(plain)}, and bbh/<task> for the 27 "
        f"BIG-Bench Hard tasks ({', '.join(BBH_TASKS[:3])}, ...)"
    )
