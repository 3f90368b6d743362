"""Prompt templates (the optimizers' and the LLM judge's), kept as readable text files in this folder.

The loader lives beside the files, on the lowest floor, so that every floor that writes a prompt from a
template (`metrics/judge.py`, the methods in `optimize/`) imports down to it. Templates use `{name}`
placeholders (str.format); literal braces are written `{{` and `}}`. Rendering checks that every
placeholder is filled and no argument is unused, so a renamed field fails loudly.
"""

from __future__ import annotations

import string
from functools import cache
from importlib import resources


@cache
def load_template(name: str) -> str:
    """The text of `templates/<name>.txt` shipped with the package."""
    try:
        return resources.files(__package__).joinpath(f"{name}.txt").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise FileNotFoundError(f"no prompt template named {name!r} in prompthone/templates/") from None


def placeholders(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def render_template(name: str, **values: object) -> str:
    """Fill template `name`; raises naming any missing or unexpected placeholder."""
    text = load_template(name)
    wanted = placeholders(text)
    missing, extra = wanted - values.keys(), values.keys() - wanted
    if missing or extra:
        raise KeyError(f"template {name!r}: missing {sorted(missing)}, unexpected {sorted(extra)}")
    return text.format(**values).strip() + "\n"
