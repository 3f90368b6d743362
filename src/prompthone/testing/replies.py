"""Reading a rendered prompt as a model would, and replying in the layout it asks for: for fake models.

A scripted backend or a fake server stands in for a model. If it finds the instruction as "the first
line of the system message" or the question as "the last word of the last turn", it only works on one
prompt format and silently tests that one; when the default format changes, such fakes test a path
users no longer take. These helpers read what every format (`prompthone.program.render`) writes, by
what the prompt itself says, not by which format the fake was told to expect:

* `instruction_of(system)`: the task's instruction, first ("labels") or after `Your task:` (the others);
* `without_reminder(user)`: a user turn without the closing `Reply with ...` reminder;
* `write_reply(system, values)`: output values written as the reply format in `system` asks for
  (a JSON object, `<field>` markers, or `Label: value` lines).

They parse text by its visible markers only, and never import the renderer, so a fake built on them
checks the renderer rather than repeating it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping

from prompthone.program.values import label_key

_JSON_KEYS = re.compile(r"^Reply format: one JSON object with these string keys, in this order: (.+)\.\s*$", re.M)
_TAG_TEMPLATE = re.compile(r"^<(\w+)>\.\.\.</\1>\s*$", re.M)
_LABEL_TEMPLATE = re.compile(r"^([A-Za-z][\w ]{0,47}):\s*\.\.\.\s*$", re.M)
_TASK = "Your task:\n"
_FIELD_LISTS = ("Input fields:\n", "Output fields:\n", "Inputs, each inside its tags:", "Outputs, each inside its tags")
_REMINDER = re.compile(r"\n\nReply with [^\n]*\.\s*$")


def reply_layout(system: str) -> tuple[str, list[str]]:
    """How the prompt asks the model to reply: ("json" | "tags" | "labels", the output fields in order,
    spelled as the prompt spells them: JSON keys and tag names are field names, labels are labels).

    A system message with no reply format gives ("labels", []).
    """
    keys = _JSON_KEYS.search(system)
    if keys:
        return "json", re.findall(r'"([^"]+)"', keys.group(1))
    tags = _TAG_TEMPLATE.findall(system)
    if tags:
        return "tags", tags
    return "labels", _LABEL_TEMPLATE.findall(system)


def write_reply(system: str, values: Mapping[str, str], *, filler: str | None = None) -> str:
    """`values` (keyed by field name or label: matched blind to case, spaces and underscores) as the
    reply the system message asks for, in its field order.

    A field the prompt asks for that `values` lacks gets `filler`, or is left out when `filler` is None
    (as a model may leave it out). A prompt without a reply format gets `Label: value` lines of `values`.
    """
    layout, fields = reply_layout(system)
    given = {label_key(k): v for k, v in values.items()}
    fields = fields or list(values)
    written: list[tuple[str, str]] = []
    for f in fields:
        value = given.get(label_key(f), filler)
        if value is not None:
            written.append((f, value))
    if layout == "json":
        return json.dumps(dict(written), ensure_ascii=False)
    if layout == "tags":
        return "\n".join(f"<{f}>{v}</{f}>" for f, v in written)
    return "\n".join(f"{f}: {v}" for f, v in written)


def instruction_of(system: str) -> str:
    """The task's instruction in a module's system message, wherever its format put it ("" if none)."""
    if _TASK in system:
        return system.rsplit(_TASK, 1)[1].strip()
    cut = len(system)
    for head in _FIELD_LISTS:
        at = system.find(head)
        if at == 0:
            return ""
        if at > 0 and system[at - 2 : at] == "\n\n":
            cut = min(cut, at)
    return system[:cut].strip()


def without_reminder(user: str) -> str:
    """The user turn without the `Reply with ...` line that formats other than "labels" close it with."""
    return _REMINDER.sub("", user)
