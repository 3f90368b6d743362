"""Load `Example`s from a user's JSONL, JSON or CSV file through an explicit field mapping.

The mapping is explicit (no guessing which column is the answer) because a silently wrong guess would
optimize against the wrong target. Every problem is reported with file, line and field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.records import Record, detect_format, read_records

FieldMap = Mapping[str, str] | Sequence[str]
TypeSpec = type | tuple[type, ...]


def load_examples(
    path: str | Path,
    *,
    inputs: FieldMap,
    labels: FieldMap = (),
    id_field: str | None = None,
    label_types: Mapping[str, TypeSpec] | None = None,
    format: str | None = None,
    encoding: str = "utf-8",
) -> list[Example]:
    """Read examples from `path` (format from the suffix: .jsonl/.ndjson, .json, .csv, .tsv).

    `inputs` and `labels` map *source field -> example field* (`{"Question": "question"}`), or are a list
    of names kept as they are. `label_types` declares the type of a label (keyed by example field name);
    CSV text is converted to int/float/bool when declared, JSON values must already have the type.
    Ids come from `id_field`, or default to `<file stem>:<line>` (`<file stem>:<index>` for a JSON list).
    Raises `DataError` naming file, line and field for any bad record and for duplicate ids.
    """
    path = Path(path)
    fmt = detect_format(path, format)
    input_map = _field_map(inputs, "inputs")
    label_map = _field_map(labels, "labels")
    if not input_map:
        raise ValueError("inputs must name at least one source field")
    types = {name: _type_tuple(name, t) for name, t in (label_types or {}).items()}
    unknown = sorted(set(types) - set(label_map.values()))
    if unknown:
        raise ValueError(
            f"label_types names {', '.join(unknown)}, which are not label fields "
            f"(label fields: {', '.join(label_map.values()) or 'none'})"
        )

    records = read_records(path, format=fmt, encoding=encoding)
    text_values = fmt in ("csv", "tsv")
    examples: list[Example] = []
    first_line: dict[str, int] = {}
    for rec in records:
        ex_inputs = {dst: _get(path, rec, src) for src, dst in input_map.items()}
        ex_labels: dict[str, Any] = {}
        for src, dst in label_map.items():
            value = _get(path, rec, src)
            if dst in types:
                value = _check_type(path, rec, src, dst, value, types[dst], text_values)
            ex_labels[dst] = value
        ex_id = _id_of(path, rec, id_field, fmt)
        if ex_id in first_line:
            raise DataError(
                f"duplicate id {ex_id!r} (first seen at line {first_line[ex_id]})",
                path=path,
                line=rec.line,
                field=id_field,
            )
        first_line[ex_id] = rec.line
        examples.append(Example(id=ex_id, inputs=ex_inputs, labels=ex_labels))
    return examples


def _field_map(spec: FieldMap, what: str) -> dict[str, str]:
    if isinstance(spec, str):
        raise TypeError(f"{what} must be a mapping or a list of field names, not the string {spec!r}")
    pairs = list(spec.items()) if isinstance(spec, Mapping) else [(name, name) for name in spec]
    out: dict[str, str] = {}
    for src, dst in pairs:
        if not isinstance(src, str) or not isinstance(dst, str) or not src or not dst:
            raise TypeError(f"{what}: field names must be non-empty strings, got {src!r} -> {dst!r}")
        if dst in out.values():
            raise ValueError(f"{what}: two source fields map to the same field {dst!r}")
        out[src] = dst
    return out


def _type_tuple(name: str, spec: TypeSpec) -> tuple[type, ...]:
    types = spec if isinstance(spec, tuple) else (spec,)
    if not types or not all(isinstance(t, type) for t in types):
        raise TypeError(f"label_types[{name!r}] must be a type or a tuple of types, got {spec!r}")
    return types


def _get(path: Path, rec: Record, field: str) -> Any:
    if field not in rec.data:
        present = ", ".join(map(str, rec.data)) or "none"
        raise DataError(f"missing (the record has fields: {present})", path=path, line=rec.line, field=field)
    return rec.data[field]


def _id_of(path: Path, rec: Record, id_field: str | None, fmt: str) -> str:
    if id_field is None:
        return f"{path.stem}:{rec.index if fmt == 'json' else rec.line}"
    value = _get(path, rec, id_field)
    if isinstance(value, bool) or not isinstance(value, str | int) or value == "":
        raise DataError(
            f"expected a non-empty string or an integer id, got {value!r}",
            path=path,
            line=rec.line,
            field=id_field,
        )
    return str(value)


_TEXT_BOOLS = {"true": True, "false": False, "yes": True, "no": False, "1": True, "0": False}


def _check_type(
    path: Path, rec: Record, src: str, dst: str, value: Any, types: tuple[type, ...], text_values: bool
) -> Any:
    """Return `value` if it has one of `types` (converting CSV text and int -> float), else raise."""
    if isinstance(value, bool):
        if bool in types:
            return value
    elif isinstance(value, types):
        return value
    elif isinstance(value, int) and float in types:
        return float(value)
    if text_values and isinstance(value, str):
        for t in types:
            converted = _from_text(value, t)
            if converted is not None:
                return converted
    names = " or ".join(t.__name__ for t in types)
    label = f" for label {dst!r}" if dst != src else ""
    raise DataError(
        f"expected {names}{label}, got {type(value).__name__} {value!r}", path=path, line=rec.line, field=src
    )


def _from_text(text: str, t: type) -> Any:
    s = text.strip()
    try:
        if t is bool:
            return _TEXT_BOOLS.get(s.lower())
        if t is int:
            return int(s)
        if t is float:
            return float(s)
    except ValueError:
        return None
    return None


__all__ = ["load_examples"]
