"""Parsing: a model's reply becomes output fields, or an explicit `ParseFailure`.

Small models rarely reply in exactly the format they were shown. The rules, in order:

1. Label lines. A line that starts with a field's label followed by a colon starts that field's value;
   the value runs until the next label line, so it may span several lines (reasoning). Labels match
   blind to case, underscores and spacing (`answer`, `ANSWER`, `Search_Query`), with markdown around
   them (`**Answer:**`, `**Answer**:`, `## Answer`, `- Answer:`), and `Final Answer:` counts as
   `Answer:`. Text before the first label (chatter) is ignored unless rule 5 uses it.
2. Made-up next turn. If an *input* label appears once every required output already has a value,
   the model has started inventing another example (`Answer: 4` / `Question: ...` / `Answer: 6`):
   the reply is cut there.
3. Repeated labels. When a field appears more than once, the LAST complete value wins: a value that is
   empty or a copy of the format template (`...`, `<answer>`) is not complete. Last, because a model
   that restates the format or corrects itself ends with the value it means.
4. A field with no label line is looked for, in order, as an inline label later in a line
   (`... so 2+2=4. Answer: 4`), then as "the answer is X" (trailing period and bold removed).
5. If only one required output field exists and no output label appears at all, the whole reply is its
   value ("the whole reply is just the answer"). If the first output field (reasoning) has no label
   while a later one has a label line, the text before the first label line is taken as its value.
   If instead exactly one required field is missing while others have label lines, and the text before
   the first label line is one short line (at most 8 words, not ending in a colon), it is that field's
   value: the model put its answer first and then reasoned (`No` / `Reasoning: ...`).
6. Anything still missing: optional fields (chain-of-thought reasoning) become "", and a missing
   required field makes the reply a `ParseFailure` (what was found is kept as `partial`).
7. Follow-up. A module built with `follow_up=True` whose reply lacks required outputs asks once
   more, in the same chat, for those outputs only (`render.follow_up_message`); that reply is read by
   these rules with only the missing outputs required, and `merge_follow_up` takes those, except a
   whole unlabelled reply longer than one short line (rule 5 would make any chatter the answer) that
   rule 8 did not read an allowed value from. What is still missing fails.

8. Label sets. An output field whose description enumerates its values ("one of: a, b, c") takes the
   value a reply starts it with when the reply goes on past it: `Label: entity` followed by a line of
   chatter, or the value written as a marker (`<entity>`, `<description>...</description>`) is that
   value. Only when the first line starts with an allowed value and names no other one; a value that
   is already one, or names none or several, is kept as written (the metric judges it).

Each prompt format (`PromptParams.format`) has its reader here, chosen by `parse_reply`:

- "labels" and "recap" reply in `Label: value` lines: the rules above.
- "tags" replies with `<field>value</field>` markers: every marker of a known field is turned into a
  label line (an opening marker starts the value, a closing one ends it, text between a closing and
  the next opening marker is dropped), then the rules above apply,
  so a reply with no markers at all, a missing closing marker or a made-up next turn
  (`<question>...`) is read as it would be in "labels".
- "json" (and any format with `structured=True`) is read as a JSON object first (code fences and
  chatter around the object are tolerated; of several objects, the first with an output key is the
  reply). An object that does not decode (cut off at max_tokens: the 0.5B model pretty-prints, so
  the closing brace is the first thing a tight limit drops; a trailing comma; Python quotes) is read
  by its `"key": value` pairs (`json-pairs`); a reply with no such pair falls back to the rules above.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from typing import Any

from prompthone.program.label_sets import find_labels, label_pattern
from prompthone.program.params import PROMPT_FORMATS
from prompthone.program.signature import Field, Signature
from prompthone.program.values import label_key

_LEAD_MARKERS = re.compile(r"^(?:#{1,6}\s*|>\s*|[-*+]\s+|\d+[.)]\s+)+")
_MAX_LABEL_CHARS = 48


@dataclass(frozen=True)
class ParseFailure:
    """A reply that could not be read as the module's outputs: an outcome, kept with its raw text."""

    reason: str
    raw: str
    missing: tuple[str, ...] = ()
    partial: dict[str, str] = field(default_factory=dict)
    module: str = ""

    def __str__(self) -> str:
        where = f"module {self.module!r}: " if self.module else ""
        return f"{where}{self.reason}"


@dataclass(frozen=True)
class Parsed:
    """The fields read from a reply, how each was found, and the failure if any required one is missing."""

    values: dict[str, str]
    how: dict[str, str]
    failure: ParseFailure | None = None

    @property
    def ok(self) -> bool:
        return self.failure is None


def _clean(value: str) -> str:
    v = value.strip()
    for mark in ("**", "__"):
        while len(v) > 2 * len(mark) and v.startswith(mark) and v.endswith(mark):
            v = v[len(mark) : -len(mark)].strip()
        if v.startswith(mark) and v.count(mark) == 1:
            v = v[len(mark) :].strip()
        if v.endswith(mark) and v.count(mark) == 1:
            v = v[: -len(mark)].strip()
    return v


def _is_template(value: str, name: str) -> bool:
    """True for a copy of the format template (`...`, `<answer>`) rather than a real value."""
    v = value.strip()
    if v in ("...", "…", "<...>"):
        return True
    return v.startswith("<") and v.endswith(">") and label_key(v) in (label_key(name), "value", "")


@functools.lru_cache(maxsize=512)  # signatures are immutable and hashable; callers only read the index
def _label_index(signature: Signature) -> dict[str, tuple[str, bool]]:
    """label key -> (field name, is_output)."""
    index: dict[str, tuple[str, bool]] = {}
    for f in signature.inputs:
        index[label_key(f.name)] = (f.name, False)
    for f in signature.outputs:
        index[label_key(f.name)] = (f.name, True)
        index.setdefault("final" + label_key(f.name), (f.name, True))
    return index


def _match_label(line: str, index: dict[str, tuple[str, bool]]) -> tuple[str, bool, str] | None:
    """(field, is_output, rest of line) when the line starts with a known label."""
    body = line.strip()
    stripped = _LEAD_MARKERS.sub("", body)
    had_marker = stripped != body
    colon = -1
    for sep in (":", "："):
        pos = stripped.find(sep)
        if 0 < pos <= _MAX_LABEL_CHARS and (colon < 0 or pos < colon):
            colon = pos
    if colon > 0:
        hit = index.get(label_key(stripped[:colon]))
        if hit is not None:
            return hit[0], hit[1], _clean(stripped[colon + 1 :])
    # A heading or bold label alone on its line (`## Answer`, `**Answer**`), value on the next lines.
    bold = stripped.startswith(("**", "__")) and stripped.endswith(("**", "__"))
    if (had_marker or bold) and len(stripped) <= _MAX_LABEL_CHARS:
        hit = index.get(label_key(stripped))
        if hit is not None:
            return hit[0], hit[1], ""
    return None


@dataclass
class _Scan:
    segments: list[tuple[str, bool, str]]  # (field, is_output, value) in reply order
    preamble: str  # text before the first label line
    kept: str  # the reply up to a made-up next turn (rule 2)


def _complete(segments: list[tuple[str, bool, list[str]]], fields: list[Field]) -> bool:
    done = {n for n, o, lines in segments if o and (v := _clean("\n".join(lines))) and not _is_template(v, n)}
    return all(f.name in done for f in fields)


def _scan(text: str, signature: Signature, optional: Collection[str]) -> _Scan:
    index = _label_index(signature)
    required = [f for f in signature.outputs if f.name not in optional]
    segments: list[tuple[str, bool, list[str]]] = []
    preamble: list[str] = []
    kept: list[str] = []
    for line in text.split("\n"):
        hit = _match_label(line, index)
        if hit is not None:
            name, is_output, rest = hit
            if not is_output and _complete(segments, required):
                break  # rule 2: every output is there and the model started inventing another example
            segments.append((name, is_output, [rest] if rest else []))
        elif segments:
            segments[-1][2].append(line)
        else:
            preamble.append(line)
        kept.append(line)
    return _Scan(
        segments=[(n, o, _clean("\n".join(lines))) for n, o, lines in segments],
        preamble="\n".join(preamble).strip(),
        kept="\n".join(kept).strip(),
    )


def _short_value(text: str) -> bool:
    """One line of at most 8 words that does not announce more to come: a value, not chatter."""
    t = text.strip()
    return bool(t) and "\n" not in t and len(t.split()) <= 8 and not t.endswith(":")


def _words_pattern(f: Field) -> str:
    return r"[\s_]*".join(re.escape(w) for w in f.label.split())


@functools.lru_cache(maxsize=512)
def _inline_pattern(f: Field) -> re.Pattern[str]:
    return re.compile(rf"(?<![A-Za-z0-9])(?:\*\*)?{_words_pattern(f)}(?:\*\*)?\s*[:：]\s*(.+)$", re.I | re.M)


@functools.lru_cache(maxsize=512)
def _answer_is_pattern(f: Field) -> re.Pattern[str]:
    return re.compile(rf"^.*\b{_words_pattern(f)}\s+(?:is|would\s+be|will\s+be)\s*:?\s*(.+)$", re.I | re.M)


def _inline(text: str, f: Field) -> str | None:
    pat = _inline_pattern(f)
    found = [_clean(m.group(1)) for m in pat.finditer(text)]
    found = [v for v in found if v and not _is_template(v, f.name)]
    return found[-1] if found else None


def _answer_is(text: str, f: Field) -> str | None:
    # The greedy `.*` makes each line yield its last "the answer is", as a later one corrects an earlier.
    pat = _answer_is_pattern(f)
    found: list[str] = []
    for m in pat.finditer(text):
        v = re.split(r"(?<=[.!?])\s+(?=[A-Z])", m.group(1).strip(), maxsplit=1)[0]
        v = _clean(_clean(v).rstrip("."))
        if v and not _is_template(v, f.name):
            found.append(v)
    return found[-1] if found else None


def parse_text(signature: Signature, text: str, *, optional: Collection[str] = (), truncated: bool = False) -> Parsed:
    """Read `Label: value` lines (see the module docstring for every rule)."""
    raw = text
    text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
    if not text:
        return Parsed({}, {}, _failure(signature, optional, {}, raw, "empty reply", truncated))
    scan = _scan(text, signature, optional)
    segments = scan.segments
    values: dict[str, str] = {}
    how: dict[str, str] = {}
    outputs_labelled = any(is_out for _, is_out, _ in segments)
    for f in signature.outputs:
        complete = [v for n, o, v in segments if o and n == f.name and v and not _is_template(v, f.name)]
        if complete:
            values[f.name], how[f.name] = complete[-1], "label"
    cut_text = scan.kept  # fallbacks search only the part of the reply that rule 2 kept
    for f in signature.outputs:
        if f.name in values:
            continue
        for finder, tag in ((_inline, "inline"), (_answer_is, "answer-is")):
            v = finder(cut_text, f)
            if v is not None:
                values[f.name], how[f.name] = v, tag
                break
    required = [f for f in signature.outputs if f.name not in optional]
    missing = [f for f in required if f.name not in values]
    if len(required) == 1 and missing and not outputs_labelled:
        values[missing[0].name], how[missing[0].name] = _clean(cut_text), "whole-reply"
    first = signature.outputs[0]
    later_found = any(f.name in values for f in signature.outputs[1:])
    if first.name not in values and later_found and outputs_labelled and scan.preamble:
        values[first.name], how[first.name] = scan.preamble, "preamble"
    missing = [f for f in required if f.name not in values]
    if len(missing) == 1 and outputs_labelled and "preamble" not in how.values() and _short_value(scan.preamble):
        values[missing[0].name], how[missing[0].name] = _clean(scan.preamble), "answer-first"
    for f in signature.outputs:
        if f.name not in values and f.name in optional:
            values[f.name], how[f.name] = "", "absent"
    missing_names = [f.name for f in signature.outputs if f.name not in values]
    if missing_names:
        reason = "no value for " + ", ".join(f"'{signature_label(signature, n)}:'" for n in missing_names)
        return Parsed(values, how, _failure(signature, optional, values, raw, reason, truncated))
    return Parsed(values, how)


def merge_follow_up(first: Parsed, second: Parsed, reply: str) -> Parsed:
    """`first`, with the required outputs it lacked taken from the follow-up reply (`second`, read
    with only those required); rule 7 of the module docstring."""
    if first.failure is None:
        return first
    values, how = dict(first.values), dict(first.how)
    for name in first.failure.missing:
        value = second.values.get(name)
        if value is None or (second.how.get(name) == "whole-reply" and not _short_value(reply)):
            continue
        values[name], how[name] = value, "follow-up"
    still = tuple(n for n in first.failure.missing if n not in values)
    if not still:
        return Parsed(values, how)
    reason = f"{first.failure.reason}; asked again for it, the follow-up reply gave none either"
    return Parsed(values, how, replace(first.failure, reason=reason, missing=still, partial=values))


def signature_label(signature: Signature, name: str) -> str:
    for f in signature.outputs + signature.inputs:
        if f.name == name:
            return f.label
    return name


def _failure(
    signature: Signature,
    optional: Collection[str],
    values: dict[str, str],
    raw: str,
    reason: str,
    truncated: bool,
) -> ParseFailure:
    missing = tuple(f.name for f in signature.outputs if f.name not in values and f.name not in optional)
    if truncated:
        reason += " (the reply was cut off at max_tokens)"
    return ParseFailure(reason=reason, raw=raw, missing=missing, partial=dict(values))


_DECODER = json.JSONDecoder()


def _json_object(text: str, keys: Collection[str]) -> dict[str, Any] | None:
    """The reply's JSON object: the first one holding one of `keys` (label keys), else the first one.

    Each `{` is tried as the start of an object, so chatter with braces after the object, or a second
    object (a made-up next turn, as rule 2 cuts in label replies), does not make the reply unreadable.
    """
    t = text.strip()
    fence = re.search(r"```(?:json)?\s*(.*?)```", t, re.S | re.I)
    if fence:
        t = fence.group(1).strip()
    first: dict[str, Any] | None = None
    for brace in re.finditer(r"\{", t):
        try:
            obj, _end = _DECODER.raw_decode(t, brace.start())
        except json.JSONDecodeError:
            continue
        if isinstance(obj, dict):
            if any(label_key(str(k)) in keys for k in obj):
                return obj
            first = first or obj
    return first


_PAIR = re.compile(
    r"""(?P<q>["'])(?P<key>(?:(?!(?P=q))[^\\\n]|\\.){1,48})(?P=q)\s*:\s*"""
    r"""(?:(?P<vq>["'])(?P<str>(?:(?!(?P=vq))[^\\]|\\.)*)(?:(?P=vq)|\\?\Z)"""
    r"""|(?P<lit>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?|true|false|null)\b)"""
)


def _json_pairs(text: str) -> dict[str, Any]:
    """The `"key": value` pairs of an object that does not decode, by label key, the first of each.

    The 0.5B model pretty-prints its JSON, so a tight max_tokens cuts the closing brace off; others
    write a trailing comma or Python quotes. A string cut off inside keeps what was written, as a
    `Label:` line cut off does.
    """
    pairs: dict[str, Any] = {}
    for m in _PAIR.finditer(text):
        key = label_key(m.group("key"))
        if key in pairs:
            continue
        if m.group("lit") is not None:
            pairs[key] = m.group("lit")
            continue
        raw = m.group("str")
        try:
            pairs[key] = json.loads(f'"{raw}"', strict=False) if m.group("vq") == '"' else raw
        except json.JSONDecodeError:
            pairs[key] = raw
    return pairs


def parse_json(signature: Signature, text: str, *, optional: Collection[str] = (), truncated: bool = False) -> Parsed:
    """Read a JSON object reply; keys match field names blind to case. An object that does not decode is
    read by its `"key": value` pairs; a reply with none falls back to the label rules."""
    obj = _json_object(text, {label_key(f.name) for f in signature.outputs})
    how_found = "json"
    if obj is None:
        obj, how_found = _json_pairs(text), "json-pairs"
        if not obj:
            return parse_text(signature, text, optional=optional, truncated=truncated)
    by_key = {label_key(str(k)): v for k, v in obj.items()}
    values: dict[str, str] = {}
    how: dict[str, str] = {}
    for f in signature.outputs:
        v = by_key.get(label_key(f.name))
        if v is not None:
            values[f.name] = v if isinstance(v, str) else json.dumps(v, ensure_ascii=False)
            how[f.name] = how_found
        elif f.name in optional:
            values[f.name], how[f.name] = "", "absent"
    missing = [f.name for f in signature.outputs if f.name not in values]
    if missing:
        reason = "JSON reply has no key " + ", ".join(repr(n) for n in missing)
        return Parsed(values, how, _failure(signature, optional, values, text, reason, truncated))
    return Parsed(values, how)


@functools.lru_cache(maxsize=512)
def _tag_pattern(signature: Signature) -> re.Pattern[str]:
    names = sorted({f.name for f in signature.inputs + signature.outputs}, key=len, reverse=True)
    alternatives = "|".join(re.escape(n) for n in names)
    return re.compile(rf"<\s*(/?)\s*({alternatives})\s*>", re.I)


def _tags_to_labels(signature: Signature, text: str) -> str:
    """`<answer>4</answer>` -> `Answer: 4` on a line of its own, for the label rules to read.

    Text after a closing marker and before the next opening one is outside every field and dropped
    (`<label>human</label> because it asks for a person` is `human`); text before the first marker is
    kept, as the label rules may use it (reasoning written before the markers).
    """
    labels = {f.name.lower(): f.label for f in signature.inputs + signature.outputs}
    out: list[str] = []
    pos, inside, seen = 0, False, False
    for m in _tag_pattern(signature).finditer(text):
        if inside or not seen:
            out.append(text[pos : m.start()])
        pos = m.end()
        if m.group(1):
            inside = False
            out.append("\n")
        else:
            inside = seen = True
            out.append(f"\n{labels[m.group(2).lower()]}: ")
    if inside or not seen:
        out.append(text[pos:])
    return "".join(out)


def parse_tags(signature: Signature, text: str, *, optional: Collection[str] = (), truncated: bool = False) -> Parsed:
    """Read `<field>value</field>` markers (the "tags" format); see the module docstring."""
    parsed = parse_text(signature, _tags_to_labels(signature, text), optional=optional, truncated=truncated)
    if parsed.failure is not None:  # keep the model's own text in the failure, not the rewritten one
        return Parsed(parsed.values, parsed.how, replace(parsed.failure, raw=text))
    return parsed


@functools.lru_cache(maxsize=512)
def _label_sets(signature: Signature) -> dict[str, tuple[str, ...]]:
    """output field -> the values its description enumerates (fields that enumerate none are left out)."""
    return {f.name: tuple(found) for f in signature.outputs if f.description and (found := find_labels(f.description))}


_LEADING_MARKUP = re.compile(r"^[\s<*_\"'`(\[]+")


def _settled(value: str, labels: tuple[str, ...]) -> str | None:
    """The allowed value `value` starts with, when it goes on past it (rule 8); None to keep `value`."""
    if any(value.strip().casefold() == x.casefold() for x in labels):
        return None
    first = _LEADING_MARKUP.sub("", value.strip().split("\n", 1)[0])
    named = [(x, p) for x in labels if (p := label_pattern(x)).search(first)]
    if len(named) == 1 and named[0][1].match(first):
        return named[0][0]
    return None


def settle_labels(signature: Signature, parsed: Parsed) -> Parsed:
    """`parsed` with rule 8 applied to every output field that enumerates its values; a failure is kept."""
    sets = _label_sets(signature)
    if not sets or parsed.failure is not None:
        return parsed
    values, how = dict(parsed.values), dict(parsed.how)
    for name, labels in sets.items():
        value = values.get(name)
        picked = None if value is None else _settled(value, labels)
        if picked is not None:
            values[name], how[name] = picked, f"{how[name]}+label-set"
    return Parsed(values, how) if values != parsed.values else parsed


def parse_reply(
    signature: Signature,
    text: str,
    *,
    structured: bool = False,
    optional: Collection[str] = (),
    truncated: bool = False,
    format: str = "labels",
) -> Parsed:
    """Turn a reply into output fields, read as `format` writes them; never raises on a bad reply,
    returns a failure instead."""
    if structured or format == "json":
        parsed = parse_json(signature, text, optional=optional, truncated=truncated)
    elif format == "tags":
        parsed = parse_tags(signature, text, optional=optional, truncated=truncated)
    elif format in PROMPT_FORMATS:
        parsed = parse_text(signature, text, optional=optional, truncated=truncated)
    else:
        raise ValueError(f"prompt format must be one of {list(PROMPT_FORMATS)}, got {format!r}")
    return settle_labels(signature, parsed)
