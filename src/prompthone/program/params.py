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

#: How a module's prompt is laid out and its reply read (see `prompthone.program.render` for each layout):
#: "labels" (`Label: value` lines, the instruction first), "recap" (the same lines, the instruction after
#: the field list and a reminder of the expected outputs at the end of the last user turn), "tags"
#: (`<field>value</field>` markers, with the same reminder) and "json" (a JSON object reply, with the
#: same reminder). Each is a render + parse pair; an optimizer may search it like the instruction.
PROMPT_FORMATS = ("labels", "recap", "tags", "json")
#: the format a module starts in when it names none (`Module(format=None)`) and its model names no start
#: format of its own (`EmbeddedModel.start_format`, `LM(start_format=...)`): a JSON object reply. Of the
#: zero-shot starts measured in `benchmarks/formats.py` (docs/benchmarks.md, "Prompt formats"), JSON is
#: the best on the 0.5B model's mean over the tasks without reasoning and never below DSPy's own rendering
#: beyond its confidence interval; the 1.5B model reads `labels` best, so its catalog entry names that.
#: Modules that reason first (`ChainOfThought`) start in `REASONING_FORMAT` on every model.
DEFAULT_FORMAT = "json"
#: a start format (`RunSpec.start_format`, `--start-format`) that is no format: each module starts in its
#: own class default, whatever the model (what every run did before models had start formats)
MODULE_DEFAULTS = "module"
#: what a start format may be named as (`--start-format`, `start_format=`)
START_FORMATS = (*PROMPT_FORMATS, MODULE_DEFAULTS)
#: the format a reasoning module starts in: inside a JSON reply the small models write one sentence of
#: "reasoning" and then a guess (GSM8K, 0.5B: 0% in JSON against 15% in `Label:` lines), so a module that
#: must think out loud keeps the plain field lines, where the reasoning is free text
REASONING_FORMAT = "labels"
#: what `PromptParams` without a format, and a stored candidate without a "format" key, mean: the only
#: layout there was before formats were named, so old runs and hashes keep their meaning
LEGACY_FORMAT = "labels"


@dataclass(frozen=True)
class PromptParams:
    """What one module says besides its inputs: an instruction, an ordered tuple of demos, where
    the instruction sits (`position`, one of `POSITIONS`) and the prompt layout (`format`, one of
    `PROMPT_FORMATS`).

    A module owns its default `PromptParams` the way a torch module owns its weights; a `Candidate`
    assigns one to every module of a program. The position and the format belong here, not to the
    module, because they are part of what is sent: two candidates that differ only in them score
    differently, and an optimizer can search them like the instruction.
    """

    instruction: str
    demos: tuple[Demo, ...] = ()
    position: str = DEFAULT_POSITION
    format: str = LEGACY_FORMAT

    def __post_init__(self) -> None:
        if not isinstance(self.instruction, str):
            raise TypeError(f"instruction must be a string, got {type(self.instruction).__name__}")
        if self.position not in POSITIONS:
            raise ValueError(f"instruction position must be one of {list(POSITIONS)}, got {self.position!r}")
        if self.format not in PROMPT_FORMATS:
            raise ValueError(f"prompt format must be one of {list(PROMPT_FORMATS)}, got {self.format!r}")
        if isinstance(self.demos, Mapping | str):
            raise TypeError("demos must be a sequence of demos (mappings), not a single mapping or string")
        demos = tuple(d if isinstance(d, Demo) else Demo(d) for d in self.demos)
        object.__setattr__(self, "demos", demos)

    def with_instruction(self, instruction: str) -> PromptParams:
        return PromptParams(instruction, self.demos, self.position, self.format)

    def with_demos(self, demos: Iterable[Mapping[str, Any]]) -> PromptParams:
        return PromptParams(self.instruction, tuple(demos), self.position, self.format)

    def with_position(self, position: str) -> PromptParams:
        return PromptParams(self.instruction, self.demos, position, self.format)

    def with_format(self, format: str) -> PromptParams:
        return PromptParams(self.instruction, self.demos, self.position, format)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"instruction": self.instruction, "demos": [d.to_dict() for d in self.demos]}
        if self.position != DEFAULT_POSITION:  # left out by default, so existing candidate hashes stay the same
            out["position"] = self.position
        # Left out only for the legacy layout (not for whatever the default is), so a stored candidate
        # keeps meaning the prompt it was scored with even if the default changes.
        if self.format != LEGACY_FORMAT:
            out["format"] = self.format
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PromptParams:
        if not isinstance(data, Mapping) or "instruction" not in data:
            raise ValueError(f"prompt params need an 'instruction' key (and optional 'demos'), got {data!r}")
        extra = set(data) - {"instruction", "demos", "position", "format"}
        if extra:
            raise ValueError(
                f"unknown prompt params key(s) {sorted(extra)}; expected 'instruction', 'demos', 'position', 'format'"
            )
        demos = data.get("demos") or []
        if not isinstance(demos, list | tuple):
            raise ValueError(f"'demos' must be a list of objects, got {type(demos).__name__}")
        return cls(
            data["instruction"], tuple(demos), data.get("position", DEFAULT_POSITION), data.get("format", LEGACY_FORMAT)
        )
