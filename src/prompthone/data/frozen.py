"""Deep-immutable copies of JSON-like values, so an `Example` can be shared and hashed safely.

Examples travel through caches, worker tasks and optimizer state; if one caller could mutate a label
in place, every other holder of the example would silently see the change. Freezing at construction
removes that class of bug: dicts become `FrozenMap`, lists become tuples, sets become frozensets.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class FrozenMap(Mapping[str, Any]):
    """A read-only, hashable mapping that compares equal to any mapping with the same items."""

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | None = None) -> None:
        self._data: dict[str, Any] = dict(data or {})
        self._hash: int | None = None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(frozenset(self._data.items()))
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self._data == dict(other.items())
        return NotImplemented

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def freeze(value: Any) -> Any:
    """Return a deep-immutable copy: mappings -> FrozenMap, lists/tuples -> tuple, sets -> frozenset."""
    if isinstance(value, FrozenMap):
        return value
    if isinstance(value, Mapping):
        return FrozenMap({str(k): freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    return value


def thaw(value: Any) -> Any:
    """The inverse of `freeze` for JSON: FrozenMap -> dict, tuple -> list (sets become sorted lists)."""
    if isinstance(value, Mapping):
        return {k: thaw(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [thaw(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((thaw(v) for v in value), key=repr)
    return value


__all__ = ["FrozenMap", "freeze", "thaw"]
