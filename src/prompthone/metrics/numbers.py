"""Pull numbers out of model text: "$1,234.50", "-3", "3/4", "The answer is 42." and the like.

A model rarely answers with a bare number, so numeric metrics need the number it meant: the first one
after an explicit answer marker ("answer is", "Answer:", "####", "\\boxed{"), else the last one in the
text (chains of thought end with their result).
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = re.compile(
    r"(?<![\w.])"  # not glued to a word or to another number
    r"(?P<neg>[-\u2212])?[$€£]?"
    r"(?P<num>\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?|\.\d+)"
    r"(?:\s?/\s?(?P<den>\d+)(?![\d.,]\d))?"
)
_MARKER = re.compile(r"(?:final\s+answer|answer)\s*(?:is|was|:|=)|####|\\boxed\{", re.IGNORECASE)


def extract_numbers(text: str, *, fractions: bool = True) -> list[float]:
    """Every number in `text` in order; "1,234.5" -> 1234.5, "-$3" -> -3.0, "3/4" -> 0.75 if `fractions`."""
    out: list[float] = []
    for m in _NUMBER.finditer(text):
        value = Fraction(m["num"].replace(",", ""))
        if m["den"] is not None:
            if fractions and int(m["den"]) != 0:
                value /= int(m["den"])
            else:  # "3/4" without fractions: two numbers, as written
                out.append(float(-value if m["neg"] else value))
                value = Fraction(m["den"])
                out.append(float(value))
                continue
        out.append(float(-value if m["neg"] else value))
    return out


def answer_number(text: str, *, fractions: bool = True) -> float | None:
    """The number a text gives as its answer, or None if it contains no number (see module doc)."""
    markers = list(_MARKER.finditer(text))
    if markers:
        after = extract_numbers(text[markers[-1].end() :], fractions=fractions)
        if after:
            return after[0]
    numbers = extract_numbers(text, fractions=fractions)
    return numbers[-1] if numbers else None


__all__ = ["answer_number", "extract_numbers"]
