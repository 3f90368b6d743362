"""Prompt parameters: the part of a module an optimizer may change (its instruction and its demos)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prompthone.program.values import format_value


class Demo(Mapping[str, str]):
    """One worked example shown to the model: field name -> text, for inputs and outputs (and reasoning).

    Values are stored as the text a prompt shows (`format_value`), so a demo taken from a trace renders
    exactly what the module saw, and demos hash and serialize without caring where they came from.
    Immutable and hashable, because candidates that contain demos are used as keys.
    """

    __slots__ = ("_data", "_hash")

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **fields: Any) -> None:
        merged = dict(data)
        merged.update(fields)
        clean: dict[str, str] = {}
        for key, value in merged.items():
            if not isinstance(key, str) or not key.isidentifier():
                raise ValueError(f"demo field names must be identifiers like 'question', got {key!r}")
            if value is None:
                raise ValueError(f"demo field {key!r} is None; leave the field out instead")
            clean[key] = format_value(value)
        if not clean:
            raise ValueError("a demo needs at least one field")
        object.__setattr__(self, "_data", clean)
        object.__setattr__(self, "_hash", hash(tuple(sorted(clean.items()))))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Demo is immutable; build a new one instead")

    def __getitem__(self, key: str) -> str:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Demo):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Demo({self._data!r})"

    def to_dict(self) -> dict[str, str]:
        return dict(self._data)


#: Where the instruction sits in the rendered prompt (OPRO's positions; see `render_messages`):
#: its own system section before the question (the default), first or last in the question's user
#: turn, or as the start of the answer (the assistant turn is pre-filled with it).
POSITIONS = ("system", "question_begin", "question_end", "answer_start")
DEFAULT_POSITION = "system"


@dataclass(frozen=True)
class PromptParams:
    """What one module says besides its inputs: an instruction, an ordered tuple of demos, and where
    the instruction sits (`position`, one of `POSITIONS`).

    A module owns its default `PromptParams` the way a torch module owns its weights; a `Candidate`
    assigns one to every module of a program. The position belongs here, not to the module, because
    it is part of what is sent: two candidates that differ only in it score differently.
    """

    instruction: str
    demos: tuple[Demo, ...] = ()
    position: str = DEFAULT_POSITION

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str):
            raise TypeError(f"instruction must be a string, got {type(self.instruction).__name__}")
        if self.position not in POSITIONS:
            raise ValueError(f"instruction position must be one of {list(POSITIONS)}, got {self.position!r}")
        if isinstance(self.demos, Mapping | str):
            raise TypeError("demos must be a sequence of demos (mappings), not a single mapping or string")
        demos = tuple(d if isinstance(d, Demo) else Demo(d) for d in self.demos)
        object.__setattr__(self, "demos", demos)

    def with_instruction(self, instruction: str) -> PromptParams:
        return PromptParams(instruction, self.demos, self.position)

    def with_demos(self, demos: Iterable[Mapping[str, Any]]) -> PromptParams:
        return PromptParams(self.instruction, tuple(demos), self.position)

    def with_position(self, position: str) -> PromptParams:
        return PromptParams(self.instruction, self.demos, position)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instruction": self.instruction, "demos": [d.to_dict() for d in self.demos]}
        if self.position != DEFAULT_POSITION:  # left out by default, so existing candidate hashes stay the same
            out["position"] = self.position
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptParams:
        if not isinstance(data, Mapping) or "instruction" not in data:
            raise ValueError(f"prompt params need an 'instruction' key (and optional 'demos'), got {data!r}")
        extra = set(data) - {"instruction", "demos", "position"}
        if extra:
            raise ValueError(
                f"unknown prompt params key(s) {sorted(extra)}; expected 'instruction', 'demos', 'position'"
            )
        demos = data.get("demos") or []
        if not isinstance(demos, list | tuple):
            raise ValueError(f"'demos' must be a list of objects, got {type(demos).__name__}")
        return cls(data["instruction"], tuple(demos), data.get("position", DEFAULT_POSITION))
