"""How a Python value becomes prompt text, and how field names become labels.

One place for both, because demos, rendered prompts and the parser must agree on them exactly: a demo
stored from a trace has to render the same text the module sent when the trace was made.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any


def format_value(value: Any) -> str:
    """Turn an input or output value into the text a prompt shows.

    Lists of passages are numbered (`[1] ...`) because retrieval pipelines pass them and a small model
    reads a numbered list better than a Python repr; mappings become JSON for the same reason.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return str(value)
    if isinstance(value, Mapping):
        return json.dumps(value, ensure_ascii=False, default=str)
    if isinstance(value, Sequence) and not isinstance(value, bytes | bytearray):
        return "\n".join(f"[{i}] {format_value(v)}" for i, v in enumerate(value, 1))
    return str(value)


def label_of(name: str) -> str:
    """The label a field carries in prompts and replies: `search_query` -> `Search Query`.

    Only the first letter of each word is raised, so acronyms survive (`HTML_text` -> `HTML Text`).
    """
    return " ".join(w[:1].upper() + w[1:] for w in name.split("_") if w)


#: every ASCII character that is not a letter or digit, for `label_key`'s fast path
_ASCII_NOT_ALNUM = {c: None for c in range(128) if not chr(c).isalnum()}


def label_key(text: str) -> str:
    """A comparison key for labels, blind to case, underscores, spaces and markdown decoration."""
    if text.isascii():  # the same result, without a Python-level loop over the characters
        return text.lower().translate(_ASCII_NOT_ALNUM)
    return "".join(ch for ch in text.lower() if ch.isalnum())
