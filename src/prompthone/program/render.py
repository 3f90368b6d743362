"""Rendering: a module's signature, prompt params and inputs become chat messages.

This is the only place prompt text is written. Module calls, `render_prompts` (portable prompts) and
the parser's knowledge of labels all go through here, so what is exported is what was sent.

Layout, chosen for small models:
- system: the instruction, the input and output fields with their descriptions, then the reply format
  as bare `Label: ...` lines. Field descriptions live in the field list, never in the reply template:
  a 0.5B model copied a note written into the answer slot into its answers.
- each demo: a user turn with its inputs and an assistant turn with its outputs, exactly as a real reply
  should look, so the model sees the format used rather than only described.
- last, a user turn with the inputs of this call.

The instruction's `position` (OPRO's placements) moves only the instruction: "system" (default) as
above; "question_begin"/"question_end" put it first/last in the final user turn (demo turns are left
as they are, so demos stay plain worked examples); "answer_start" ends the chat with an assistant
message holding it, which backends that support it continue (pre-fill) rather than answer afresh.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from prompthone.lm.types import Message
from prompthone.program.params import Demo, PromptParams
from prompthone.program.signature import Field, Signature
from prompthone.program.values import format_value

TEMPLATE_VALUE = "..."
NO_INPUTS = "(no inputs)"


class Placeholder:
    """An input left unfilled in a portable prompt; it renders as `{name}`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"Placeholder({self.name!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Placeholder) and other.name == self.name

    def __hash__(self) -> int:
        return hash(("placeholder", self.name))


def _text(value: Any) -> str:
    if isinstance(value, Placeholder):
        return "{" + value.name + "}"
    return format_value(value)


def _field_line(field: Field) -> str:
    return f"- {field.label}: {field.description}" if field.description else f"- {field.label}"


def _labelled(field: Field, text: str) -> str:
    # A multi-line value starts on its own line, so the label line never runs into a paragraph.
    return f"{field.label}:\n{text}" if "\n" in text else f"{field.label}: {text}"


def output_schema(signature: Signature) -> dict[str, Any]:
    """The JSON schema of a reply, for backends that can constrain decoding to it."""
    props: dict[str, Any] = {}
    for f in signature.outputs:
        props[f.name] = {"type": "string", **({"description": f.description} if f.description else {})}
    return {
        "type": "object",
        "properties": props,
        "required": list(signature.output_names),
        "additionalProperties": False,
    }


def system_message(signature: Signature, instruction: str, *, structured: bool = False) -> str:
    parts = [instruction.strip()] if instruction.strip() else []
    if signature.inputs:
        parts.append("Input fields:\n" + "\n".join(_field_line(f) for f in signature.inputs))
    parts.append("Output fields:\n" + "\n".join(_field_line(f) for f in signature.outputs))
    if structured:
        keys = ", ".join(f'"{n}"' for n in signature.output_names)
        parts.append(f"Reply format: one JSON object with these string keys, in this order: {keys}.")
    else:
        template = "\n".join(f"{f.label}: {TEMPLATE_VALUE}" for f in signature.outputs)
        parts.append(
            "Reply format: write each output field on its own line, starting with its label, in this "
            "order (a value may continue on the following lines):\n" + template
        )
    return "\n\n".join(parts)


def user_message(signature: Signature, inputs: Mapping[str, Any]) -> str:
    text = "\n".join(_labelled(f, _text(inputs[f.name])) for f in signature.inputs if f.name in inputs)
    return text or NO_INPUTS


def assistant_message(signature: Signature, outputs: Mapping[str, Any], *, structured: bool = False) -> str:
    present = [f for f in signature.outputs if f.name in outputs]
    if structured:
        return json.dumps({f.name: _text(outputs[f.name]) for f in present}, ensure_ascii=False)
    return "\n".join(_labelled(f, _text(outputs[f.name])) for f in present)


def _check_demo(signature: Signature, demo: Demo, index: int) -> None:
    if signature.inputs and not any(n in demo for n in signature.input_names):
        raise ValueError(
            f"demo {index} has none of the input fields {list(signature.input_names)} (it has {list(demo)})"
        )
    if not any(n in demo for n in signature.output_names):
        raise ValueError(
            f"demo {index} has none of the output fields {list(signature.output_names)} (it has {list(demo)})"
        )


def check_inputs(signature: Signature, inputs: Mapping[str, Any], where: str = "module") -> None:
    """Reject missing or unexpected inputs, naming both, before anything is sent."""
    missing = [n for n in signature.input_names if n not in inputs]
    extra = [n for n in inputs if n not in signature.input_names]
    if missing or extra:
        problems = []
        if missing:
            problems.append(f"missing input(s) {missing}")
        if extra:
            problems.append(f"unexpected input(s) {extra}")
        raise TypeError(f"{where}: {'; '.join(problems)}; it takes {list(signature.input_names)}")


def render_messages(
    signature: Signature,
    params: PromptParams,
    inputs: Mapping[str, Any],
    *,
    structured: bool = False,
) -> list[Message]:
    """The chat messages a module sends for these inputs (use `Placeholder`s for a template).

    Demos may lack some fields (a labelled example has no reasoning): those fields are left out of
    its turns. Fields a demo has beyond the signature are ignored.
    """
    position, instruction = params.position, params.instruction.strip()
    in_system = params.instruction if position == "system" else ""
    messages: list[Message] = [
        {"role": "system", "content": system_message(signature, in_system, structured=structured)}
    ]
    for i, demo in enumerate(params.demos):
        _check_demo(signature, demo, i)
        messages.append({"role": "user", "content": user_message(signature, demo)})
        messages.append({"role": "assistant", "content": assistant_message(signature, demo, structured=structured)})
    question = user_message(signature, inputs)
    if instruction and position == "question_begin":
        question = f"{instruction}\n\n{question}"
    elif instruction and position == "question_end":
        question = f"{question}\n\n{instruction}"
    messages.append({"role": "user", "content": question})
    if instruction and position == "answer_start":
        messages.append({"role": "assistant", "content": instruction})
    return messages
