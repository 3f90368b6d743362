"""Raw records out of JSONL, JSON and CSV/TSV files, each tagged with the line it starts on.

Kept apart from field mapping (`loaders.py`) so the built-in benchmark readers reuse the same
line-accurate parsing and error messages for their own formats.
"""

from __future__ import annotations

import bisect
import csv
import io
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from prompthone.data.errors import DataError

Format = Literal["jsonl", "json", "csv", "tsv"]

_SUFFIXES: dict[str, Format] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
}
_JSON_WS = " \t\n\r"


@dataclass(frozen=True)
class Record:
    """One object read from a file: `line` is 1-based (where it starts), `index` 0-based among records."""

    line: int
    index: int
    data: Mapping[str, Any]


def detect_format(path: Path, format: str | None = None) -> Format:
    """The file format from `format` or the file suffix; an unknown one is an error naming the choices."""
    if format is not None:
        if format not in ("jsonl", "json", "csv", "tsv"):
            raise DataError(f"unknown format {format!r}; expected one of jsonl, json, csv, tsv", path=path)
        return format  # type: ignore[return-value]
    fmt = _SUFFIXES.get(path.suffix.lower())
    if fmt is None:
        raise DataError(
            f"cannot tell the format from the suffix {path.suffix!r}; expected one of "
            f"{', '.join(_SUFFIXES)} or pass format='jsonl' | 'json' | 'csv' | 'tsv'",
            path=path,
        )
    return fmt


def read_text(path: str | Path, *, encoding: str = "utf-8", expected: str = "records") -> str:
    """The whole file as text; missing, undecodable and empty files are errors with the line at fault."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataError("file not found", path=path) from None
    except IsADirectoryError:
        raise DataError("is a directory, expected a file", path=path) from None
    try:
        text = raw.decode("utf-8-sig" if encoding.lower().replace("_", "-") == "utf-8" else encoding)
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(
            f"cannot decode byte {raw[e.start : e.start + 1]!r} as {encoding} ({e.reason}); "
            "pass encoding= if the file uses another encoding",
            path=path,
            line=line,
        ) from None
    if not text.strip():
        raise DataError(f"file is empty; expected {expected}", path=path)
    return text


def read_records(path: str | Path, *, format: str | None = None, encoding: str = "utf-8") -> list[Record]:
    """All records of a JSONL, JSON (a list of objects), CSV or TSV file, in file order."""
    path = Path(path)
    fmt = detect_format(path, format)
    expected = {
        "jsonl": "one JSON object per line",
        "json": "a JSON list of objects",
        "csv": "a header line and comma-separated records",
        "tsv": "a header line and tab-separated records",
    }[fmt]
    text = read_text(path, encoding=encoding, expected=expected)
    if fmt == "jsonl":
        records = _jsonl(path, text)
    elif fmt == "json":
        records = _json_list(path, text)
    else:
        records = _delimited(path, text, "\t" if fmt == "tsv" else ",")
    if not records:
        raise DataError(f"no records found; expected {expected}", path=path)
    return records


def _jsonl(path: Path, text: str) -> list[Record]:
    out: list[Record] = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=n) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, got {_json_type(obj)}", path=path, line=n)
        out.append(Record(line=n, index=len(out), data=obj))
    return out


def _json_list(path: Path, text: str) -> list[Record]:
    """Parse a top-level JSON array element by element so each record knows its starting line."""
    newlines = [i for i, ch in enumerate(text) if ch == "\n"]

    def line_of(pos: int) -> int:
        return bisect.bisect_left(newlines, pos) + 1

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in _JSON_WS:
            pos += 1
        return pos

    def fail(reason: str, pos: int) -> DataError:
        return DataError(reason, path=path, line=line_of(min(pos, len(text))))

    decoder = json.JSONDecoder()
    pos = skip_ws(0)
    if text[pos] != "[":
        try:
            top = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=e.lineno) from None
        keys = f" with keys {', '.join(map(str, top))}" if isinstance(top, dict) else ""
        raise fail(f"expected a JSON list of objects, got {_json_type(top)}{keys}", pos)
    pos = skip_ws(pos + 1)
    out: list[Record] = []
    if pos < len(text) and text[pos] == "]":
        pos += 1
    else:
        while True:
            pos = skip_ws(pos)
            try:
                obj, end = decoder.raw_decode(text, pos)
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON ({e.msg} at column {e.colno})", path=path, line=e.lineno) from None
            if not isinstance(obj, dict):
                raise fail(f"item {len(out)}: expected a JSON object, got {_json_type(obj)}", pos)
            out.append(Record(line=line_of(pos), index=len(out), data=obj))
            pos = skip_ws(end)
            if pos >= len(text):
                raise fail("invalid JSON (unexpected end of file: the list is not closed with ']')", pos)
            if text[pos] == ",":
                pos += 1
            elif text[pos] == "]":
                pos += 1
                break
            else:
                raise fail(f"invalid JSON (expected ',' or ']' after item {len(out) - 1})", pos)
    if skip_ws(pos) < len(text):
        raise fail("invalid JSON (extra data after the closing ']')", skip_ws(pos))
    return out


def _delimited(path: Path, text: str, delimiter: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    header: list[str] | None = None
    out: list[Record] = []
    consumed = 0  # physical lines read before the current row
    try:
        for row in reader:
            start, consumed = consumed + 1, reader.line_num
            if not row or (len(row) == 1 and not row[0].strip()):
                continue
            if header is None:
                header = [h.strip() for h in row]
                seen: set[str] = set()
                for h in header:
                    if not h:
                        raise DataError("the header has an empty column name", path=path, line=start)
                    if h in seen:
                        raise DataError("duplicate column in the header", path=path, line=start, field=h)
                    seen.add(h)
                continue
            if len(row) != len(header):
                raise DataError(
                    f"record has {len(row)} column(s) but the header has {len(header)} ({', '.join(header)})",
                    path=path,
                    line=start,
                )
            out.append(Record(line=start, index=len(out), data=dict(zip(header, row, strict=True))))
    except csv.Error as e:
        raise DataError(f"malformed CSV ({e})", path=path, line=reader.line_num) from None
    return out


def _json_type(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


__all__ = ["Format", "Record", "detect_format", "read_records", "read_text"]
