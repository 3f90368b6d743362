"""A task's train / validation / test examples for a run: fixed files where the task has them, else a seeded cut.

One function, so that an optimization, an evaluation and the config check all see the same splits.
"""

from __future__ import annotations

from prompthone.data import DataError, Example, Split, split
from prompthone.tasks.builtin import Root, Task

SPLIT_NAMES = ("train", "val", "test")


def task_splits(
    task: Task, *, n_train: int | None, n_val: int | None, n_test: int | None, seed: int, root: Root = None
) -> Split:
    """The run's splits. A split the task fixes (its own file) is used whole, or as a seeded sample of
    `n_<split>` examples when that is given; the other splits are cut from `task.load` by `split` (where a
    size of None means all the rest).
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    fixed = dict(task.fixed_splits(root)) if task.fixed_splits is not None else {}
    parts: dict[str, tuple[Example, ...]] = {}
    for name, examples in fixed.items():
        n = sizes[name]
        if n is not None and n > len(examples):
            raise DataError(f"splits.{name} asks for {n} examples but the {name} file holds {len(examples)}")
        parts[name] = tuple(examples) if n is None else split(examples, train=n, seed=seed).train
    pooled = [name for name in SPLIT_NAMES if name not in fixed]
    if pooled:
        cut = split(task.load(root), **{name: sizes[name] for name in pooled}, **dict.fromkeys(fixed, 0), seed=seed)
        parts.update({name: getattr(cut, name) for name in pooled})
    result = Split(train=parts["train"], val=parts["val"], test=parts["test"])
    result.check(content=False)
    return result


__all__ = ["SPLIT_NAMES", "task_splits"]
