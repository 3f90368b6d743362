"""What every OPRO problem shares: a history of scored solutions shown in a meta-prompt, its order and
score formatting, and the reading of instructions from the optimizer's replies.

The prompt optimizer (instructions scored by the task LM) and the numeric experiments
(`prompthone.experiments.opro_numeric`: linear regression, travelling salesman; scored by a Python
objective) differ only in what a solution is, how it is scored and which template words the
meta-prompt; the history, its order and its score formatting live here once, so an ablation switch
means the same thing for all of them. Sampling goes through `proposers.calls` for both.
"""

from __future__ import annotations

import random
import re
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

#: How the shown history is arranged. "ascending" (the paper's default and best) lists the worst shown
#: solution first and the best last, right before the request for a new one.
ORDERS = ("ascending", "descending", "random")


@dataclass(frozen=True)
class Scored:
    """One solution with its objective value: `text` is how the meta-prompt shows it."""

    key: Hashable
    solution: Any
    text: str
    value: float
    step: int


class History:
    """Every scored solution, deduplicated by key, best-first selection for the meta-prompt.

    `minimize=False` for scores (higher is better), True for losses and tour lengths. Quality order is
    the same idea for both: "ascending" always means the best is shown last.
    """

    def __init__(self, *, minimize: bool = False) -> None:
        self.minimize = minimize
        self._items: dict[Hashable, Scored] = {}

    def __contains__(self, key: Hashable) -> bool:
        return key in self._items

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self):
        return iter(self._items.values())

    def add(self, key: Hashable, solution: Any, text: str, value: float, step: int) -> bool:
        """Record a scored solution; False (and nothing recorded) if its key was seen before."""
        if key in self._items:
            return False
        self._items[key] = Scored(key, solution, text, float(value), step)
        return True

    def _quality(self, s: Scored) -> float:
        return -s.value if self.minimize else s.value

    def by_quality(self) -> list[Scored]:
        """All solutions, worst first; ties keep insertion order (so the newest of equals comes last)."""
        return sorted(self._items.values(), key=self._quality)

    def best(self) -> Scored:
        if not self._items:
            raise ValueError("the history is empty")
        return self.by_quality()[-1]

    def shown(self, k: int, order: str, rng: random.Random | None = None) -> list[Scored]:
        """The best `k` solutions, arranged as the meta-prompt shows them (see `ORDERS`)."""
        if order not in ORDERS:
            raise ValueError(f"history order must be one of {list(ORDERS)}, got {order!r}")
        top = self.by_quality()[-k:] if k > 0 else []
        if order == "descending":
            return top[::-1]
        if order == "random":
            if rng is None:
                raise ValueError("a random history order needs an rng (seeded, so runs replay)")
            top = list(top)
            rng.shuffle(top)
        return top


def bucketize(score: float, buckets: int | None) -> str:
    """A score in [0, 1] shown as a number 0-100 rounded to `buckets` levels (100: integers 0-100;
    20: multiples of 5). None shows it unrounded with one decimal (the paper's "no bucketization")."""
    if buckets is None:
        return f"{score * 100:.1f}"
    if buckets < 1:
        raise ValueError(f"score_buckets must be >= 1 or None, got {buckets!r}")
    value = round(score * buckets) * 100 / buckets
    return str(int(value)) if float(value).is_integer() else f"{value:.1f}"


def order_word(order: str, *, minimize: bool) -> str:
    """How a template names the order of the listed values: the best-last arrangement of losses is
    *descending* in value, of scores *ascending*."""
    if order == "random":
        return "random"
    best_last = order == "ascending"
    return ("descending" if best_last else "ascending") if minimize else order


_TAGGED = re.compile(r"<INS>(.*?)</INS>", re.S | re.I)
_OPEN_TAG = re.compile(r"<INS>(.*)", re.S | re.I)
_BRACKETED = re.compile(r"^\s*\[(.+)\]\s*$", re.S)
_LEAD_LABEL = re.compile(
    r"^\s*(?:\*\*)?(?:new |improved |better |my )?(?:instruction|text|prompt|answer)s?(?:\*\*)?\s*[:：]\s*(?:\*\*)?",
    re.I,
)
_SCORE_LINE = re.compile(r"\n\s*score\s*[:：]?.*$", re.S | re.I)
_PLACEHOLDERS = {"", "...", "<ins>", "your instruction", "your new instruction", "new instruction", "instruction"}


def normalize_instruction(text: str) -> str:
    """The dedup key of an instruction: whitespace collapsed. Case and wording are kept, since both
    change what the task model reads."""
    return " ".join(text.split())


_STRAY_TAG = re.compile(r"</?\s*INS\s*>?", re.I)


def _clean(text: str) -> str:
    t = _STRAY_TAG.sub("", text).strip().strip("`").strip()
    if t.startswith("<") and ">" not in t[:40]:  # a tag the model misspelled: "<Classify ... </INS>"
        t = t[1:].strip()
    t = _SCORE_LINE.sub("", t).strip()
    t = _LEAD_LABEL.sub("", t, count=1).strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'“”":
        t = t[1:-1].strip()
    if len(t) >= 2 and t[0] == "“" and t[-1] == "”":
        t = t[1:-1].strip()
    return t


def _usable(text: str, max_chars: int) -> bool:
    t = text.strip()
    return t.lower().strip(".:") not in _PLACEHOLDERS and "<ins>" not in t.lower() and len(t) <= max_chars


def parse_instruction(reply: str, *, max_chars: int = 800) -> str | None:
    """The instruction in an optimizer reply, or None when there is no usable one.

    Tolerant, in this order: text between `<INS>` and `</INS>` (the first usable pair); text after a
    lone `<INS>` up to a blank line; a reply that is one bracketed `[...]` (the paper's other
    convention); otherwise the first paragraph, with a leading "Instruction:"-style label, surrounding
    quotes and a trailing "score: ..." line removed. Placeholders (`...`, "your instruction") and texts
    longer than `max_chars` are refused, so chatter is not scored as an instruction; so is a body that
    holds another `<INS>`: that is an exemplar filled in ("Question: ... <INS> output: Answer: Paris"),
    which small proposers write instead of an instruction. When the reply has `<INS>...</INS>` pairs
    but none holds a usable instruction, the reply has none (no fallback to its other paragraphs).
    """
    text = reply.replace("\r\n", "\n").strip()
    bodies = _TAGGED.findall(text)
    for body in bodies:
        t = _clean(body)
        if "<ins>" not in body.lower() and _usable(t, max_chars):
            return normalize_spacing(t)
    if bodies:  # the model used the tags, and nothing between them is an instruction
        return None
    m = _OPEN_TAG.search(text)
    if m:
        part = m.group(1).strip().split("\n\n")[0]
        t = _clean(part)
        return normalize_spacing(t) if "<ins>" not in part.lower() and _usable(t, max_chars) else None
    m = _BRACKETED.match(text)
    if m:
        t = _clean(m.group(1))
        return normalize_spacing(t) if _usable(t, max_chars) else None
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    for p in paragraphs:
        t = _clean(p)
        if not t or t.endswith(":"):  # "Here is a new instruction:" introduces the next paragraph
            continue
        return normalize_spacing(t) if _usable(t, max_chars) else None
    return None


def normalize_spacing(text: str) -> str:
    """Trim each line and drop runs of blank lines; line breaks inside an instruction are kept."""
    lines = [ln.strip() for ln in text.strip().split("\n")]
    out: list[str] = []
    for ln in lines:
        if ln or (out and out[-1]):
            out.append(ln)
    return "\n".join(out).strip()


def draw(rng: random.Random, items: Sequence[Any], k: int) -> list[Any]:
    """`k` distinct items at random (all of them, shuffled, when there are fewer)."""
    return rng.sample(list(items), min(k, len(items)))
