"""Prompt templates of the optimizers, kept as readable text files in `prompthone/templates/`.

Templates use `{name}` placeholders (str.format); literal braces are written `{{` and `}}`. Rendering
checks that every placeholder is filled and no argument is unused, so a renamed field fails loudly.
"""

from __future__ import annotations

import string
from functools import cache
from importlib import resources


@cache
def load_template(name: str) -> str:
    """The text of `templates/<name>.txt` shipped with the package."""
    try:
        return resources.files("prompthone").joinpath("templates", f"{name}.txt").read_text(encoding="utf-8")
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
