"""What a proposer's text copies from the examples it read, or where it loops.

A small proposer asked to describe data or to write an instruction often pastes one example instead
("The inputs are a question about polymers, a food high in zinc, ... and the population of
Venezuela.") or falls into a loop ("an entity, location, number, number, number, number, ..."). Text
like that grounds every later proposal in one example, or in nothing, so the proposers drop it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

_WORDS = re.compile(r"[a-z]+")
#: a capitalized word inside a sentence (not its first word): a name, a place, a title
_NAME = re.compile(r"(?<=[a-z0-9,;:)] )[A-Z][a-zA-Z]+")
#: the same word or short phrase four times in a row: "number, number, number, number"
_LOOP = re.compile(r"\b(\w+(?:\W+\w+){0,2}?)(?:\W+\1\b){3,}", re.I)


def shingles(text: str, n: int = 5) -> set[tuple[str, ...]]:
    """The `n`-word runs of `text` (lower case, letters only)."""
    words = _WORDS.findall(text.lower())
    return {tuple(words[i : i + n]) for i in range(len(words) - n + 1)}


def copies_run(text: str, sources: Iterable[str], n: int = 5) -> bool:
    """True when `text` holds an `n`-word run of one of `sources`: long enough to be one example's
    content rather than the task's shared words."""
    return bool(shingles(text, n) & set().union(*(shingles(s, n) for s in sources)))


def loops(text: str) -> bool:
    """True when `text` repeats a word or a phrase of up to three words four times in a row."""
    return bool(_LOOP.search(text))


def copied_names(text: str, sources: Iterable[str], *, allowed: Iterable[str] = ()) -> list[str]:
    """The names in `text` (capitalized words inside a sentence) that come from `sources` (the examples'
    values), leaving out the `allowed` ones (field labels, words of the task's own instruction)."""
    source_words = {w for s in sources for w in re.findall(r"[A-Za-z]+", s)}
    free = {w.lower() for a in allowed for w in re.findall(r"[A-Za-z]+", a)}
    found = dict.fromkeys(m for m in _NAME.findall(text) if m in source_words and m.lower() not in free)
    return list(found)


def copies_examples(text: str, sources: Iterable[str], *, allowed: Iterable[str] = ()) -> str:
    """Why `text` copies from the examples in `sources` ("" when it does not): a five-word run of one of
    them, a value of three words or more whole, or a name one of them holds."""
    sources = list(sources)
    if copies_run(text, sources):
        return "copies a run of words from an example"
    words = " ".join(_WORDS.findall(text.lower()))
    # a short value whole ("What is a micron?"): too short for a five-word run, still one example's content
    if any(len(v) >= 3 and f" {' '.join(v)} " in f" {words} " for v in (_WORDS.findall(s.lower()) for s in sources)):
        return "copies an example's value"
    names = copied_names(text, sources, allowed=allowed)
    if names:
        return f"names what an example holds ({', '.join(names[:3])})"
    return ""
