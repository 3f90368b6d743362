"""Word-level diffs of prompts, as HTML (`<ins>`/`<del>`) for the report and as pieces for the terminal.

Word level, not line level: optimized instructions are usually one paragraph where a few words change,
and a line diff would show the whole paragraph as replaced.
"""

from __future__ import annotations

import difflib
import re
from html import escape
from typing import Literal

from markupsafe import Markup

Op = Literal["same", "del", "ins"]
_TOKEN = re.compile(r"\s+|\w+|[^\w\s]")


def diff_pieces(old: str, new: str) -> list[tuple[Op, str]]:
    """`old` -> `new` as runs of unchanged, deleted and inserted text (deletions before insertions).

    A bare space left unchanged between two changes is folded into them, so "the math word problem" ->
    "it carefully and check" reads as one deletion and one insertion, not four interleaved pairs.
    """
    a, b = _TOKEN.findall(old), _TOKEN.findall(new)
    ops = [list(op) for op in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()]
    merged: list[list] = []
    for i, op in enumerate(ops):
        between = 0 < i < len(ops) - 1 and op[0] == "equal" and "".join(a[op[1] : op[2]]).isspace()
        if merged and (between or (op[0] != "equal" and merged[-1][0] != "equal")):
            merged[-1] = ["replace", merged[-1][1], op[2], merged[-1][3], op[4]]
        else:
            merged.append(op)
    pieces: list[tuple[Op, str]] = []
    for tag, i1, i2, j1, j2 in merged:
        if tag == "equal":
            pieces.append(("same", "".join(a[i1:i2])))
            continue
        if i2 > i1:
            pieces.append(("del", "".join(a[i1:i2])))
        if j2 > j1:
            pieces.append(("ins", "".join(b[j1:j2])))
    return pieces


def diff_html(old: str, new: str) -> Markup:
    """The diff as escaped HTML: every piece of text passes through `html.escape`."""
    html = []
    for op, text in diff_pieces(old, new):
        t = escape(text)
        html.append(t if op == "same" else f"<{op}>{t}</{op}>")
    return Markup("".join(html))
