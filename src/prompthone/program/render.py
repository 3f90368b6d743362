"""Rendering: a module's signature, prompt params and inputs become chat messages.

This is the only place prompt text is written. Module calls, `render_prompts` (portable prompts) and
the parser's knowledge of labels all go through here, so what is exported is what was sent.

The layout is the module's prompt format (`PromptParams.format`, one of `PROMPT_FORMATS`); each has a
matching reader in `prompthone.program.parse`. Every format sends the same turns: a system message,
each demo as a user turn with its inputs and an assistant turn with its outputs written exactly as a
real reply should look (so the model sees the format used rather than only described), and last a user
turn with the inputs of this call. Field descriptions live in the field lists and reminders, never in
the reply template: a 0.5B model copied a note written into the answer slot into its answers.

- "labels": the system message is the instruction, the input and output fields with their
  descriptions, then the reply format as bare `Label: ...` lines; turns hold `Label: value` lines.
- "recap": the same `Label: value` turns, but the system message lists the fields first and ends with
  the task's instruction, and the last user turn ends with a reminder of the outputs to write (with
  their descriptions, e.g. the allowed labels). Why: a 0.5B model given "labels" on a 6-way classifier
  answered one label to almost every question; it weighs the end of the prompt most, so the
  instruction and the allowed values are put last. With demos the reminder names the outputs only:
  the demos show what a value looks like, and a list of allowed labels as the last text read pulled
  the same model toward the first label listed ("abbreviation", 3% of TREC, answered 34 times in 200
  behind four demos). Without the list, on the two demo sets DSPy's MIPROv2 chose on trec-label,
  "json" rose 6 and 3.5 points and "tags" 19 points on the set measured both ways (n=200 each;
  `benchmarks/chosen_demos.py`, docs/benchmarks.md).
- "tags": as "recap", with every value inside `<field>...</field>` markers (code-trained models know
  them well and they cannot be confused with text that happens to contain a colon).
- "json": as "recap", with the reply one JSON object (inputs stay `Label: value` lines).

`structured=True` (replies constrained to a JSON schema) writes the reply format and demo outputs as
JSON: "labels" keeps its own layout for it, the other formats render as "json".

The instruction's `position` (OPRO's placements) moves only the instruction: "system" (default) as
above; "question_begin"/"question_end" put it first/last in the final user turn (demo turns are left
as they are, so demos stay plain worked examples); "answer_start" ends the chat with an assistant
message holding it, which backends that support it continue (pre-fill) rather than answer afresh.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from prompthone.lm.types import Message
from prompthone.program.params import PROMPT_FORMATS, Demo, PromptParams
from prompthone.program.signature import Field, Signature
from prompthone.program.values import format_value

#: Which revision of the layouts below renders a prompt that has demos. A benchmark row keys on it, so a
#: row measured before a change that alters what such a prompt sends is measured again, not replayed.
#: 2: behind demos, the closing reminder names the outputs without their descriptions.
DEMO_LAYOUT_REVISION = 2

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


def _reply_template(signature: Signature, structured: bool) -> str:
    if structured:
        keys = ", ".join(f'"{n}"' for n in signature.output_names)
        return f"Reply format: one JSON object with these string keys, in this order: {keys}."
    template = "\n".join(f"{f.label}: {TEMPLATE_VALUE}" for f in signature.outputs)
    return (
        "Reply format: write each output field on its own line, starting with its label, in this "
        "order (a value may continue on the following lines):\n" + template
    )


def _field_lists(signature: Signature) -> list[str]:
    parts = []
    if signature.inputs:
        parts.append("Input fields:\n" + "\n".join(_field_line(f) for f in signature.inputs))
    parts.append("Output fields:\n" + "\n".join(_field_line(f) for f in signature.outputs))
    return parts


def system_message(signature: Signature, instruction: str, *, structured: bool = False) -> str:
    """The "labels" system message: instruction, field lists, reply format."""
    parts = [instruction.strip()] if instruction.strip() else []
    parts += _field_lists(signature)
    parts.append(_reply_template(signature, structured))
    return "\n\n".join(parts)


def _task_last(parts: list[str], instruction: str) -> str:
    if instruction.strip():
        parts.append("Your task:\n" + instruction.strip())
    return "\n\n".join(parts)


def _recap_system(signature: Signature, instruction: str) -> str:
    return _task_last([*_field_lists(signature), _reply_template(signature, False)], instruction)


def _json_system(signature: Signature, instruction: str) -> str:
    return _task_last([*_field_lists(signature), _reply_template(signature, True)], instruction)


def _tag_line(f: Field) -> str:
    return f"- <{f.name}>: {f.description}" if f.description else f"- <{f.name}>"


def _tags_system(signature: Signature, instruction: str) -> str:
    parts = []
    if signature.inputs:
        parts.append("Inputs, each inside its tags:\n" + "\n".join(_tag_line(f) for f in signature.inputs))
    parts.append("Outputs, each inside its tags, in this order:\n" + "\n".join(_tag_line(f) for f in signature.outputs))
    template = "\n".join(f"<{f.name}>{TEMPLATE_VALUE}</{f.name}>" for f in signature.outputs)
    parts.append("Reply format:\n" + template)
    return _task_last(parts, instruction)


def user_message(signature: Signature, inputs: Mapping[str, Any]) -> str:
    """Inputs as `Label: value` lines (the "labels", "recap" and "json" formats)."""
    text = "\n".join(_labelled(f, _text(inputs[f.name])) for f in signature.inputs if f.name in inputs)
    return text or NO_INPUTS


def assistant_message(signature: Signature, outputs: Mapping[str, Any], *, structured: bool = False) -> str:
    """Outputs as `Label: value` lines, or one JSON object when `structured`."""
    present = [f for f in signature.outputs if f.name in outputs]
    if structured:
        return json.dumps({f.name: _text(outputs[f.name]) for f in present}, ensure_ascii=False)
    return "\n".join(_labelled(f, _text(outputs[f.name])) for f in present)


def _tagged(f: Field, text: str) -> str:
    # A multi-line value gets lines of its own, as in "labels", so the markers never run into a paragraph.
    return f"<{f.name}>\n{text}\n</{f.name}>" if "\n" in text else f"<{f.name}>{text}</{f.name}>"


def _tags_user(signature: Signature, inputs: Mapping[str, Any]) -> str:
    text = "\n".join(_tagged(f, _text(inputs[f.name])) for f in signature.inputs if f.name in inputs)
    return text or NO_INPUTS


def _tags_assistant(signature: Signature, outputs: Mapping[str, Any]) -> str:
    return "\n".join(_tagged(f, _text(outputs[f.name])) for f in signature.outputs if f.name in outputs)


def _described(name: str, f: Field) -> str:
    return f"{name} ({f.description})" if f.description else name


def _reminder(signature: Signature, names: list[str], how: str, described: bool) -> str:
    """The closing line of the last user turn: which outputs to write, in order, and (`described`)
    their descriptions."""
    items = [_described(n, f) if described else n for n, f in zip(names, signature.outputs, strict=True)]
    listed = items[0] if len(items) == 1 else ", then ".join(items)
    return f"Reply with {listed}{how}."


def _recap_reminder(signature: Signature, described: bool) -> str:
    names = [f"`{f.label}:`" for f in signature.outputs]
    return _reminder(signature, names, ", each on its own line" if len(names) > 1 else "", described)


def _tags_reminder(signature: Signature, described: bool) -> str:
    return _reminder(signature, [f"<{f.name}>{TEMPLATE_VALUE}</{f.name}>" for f in signature.outputs], "", described)


def _json_reminder(signature: Signature, described: bool) -> str:
    keys = ", ".join(f'"{n}"' for n in signature.output_names)
    descriptions = [f'"{f.name}" is {f.description}' for f in signature.outputs if f.description] if described else []
    where = f", where {'; '.join(descriptions)}" if descriptions else ""
    return f"Reply with one JSON object with the keys {keys}{where}."


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


@dataclass(frozen=True)
class _Layout:
    """The text pieces of one prompt format; `render_messages` assembles them into turns."""

    system: Callable[[Signature, str], str]
    user: Callable[[Signature, Mapping[str, Any]], str]
    assistant: Callable[[Signature, Mapping[str, Any]], str]
    reminder: Callable[[Signature, bool], str] | None = None  # (signature, with the outputs' descriptions)


_LAYOUTS: dict[str, _Layout] = {
    "labels": _Layout(
        system=lambda sig, ins: system_message(sig, ins),
        user=user_message,
        assistant=lambda sig, out: assistant_message(sig, out),
    ),
    "labels+structured": _Layout(
        system=lambda sig, ins: system_message(sig, ins, structured=True),
        user=user_message,
        assistant=lambda sig, out: assistant_message(sig, out, structured=True),
    ),
    "recap": _Layout(
        system=_recap_system,
        user=user_message,
        assistant=lambda sig, out: assistant_message(sig, out),
        reminder=_recap_reminder,
    ),
    "tags": _Layout(system=_tags_system, user=_tags_user, assistant=_tags_assistant, reminder=_tags_reminder),
    "json": _Layout(
        system=_json_system,
        user=user_message,
        assistant=lambda sig, out: assistant_message(sig, out, structured=True),
        reminder=_json_reminder,
    ),
}
assert set(PROMPT_FORMATS) <= set(_LAYOUTS), "every prompt format needs a layout"


def _layout(format: str, structured: bool) -> _Layout:
    if format not in PROMPT_FORMATS:
        raise ValueError(f"prompt format must be one of {list(PROMPT_FORMATS)}, got {format!r}")
    if structured:
        return _LAYOUTS["labels+structured" if format == "labels" else "json"]
    return _LAYOUTS[format]


def follow_up_message(signature: Signature, missing: Collection[str], format: str, *, structured: bool = False) -> str:
    """The user turn that asks, after a reply that lacked them, for the missing outputs only.

    Why: a small model often spends its whole reply on reasoning (cut off at max_tokens, or ending
    without the answer line); asking once more with its own reply in the chat recovers the answer, as
    zero-shot chain of thought's second, answer-extraction prompt does. The ask names the outputs in
    the module's own format, with their descriptions (the allowed labels, the answer's form).
    """
    wanted = signature.keep_outputs(missing)
    names = " and ".join(f.label.lower() for f in wanted.outputs)
    # the format's own closing reminder; "labels" has none, so its label lines are asked for as "recap" does
    remind = _layout(format, structured).reminder or (_json_reminder if structured else _recap_reminder)
    return f"Your reply above does not give the {names}. {remind(wanted, True)}"


def render_messages(
    signature: Signature,
    params: PromptParams,
    inputs: Mapping[str, Any],
    *,
    structured: bool = False,
) -> list[Message]:
    """The chat messages a module sends for these inputs, in `params.format` (use `Placeholder`s for a
    template).

    Demos may lack some fields (a labelled example has no reasoning): those fields are left out of
    its turns. Fields a demo has beyond the signature are ignored.
    """
    layout = _layout(params.format, structured)
    position, instruction = params.position, params.instruction.strip()
    in_system = params.instruction if position == "system" else ""
    messages: list[Message] = [{"role": "system", "content": layout.system(signature, in_system)}]
    for i, demo in enumerate(params.demos):
        _check_demo(signature, demo, i)
        messages.append({"role": "user", "content": layout.user(signature, demo)})
        messages.append({"role": "assistant", "content": layout.assistant(signature, demo)})
    question = layout.user(signature, inputs)
    if instruction and position == "question_begin":
        question = f"{instruction}\n\n{question}"
    elif instruction and position == "question_end":
        question = f"{question}\n\n{instruction}"
    if layout.reminder is not None:
        question = f"{question}\n\n{layout.reminder(signature, not params.demos)}"
    messages.append({"role": "user", "content": question})
    if instruction and position == "answer_start":
        messages.append({"role": "assistant", "content": instruction})
    return messages
