"""Small checks shared by the benchmark readers, so a changed upstream file fails loudly and precisely."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prompthone.data.errors import DataError
from prompthone.data.records import Record, read_text


def field(path: Path, rec: Record, name: str, kind: type | tuple[type, ...] = str) -> Any:
    """`rec.data[name]`, required to be present and of `kind`; else a `DataError` with file/line/field."""
    if name not in rec.data:
        present = ", ".join(map(str, rec.data)) or "none"
        raise DataError(f"missing (the record has fields: {present})", path=path, line=rec.line, field=name)
    value = rec.data[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
        names = " or ".join(k.__name__ for k in kinds)
        raise DataError(
            f"expected {names}, got {type(value).__name__} {value!r:.80}",
            path=path,
            line=rec.line,
            field=name,
        )
    return value


def choose(name: str, value: str, choices: tuple[str, ...]) -> str:
    """Validate a string option (a split or task name), listing the valid ones when it is not one."""
    if value not in choices:
        raise DataError(f"unknown {name} {value!r}; expected one of: {', '.join(choices)}")
    return value


def text_lines(path: Path, *, encoding: str = "utf-8", expected: str) -> list[tuple[int, str]]:
    """(1-based line number, line without its newline) for every non-blank line of a text file."""
    text = read_text(path, encoding=encoding, expected=expected)
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]
