"""Seeded train/val/test splits that come out the same on every machine, and leak checks between them.

Reproducibility rests on `random.Random(seed)` (Mersenne Twister, platform independent) shuffling the
examples in the order given; nothing depends on `hash()`, which is randomized per process for strings.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

from prompthone.data.errors import DataError, SplitOverlapError
from prompthone.data.example import Example

Size = int | float | None


@dataclass(frozen=True)
class Split:
    """The three parts of a split; `check()` re-verifies they share no id and no content."""

    train: tuple[Example, ...]
    val: tuple[Example, ...]
    test: tuple[Example, ...]

    def check(self, *, content: bool = True) -> None:
        """Raise `SplitOverlapError` if the parts overlap (see `check_disjoint`)."""
        check_disjoint(self.train, self.val, self.test, names=("train", "val", "test"), content=content)


@dataclass(frozen=True)
class ContentDuplicate:
    """Examples in different splits whose inputs are the same (see `Example.content_key`)."""

    content_key: str
    ids: tuple[tuple[str, str], ...]  # (split name, example id) pairs, at least two split names


def split(
    examples: Sequence[Example],
    *,
    train: Size = None,
    val: Size = 0,
    test: Size = 0,
    seed: int | str,
) -> Split:
    """Shuffle `examples` with `random.Random(seed)` and cut them into train, val and test.

    Each size is a count (int), a fraction of `len(examples)` (float in [0, 1]), or None for "all the
    rest" (at most one None). Fractions round down, except that fractions summing to 1 use every
    example (the remainders go to the parts with the largest fractional parts, train first on ties).
    The result depends only on the seed and the order of `examples`.
    """
    if isinstance(seed, bool) or not isinstance(seed, int | str):
        raise TypeError(f"seed must be an int or a str, got {seed!r}")
    seen: set[str] = set()
    for ex in examples:
        if ex.id in seen:
            raise DataError(f"duplicate example id {ex.id!r} in the examples to split")
        seen.add(ex.id)
    n = len(examples)
    counts = _counts(n, {"train": train, "val": val, "test": test})
    order = list(examples)
    random.Random(seed).shuffle(order)
    a, b = counts["train"], counts["train"] + counts["val"]
    return Split(
        train=tuple(order[:a]),
        val=tuple(order[a:b]),
        test=tuple(order[b : b + counts["test"]]),
    )


def _counts(n: int, sizes: dict[str, Size]) -> dict[str, int]:
    nones = [k for k, v in sizes.items() if v is None]
    if len(nones) > 1:
        raise ValueError(f"only one split size may be None (all the rest), got None for {', '.join(nones)}")
    counts: dict[str, int] = {}
    fractions: dict[str, float] = {}
    for name, size in sizes.items():
        if size is None:
            continue
        if isinstance(size, bool) or not isinstance(size, int | float):
            raise TypeError(f"{name} must be a count (int), a fraction (float) or None, got {size!r}")
        if isinstance(size, int):
            if size < 0:
                raise ValueError(f"{name} must be >= 0, got {size}")
            counts[name] = size
        else:
            if not 0.0 <= size <= 1.0 or math.isnan(size):
                raise ValueError(f"{name} as a fraction must be in [0, 1], got {size}")
            fractions[name] = size
            counts[name] = math.floor(size * n + 1e-9)
    others = [counts[k] for k in counts.keys() - fractions.keys()]
    if fractions and math.isclose(sum(fractions.values()), 1.0) and not any(others):
        # The fractions cover everything: hand out the examples lost to rounding down.
        left = n - sum(counts.values())
        by_remainder = sorted(fractions, key=lambda k: -(fractions[k] * n - counts[k]))
        for name in by_remainder[:left]:
            counts[name] += 1
    fixed = sum(counts.values())
    if fixed > n:
        asked = ", ".join(f"{k}={counts[k]}" for k in sizes if k in counts)
        raise ValueError(f"the split asks for {fixed} examples ({asked}) but only {n} were given")
    for name in nones:
        counts[name] = n - fixed
    return counts


def find_content_duplicates(*splits: Sequence[Example], names: Sequence[str] | None = None) -> list[ContentDuplicate]:
    """Inputs that occur in more than one split under different ids, in first-seen order."""
    labels = _names(splits, names)
    groups: dict[str, list[tuple[str, str]]] = {}
    for name, part in zip(labels, splits, strict=True):
        for ex in part:
            groups.setdefault(ex.content_key(), []).append((name, ex.id))
    return [
        ContentDuplicate(content_key=key, ids=tuple(members))
        for key, members in groups.items()
        if len({s for s, _ in members}) > 1
    ]


def check_disjoint(*splits: Sequence[Example], names: Sequence[str] | None = None, content: bool = True) -> None:
    """Raise `SplitOverlapError` naming every id found in two splits, and (if `content`) every pair of
    examples with the same inputs in two splits: both would make held-out scores look better than they are.
    """
    labels = _names(splits, names)
    where: dict[str, str] = {}
    shared: list[str] = []
    for name, part in zip(labels, splits, strict=True):
        for ex in part:
            if ex.id in where and where[ex.id] != name:
                shared.append(f"{ex.id!r} ({where[ex.id]} and {name})")
            where.setdefault(ex.id, name)
    problems: list[str] = []
    if shared:
        problems.append(f"{len(shared)} id(s) in more than one split: {_some(shared)}")
    if content:
        dups = find_content_duplicates(*splits, names=labels)
        if dups:
            shown = [" = ".join(f"{i!r} ({s})" for s, i in d.ids) for d in dups]
            problems.append(
                f"{len(dups)} input(s) repeated across splits under different ids: {_some(shown)} "
                "(drop them with dedupe_by_content() before splitting)"
            )
    if problems:
        raise SplitOverlapError("; ".join(problems))


def dedupe_by_content(examples: Sequence[Example]) -> list[Example]:
    """Keep the first example of each distinct input (`Example.content_key`), in order."""
    seen: set[str] = set()
    out: list[Example] = []
    for ex in examples:
        key = ex.content_key()
        if key not in seen:
            seen.add(key)
            out.append(ex)
    return out


def _names(splits: tuple[Sequence[Example], ...], names: Sequence[str] | None) -> list[str]:
    if names is None:
        return [f"split {i + 1}" for i in range(len(splits))]
    if len(names) != len(splits):
        raise ValueError(f"got {len(names)} name(s) for {len(splits)} split(s)")
    return list(names)


def _some(items: list[str], limit: int = 10) -> str:
    more = f" and {len(items) - limit} more" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


__all__ = [
    "ContentDuplicate",
    "Split",
    "check_disjoint",
    "dedupe_by_content",
    "find_content_duplicates",
    "split",
]
