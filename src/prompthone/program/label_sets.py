"""Label sets: the allowed values a text enumerates ("one of: a, b, c", "positive or negative?").

Two places read them: the proposers' contract check (an instruction must keep the start's labels) and
the reply parser (a field whose description enumerates its values is read as one of them, when a reply
adds chatter after it). One reading of an enumeration serves both, so what a proposal must keep and what
a reply may be read as are the same set.
"""

from __future__ import annotations

import functools
import re

#: label sets bigger than this are not treated as an enumeration (a list of 20 things is prose)
MAX_LABELS = 20
_ITEM = re.compile(r"^\(?[A-Za-z0-9][\w'\-]*\)?(?: [\w'\-]+){0,2}$")
_ITEM_SPLIT = re.compile(r"\s*(?:,|;|/|\|)\s*|\s+(?:or|and)\s+", re.I)
_ONE_OF = re.compile(
    r"\bone\s+of(?:\s+the(?:se)?)?(?:\s+(?:following|allowed|possible|valid|given))?"
    r"(?:\s+(?:labels?|categories|classes|options|values|words|answers|types|kinds))?\s*(?::|-|–)?\s*",
    re.I,
)
_COLON = re.compile(r":\s*")
_BINARY = re.compile(r"(?:^|[\s(])(?:either\s+)?([A-Za-z]+)\s+or\s+([A-Za-z]+)\s*[?.!)]?\s*$", re.I)
_NOT_LABELS = {
    "a", "an", "the", "and", "or", "not", "more", "less", "it", "this", "that", "them", "one", "other", "else",
    "both", "neither", "either", "any", "all", "some", "so", "to", "be", "is", "are", "of", "in", "on", "for",
}  # fmt: skip

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'“])")


def sentences(text: str) -> list[str]:
    """`text` split at sentence ends (a full stop, ! or ? before a capital or a quote)."""
    return [s.strip() for s in _SENTENCE.split(text.strip()) if s.strip()]


def _items(rest: str) -> list[str] | None:
    """The items of an enumeration at the start of `rest` (up to the sentence end), or None if it is
    not one: every item must be one to three plain words, a quoted word, or an option like `(A)`."""
    rest = re.split(r"(?<=[^.]\w)[.!?](?:\s|$)|\n", rest.strip(), maxsplit=1)[0]
    rest = rest.strip().rstrip(".!?")
    out: list[str] = []
    for raw in _ITEM_SPLIT.split(rest):
        item = raw.strip().strip("\"'`“”‘’*").strip()
        if re.fullmatch(r"\([A-Za-z0-9]\)", item) is None:
            item = re.sub(r"\s*\([^)]*\)\s*", " ", item).strip()  # "c (in lowercase)" -> "c"
        item = re.sub(r"^(?:either|or|and)\s+", "", item, flags=re.I).strip()
        if not item:
            continue
        if len(item) > 30 or not _ITEM.match(item):
            return None
        out.append(item)
    return out if 2 <= len(out) <= MAX_LABELS else None


def find_labels(text: str) -> list[str]:
    """The allowed labels `text` enumerates ("one of: a, b, c", "...: a, b, c.", "positive or negative?"),
    in their order; [] when it enumerates none."""
    for sentence in sentences(text) or [text]:
        m = _ONE_OF.search(sentence)
        if m:
            found = _items(sentence[m.end() :])
            if found:
                return found
        for m in _COLON.finditer(sentence):
            found = _items(sentence[m.end() :])
            if found and len(found) >= 3:
                return found
        m = _BINARY.search(sentence)
        if m and not {m.group(1).lower(), m.group(2).lower()} & _NOT_LABELS:
            return [m.group(1), m.group(2)]
    return []


@functools.lru_cache(maxsize=1024)  # the parser asks for the same few labels on every reply
def label_pattern(label: str) -> re.Pattern[str]:
    """A label as a proposal or a reply may write it: any case, spaces or hyphens between words, a plural."""
    words = [re.escape(w) for w in re.split(r"[\s\-_]+", label.strip()) if w]
    last = words[-1]
    consonant_y = re.fullmatch(r"\w*[^aeiou\W]y", last, re.I)  # entity -> entities
    last = rf"{last[:-1]}(?:y|ies)" if consonant_y else rf"{last}(?:s|es)?"
    body = r"[\s\-_]*".join([*words[:-1], last])
    return re.compile(rf"(?<![\w]){body}(?![\w])", re.I)
