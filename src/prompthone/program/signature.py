"""Signatures: what a module takes, what it must produce, and the instruction it starts from."""

from __future__ import annotations

import functools
import keyword
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass

from prompthone.program.values import label_key, label_of


class SignatureError(ValueError):
    """A signature is malformed: bad field names, overlapping fields, or no output."""


@dataclass(frozen=True)
class Field:
    """One named input or output, with a short description shown to the model."""

    name: str
    description: str = ""

    @functools.cached_property  # read on every render and parse; a frozen field's label never changes
    def label(self) -> str:
        return label_of(self.name)


FieldsSpec = Mapping[str, str] | Iterable[str] | str


def _fields(spec: FieldsSpec, side: str) -> tuple[Field, ...]:
    if isinstance(spec, str):
        items = [(n.strip(), "") for n in spec.split(",")]
    elif isinstance(spec, Mapping):
        items = list(spec.items())
    else:
        items = [(n, "") for n in spec]
    out: list[Field] = []
    for name, desc in items:
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name):
            raise SignatureError(
                f"{side} field name {name!r} is not a valid identifier; "
                "field names must look like Python variable names, e.g. 'question' or 'search_query'"
            )
        if not label_of(name):
            raise SignatureError(f"{side} field name {name!r} has no letters or digits to label it with")
        if not isinstance(desc, str):
            raise SignatureError(f"description of {side} field {name!r} must be a string, got {desc!r}")
        out.append(Field(name, desc.strip()))
    return tuple(out)


class Signature:
    """The contract of one module: named inputs, named outputs (in reply order) and an instruction.

    >>> Signature(inputs={"question": ""}, outputs={"answer": "a number"}, instruction="Solve it.")
    >>> Signature.parse("context, question -> reasoning, answer")

    Immutable, so that modules and candidates can share one without defensive copies.
    """

    __slots__ = ("_input_names", "_inputs", "_instruction", "_output_names", "_outputs")

    def __init__(self, inputs: FieldsSpec, outputs: FieldsSpec, instruction: str = "") -> None:
        if not isinstance(instruction, str):
            raise SignatureError(f"instruction must be a string, got {type(instruction).__name__}")
        ins, outs = _fields(inputs, "input"), _fields(outputs, "output")
        if not outs:
            raise SignatureError("a signature needs at least one output field, e.g. 'question -> answer'")
        seen: dict[str, tuple[str, str]] = {}
        for side, fields in (("input", ins), ("output", outs)):
            for f in fields:
                key = label_key(f.name)
                if key in seen:
                    other_side, other_name = seen[key]
                    if other_name == f.name and other_side == side:
                        raise SignatureError(f"{side} field {f.name!r} is listed twice")
                    if other_name == f.name:
                        raise SignatureError(f"field {f.name!r} is both an input and an output")
                    raise SignatureError(
                        f"{side} field {f.name!r} clashes with {other_side} field {other_name!r}: names must "
                        "differ by more than case and underscores, as replies are matched to labels that way"
                    )
                seen[key] = (side, f.name)
        object.__setattr__(self, "_inputs", ins)
        object.__setattr__(self, "_outputs", outs)
        object.__setattr__(self, "_instruction", instruction.strip())
        # read on every module call (input checks, rendering, parsing), so built once
        object.__setattr__(self, "_input_names", tuple(f.name for f in ins))
        object.__setattr__(self, "_output_names", tuple(f.name for f in outs))

    @classmethod
    def parse(cls, text: str, instruction: str = "") -> Signature:
        """Build a signature from the shorthand `"context, question -> reasoning, answer"`."""
        if not isinstance(text, str) or text.count("->") != 1:
            raise SignatureError(
                f"invalid signature {text!r}: expected one '->' between inputs and outputs, "
                "e.g. 'question -> answer' or 'context, question -> reasoning, answer'"
            )
        left, right = (s.strip() for s in text.split("->"))
        if not right:
            raise SignatureError(f"invalid signature {text!r}: no output field after '->'")
        inputs = [n.strip() for n in left.split(",")] if left else []
        outputs = [n.strip() for n in right.split(",")]
        return cls(inputs, outputs, instruction)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Signature is immutable; build a new one instead")

    def __copy__(self) -> Signature:
        return self  # immutable: a copy of a program shares its signatures

    def __deepcopy__(self, memo: dict) -> Signature:
        return self

    @property
    def inputs(self) -> tuple[Field, ...]:
        return self._inputs

    @property
    def outputs(self) -> tuple[Field, ...]:
        return self._outputs

    @property
    def input_names(self) -> tuple[str, ...]:
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        return self._output_names

    @property
    def instruction(self) -> str:
        """The instruction as written, or a plain one derived from the fields when none was given."""
        if self._instruction:
            return self._instruction
        ins = ", ".join(f"`{n}`" for n in self.input_names)
        outs = ", ".join(f"`{n}`" for n in self.output_names)
        return f"Given the fields {ins}, produce the fields {outs}." if ins else f"Produce the fields {outs}."

    def with_instruction(self, instruction: str) -> Signature:
        return Signature(self._as_map(self._inputs), self._as_map(self._outputs), instruction)

    def prepend_output(self, name: str, description: str = "") -> Signature:
        """A copy with one more output placed first, as chain-of-thought puts reasoning before answers."""
        if name in self.output_names:
            return self
        outs = {name: description, **self._as_map(self._outputs)}
        return Signature(self._as_map(self._inputs), outs, self._instruction)

    def keep_outputs(self, names: Collection[str]) -> Signature:
        """A copy with only these outputs (in their order), as a follow-up asks for the ones a reply lacked."""
        outs = {f.name: f.description for f in self._outputs if f.name in names}
        return Signature(self._as_map(self._inputs), outs, self._instruction)

    @staticmethod
    def _as_map(fields: tuple[Field, ...]) -> dict[str, str]:
        return {f.name: f.description for f in fields}

    def shorthand(self) -> str:
        return f"{', '.join(self.input_names)} -> {', '.join(self.output_names)}"

    def __repr__(self) -> str:
        return f"Signature({self.shorthand()!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Signature):
            return NotImplemented
        return (self._inputs, self._outputs, self._instruction) == (
            other._inputs,
            other._outputs,
            other._instruction,
        )

    def __hash__(self) -> int:
        return hash((self._inputs, self._outputs, self._instruction))


def as_signature(spec: Signature | str) -> Signature:
    """Accept a `Signature` or its shorthand string, the two ways modules are declared."""
    if isinstance(spec, Signature):
        return spec
    if isinstance(spec, str):
        return Signature.parse(spec)
    raise SignatureError(f"expected a Signature or a string like 'question -> answer', got {spec!r}")
