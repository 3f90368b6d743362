"""One settings style for every method: a frozen dataclass of the method's knobs, checked when it is made.

A method's settings class (`MIPROSettings`, `OPROSettings`, `GradSumSettings`, the baselines') derives
from `MethodSettings`: its fields are the settings a config's `settings:` or `--set` may give, with
their types and defaults; `build(**values)` names unknown settings and lists the known ones; making one
checks every value against its field's type and then the method's own rules (`validate`). Every mistake
is a `SettingError` naming the method, the key and what was expected, so the config loader can report
it under `settings.<key>` and the CLI under `--set <key>`. Values are kept as given (an int where a
float is allowed stays an int) unless `validate` normalizes them, so what a stored run recorded and
fingerprinted stays the same.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import Any, ClassVar, TypeVar

from pydantic import TypeAdapter, ValidationError


class SettingError(ValueError):
    """One optimizer setting has a value of the wrong kind; `key` names it, for the config key or flag.
    `reason` is what is wrong without the "<method> setting <key>: " lead a type mistake's message starts
    with (a flag that names the key itself shows only this); a rule's sentence is its whole message."""

    def __init__(self, key: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.key = key
        self.reason = message if reason is None else reason

    @classmethod
    def of_type(cls, method: str, key: str, reason: str) -> SettingError:
        """A value that cannot be read as the setting's type: "<method> setting <key>: <reason>"."""
        return cls(key, f"{method} setting {key}: {reason}", reason=reason)


def expected(exc: ValidationError) -> str:
    """Pydantic's first reason, as 'expected ...' ("Input should be a valid integer" -> "expected a valid integer")."""
    msg = exc.errors()[0]["msg"]
    msg = msg.split(", unable to")[0]
    return "expected " + msg.removeprefix("Input should be ")


def check_type(method: str, key: str, hint: Any, value: Any) -> None:
    """Raise `SettingError` when `value` cannot be read as `hint` (`num_trials="abc"` names num_trials,
    not "invalid literal for int()"). A bool is not taken for a number."""
    if isinstance(value, bool) and hint in (int, float, int | None, float | None):
        raise SettingError.of_type(method, key, f"expected a number, got {value!r}")
    try:
        adapter = TypeAdapter(hint)
    except Exception:  # pragma: no cover - a type pydantic cannot check: the method's validate does
        return
    try:
        adapter.validate_python(value)
    except ValidationError as exc:
        raise SettingError.of_type(method, key, f"{expected(exc)}, got {value!r}") from None


S = TypeVar("S", bound="MethodSettings")


@dataclass(frozen=True)
class MethodSettings:
    """The base of every method's settings dataclass; subclasses add fields and `validate`."""

    #: the method's name in messages ("opro setting steps must be ...")
    method: ClassVar[str] = "optimizer"

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):
            check_type(self.method, f.name, hints[f.name], getattr(self, f.name))
        self.validate()

    def validate(self) -> None:
        """The method's own rules (ranges, choices); raise `SettingError` through the helpers below."""

    @classmethod
    def known(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def build(cls: type[S], **values: Any) -> S:
        """Settings from `values` (the rest default); unknown names raise, listing the known ones."""
        unknown = sorted(set(values) - set(cls.known()))
        if unknown:
            raise TypeError(f"unknown {cls.method} setting(s) {unknown}; known settings: {', '.join(cls.known())}")
        return cls(**values)

    def replace(self: S, **changes: Any) -> S:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    # -- the rules, each naming the key ---------------------------------------------------------------
    def _fail(self, key: str, what: str) -> None:
        raise SettingError(key, f"{self.method} setting {key} must be {what}, got {getattr(self, key)!r}")

    def at_least(self, key: str, low: int, *, optional: bool = False) -> None:
        """An integer >= `low` (or None when `optional`)."""
        v = getattr(self, key)
        if optional and v is None:
            return
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            self._fail(key, f"an integer >= {low}" + (" or None" if optional else ""))

    def in_range(self, key: str, low: float, high: float, *, low_open: bool = False, normalize: bool = True) -> None:
        """A number in [low, high] (or (low, high] when `low_open`); stored as a float when `normalize`."""
        v = getattr(self, key)
        ok = isinstance(v, int | float) and not isinstance(v, bool)
        if not ok or not (low < v if low_open else low <= v) or v > high:
            self._fail(key, f"in {'(' if low_open else '['}{low:g}, {high:g}]")
        if normalize:
            self.normalize(key, float(v))

    def one_of(self, key: str, choices: Sequence[Any]) -> None:
        if getattr(self, key) not in choices:
            self._fail(key, f"one of {list(choices)}")

    def boolean(self, key: str) -> None:
        if not isinstance(getattr(self, key), bool):
            self._fail(key, "true or false")

    def normalize(self, key: str, value: Any) -> None:
        """Store `value` for `key` (a frozen dataclass is set once, while it is being made)."""
        object.__setattr__(self, key, value)
