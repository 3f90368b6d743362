"""What a task is: examples, a starting program and a metric that belong together.

Its own module, so that the built-in catalogue (`builtin.py`) and users' tasks (`user.py`) both build
`Task`s without importing each other.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from prompthone.data import Example
from prompthone.metrics import Metric
from prompthone.program import Program

Root = str | Path | None


@dataclass(frozen=True)
class Task:
    name: str
    description: str
    load: Callable[[Root], list[Example]]
    make_program: Callable[[Root], Program]
    metric: Callable[[], Metric]
    multi_stage: bool = False
    #: splits the task fixes itself (a user's own train / val / test files): split name -> its examples.
    #: The splits it does not name are cut from `load`'s examples by the seeded split.
    fixed_splits: Callable[[Root], Mapping[str, list[Example]]] | None = None
