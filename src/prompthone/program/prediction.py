"""`Prediction`: outputs of a module or program, readable as a mapping or as attributes."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from prompthone.program.parse import ParseFailure


class Prediction(Mapping[str, Any]):
    """Output fields by name (`pred["answer"]` or `pred.answer`), plus any parse failures behind them.

    A field that could not be parsed holds None and `failures` says why, so a pipeline keeps going and
    the run reports the failure instead of crashing or passing an empty string on as an answer.
    """

    __slots__ = ("_failures", "_values")

    def __init__(self, values: Mapping[str, Any], *, failures: tuple[ParseFailure, ...] = ()) -> None:
        object.__setattr__(self, "_values", dict(values))
        object.__setattr__(self, "_failures", tuple(failures))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Prediction is read-only; build a dict for new outputs")

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(f"prediction has no field {name!r}; it has {list(self._values)}") from None

    @property
    def failures(self) -> tuple[ParseFailure, ...]:
        return self._failures

    @property
    def ok(self) -> bool:
        return not self._failures

    def to_dict(self) -> dict[str, Any]:
        return dict(self._values)

    def __repr__(self) -> str:
        extra = f", failures={len(self._failures)}" if self._failures else ""
        return f"Prediction({self._values!r}{extra})"
