"""TREC question classification (Li & Roth), coarse level: `question` -> one of six readable class names.

Raw codes (ABBR, DESC, ...) become words ("abbreviation", "description", ...) because the model has to
produce the label: a word it knows is a fairer target than an opaque code. The fine class is kept too.
"""

from __future__ import annotations

from pathlib import Path

from prompthone.data.benchmarks._common import choose, text_lines
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.root import dataset_file

TREC_SPLITS = ("train", "test")
TREC_CLASSES = {
    "ABBR": "abbreviation",
    "DESC": "description",
    "ENTY": "entity",
    "HUM": "human",
    "LOC": "location",
    "NUM": "number",
}


def load_trec(split: str = "test", *, root: str | Path | None = None) -> list[Example]:
    """TREC `train` (5452) or `test` (500) from `<root>/trec/raw/TREC.<split>` (ISO-8859-1 text).

    Each line is `COARSE:fine question`; ids are `trec/<split>:<line>`; labels `answer` (the readable
    coarse class) and `fine` (the fine class code, e.g. "dist").
    """
    choose("TREC split", split, TREC_SPLITS)
    path = dataset_file(root, "trec", "raw", f"TREC.{split}")
    return [
        trec_example(path, n, line, f"trec/{split}:{n}")
        for n, line in text_lines(path, encoding="latin-1", expected="lines of 'COARSE:fine question'")
    ]


def trec_example(path: Path, line_no: int, line: str, example_id: str) -> Example:
    """One `COARSE:fine question` line as an `Example` (shared with the shipped TREC subset)."""
    label, _, question = line.partition(" ")
    coarse, colon, fine = label.partition(":")
    if coarse not in TREC_CLASSES or not colon or not fine:
        raise DataError(
            f"expected 'COARSE:fine' with COARSE one of {', '.join(TREC_CLASSES)}, got {label!r}",
            path=path,
            line=line_no,
            field="label",
        )
    if not question.strip():
        raise DataError("expected a question after the label", path=path, line=line_no, field="question")
    return Example(
        id=example_id,
        inputs={"question": question.strip()},
        labels={"answer": TREC_CLASSES[coarse], "fine": fine},
    )


__all__ = ["TREC_CLASSES", "TREC_SPLITS", "load_trec", "trec_example"]
