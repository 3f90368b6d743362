"""Multiple-choice letters: find which option ("(B)", "B)", "the answer is B", ...) a reply picks."""

from __future__ import annotations

import re
from typing import Any

from prompthone.metrics.base import FieldMetric, MetricResult
from prompthone.metrics.normalize import normalize_answer

_BARE = re.compile(r"[\(\[]?([A-Za-z])[\)\]]?[.:]?")
_MARKED = re.compile(
    r"answer\s*(?:is|:)\s*(?:option\s*|choice\s*)?(?:[\(\[]([A-Za-z])[\)\]]|([A-Z])(?![\w']))", re.IGNORECASE
)
_LEADING = re.compile(r"[\(\[]?([A-Z])[\)\]\.:]\s")
_PAREN = re.compile(r"\(([A-Z])\)")


def extract_choice(text: str) -> str | None:
    """The option letter (uppercase) a reply picks, or None if there is none or it is ambiguous.

    In order: the whole reply is a letter ("B", "(b)", "B."); the last "answer is (B)" / "Answer: B";
    a reply starting with "B) ..." or "(B) ..."; the only parenthesized letter in the reply. A reply
    naming several options without saying which is its answer (such as an echoed option list) gives None.
    """
    s = text.strip()
    if m := _BARE.fullmatch(s):
        return m[1].upper()
    marked = list(_MARKED.finditer(s))
    if marked:
        m = marked[-1]
        if m[1] or m[2].isupper():
            return (m[1] or m[2]).upper()
    letters = set(_PAREN.findall(s))
    if (m := _LEADING.match(s)) and not letters - {m[1]}:
        return m[1]
    return letters.pop() if len(letters) == 1 else None


class ChoiceMatch(FieldMetric):
    """1 if the reply picks the gold option letter. A gold that is option *text* rather than a letter
    (a known BBH quirk, e.g. "Monsters, Inc") is compared as normalized text instead.
    """

    kind = "choice_match"

    def compare(self, gold: Any, predicted: Any) -> MetricResult:
        g_text, p_text = str(gold), str(predicted)
        g_match = _BARE.fullmatch(g_text.strip())
        if g_match is None:
            if normalize_answer(p_text) == normalize_answer(g_text):
                return MetricResult(1.0)
            return MetricResult(0.0, f"expected the option {g_text!r}, got {p_text!r:.200}")
        g = g_match[1].upper()
        p = extract_choice(p_text)
        if p == g:
            return MetricResult(1.0)
        if p is None:
            several = sorted(set(_PAREN.findall(p_text)))
            why = f"it names several options ({', '.join(several)})" if several else "no option letter found"
            return MetricResult(0.0, f"expected ({g}), but {why} in {p_text!r:.200}")
        return MetricResult(0.0, f"expected ({g}), got ({p})")


__all__ = ["ChoiceMatch", "extract_choice"]
