"""Answer normalization shared by the text metrics (SQuAD style, with numbers kept intact).

SQuAD's recipe (lowercase, drop punctuation and articles, squeeze spaces) forgives formatting that does
not change the answer. Two deviations keep it from changing numbers: a decimal point between digits
stays ("2.5" is not "25") and a minus sign before a number stays ("-5" is not "5"). Commas go like
any punctuation, so "1,000" equals "1000".
"""

from __future__ import annotations

import re
import unicodedata

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")


def _keep(s: str, i: int) -> bool:
    """Keep a character unless it is punctuation or a symbol ($, +, =, ...), as string.punctuation would
    have it, apart from a decimal point between digits and a minus sign opening a number."""
    ch = s[i]
    if unicodedata.category(ch)[0] not in "PS":
        return True
    digit_after = i < len(s) - 1 and s[i + 1].isdigit()
    if ch == ".":
        return digit_after and i > 0 and s[i - 1].isdigit()
    if ch == "-":
        return digit_after and (i == 0 or not s[i - 1].isalnum())
    return False


def normalize_answer(text: object) -> str:
    """Lowercased text without punctuation, articles or extra whitespace; numbers stay numbers."""
    s = unicodedata.normalize("NFKC", str(text)).replace("\u2212", "-").lower()
    s = _ARTICLES.sub(" ", "".join(ch for i, ch in enumerate(s) if _keep(s, i)))
    return " ".join(s.split())


def answer_tokens(text: object) -> list[str]:
    """The whitespace tokens of `normalize_answer(text)`, for token-overlap scores."""
    return normalize_answer(text).split()


def squeeze_whitespace(text: object) -> str:
    """Only strip and collapse whitespace: for answers where punctuation *is* the answer."""
    return " ".join(str(text).split())


__all__ = ["answer_tokens", "normalize_answer", "squeeze_whitespace"]
