"""A task's train / validation / test examples for a run: fixed files where the task has them, else a seeded cut.

One function, so that an optimization, an evaluation and the config check all see the same splits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from prompthone.data import DataError, Example, Split, split
from prompthone.tasks.task import Root, Task

SPLIT_NAMES = ("train", "val", "test")


class SplitSizeError(ValueError):
    """The splits ask for more examples than the data holds. `message(keys)` names the keys of the
    front end the sizes came from (config keys by default, the CLI gives its flags)."""

    CONFIG_KEYS: ClassVar[dict[str, str]] = {"train": "splits.train", "val": "splits.val", "test": "splits.test"}

    def __init__(self, source: str, available: int, sizes: Mapping[str, int]) -> None:
        self.source, self.available, self.sizes = source, available, dict(sizes)
        super().__init__(self.message(self.CONFIG_KEYS))

    def message(self, keys: Mapping[str, str]) -> str:
        asked = ", ".join(f"{keys[k]} = {v}" for k, v in self.sizes.items())
        return (
            f"{self.source} holds {self.available} examples, fewer than the {sum(self.sizes.values())} the splits "
            f"ask for ({asked}); lower them so that they add up to at most {self.available}"
        )


def task_splits(
    task: Task,
    *,
    n_train: int | float | None,
    n_val: int | float | None,
    n_test: int | float | None,
    seed: int,
    root: Root = None,
    source: str = "the data",
) -> Split:
    """The run's splits. A split the task fixes (its own file) is used whole, or as a seeded sample of
    `n_<split>` examples when that is given; the other splits are cut from `task.load` by `split` (where a
    size of None means all the rest, and a float a share). `source` names the data in a `SplitSizeError`.
    """
    sizes = {"train": n_train, "val": n_val, "test": n_test}
    fixed = dict(task.fixed_splits(root)) if task.fixed_splits is not None else {}
    parts: dict[str, tuple[Example, ...]] = {}
    for name, examples in fixed.items():
        n = sizes[name]
        if isinstance(n, int) and n > len(examples):
            raise DataError(f"splits.{name} asks for {n} examples but the {name} file holds {len(examples)}")
        parts[name] = tuple(examples) if n is None else split(examples, train=n, seed=seed).train
    pooled = {name: sizes[name] for name in SPLIT_NAMES if name not in fixed}
    if pooled:
        pool = task.load(root)
        counts = {k: v for k, v in pooled.items() if isinstance(v, int) and not isinstance(v, bool)}
        if len(counts) == len(pooled) and sum(counts.values()) > len(pool):
            raise SplitSizeError(source, len(pool), counts)
        cut = split(pool, **pooled, **dict.fromkeys(fixed, 0), seed=seed)
        parts.update({name: getattr(cut, name) for name in pooled})
    result = Split(train=parts["train"], val=parts["val"], test=parts["test"])
    result.check(content=False)
    return result


__all__ = ["SPLIT_NAMES", "SplitSizeError", "task_splits"]
