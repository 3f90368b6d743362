"""The prompt format as a searched variable: which formats a module may take during a search.

MIPRO (every variant) and `bootstrap-random-search` take a `search_formats` setting: False or an
empty list keeps every module in its start's format, so requests, candidate hashes and stored
studies stay exactly what they were before formats could be searched; True allows every format in
`PROMPT_FORMATS`; a list allows those; a mapping from a start format to one of these allows, for a
module starting in that format, what its value allows (a start format it does not name searches
nothing). The mapping exists because what helps depends on where a module starts: a `Predict` starts
in JSON and gains from a tagged layout, while a `ChainOfThought` starts in labelled lines, where the
reasoning is free text, and has nothing measured to gain.

Defaults, from the measurements in docs/benchmarks.md: MIPRO `{"json": ["tags"]}` (a JSON start may
take the tagged layout; a labels start, such as a reasoning module's, searches nothing),
bootstrap-random-search False (not measured). A module's start format is always a choice, and the
first one, so the start configuration stays in the search space (MIPRO tries it first, and the
result is never worse than the start).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from prompthone.optimize.settings import MethodSettings, SettingError
from prompthone.program.params import PROMPT_FORMATS

KEY = "search_formats"


def check_search_formats(settings: MethodSettings) -> None:
    """Raise `SettingError` unless `search_formats` is a bool, a list of format names, or a mapping from
    format names to either; a list is kept as a tuple and a mapping as a dict of those (settings are
    frozen), in the order given."""
    value = getattr(settings, KEY)
    if isinstance(value, Mapping):
        bad_starts = [k for k in value if k not in PROMPT_FORMATS]
        if bad_starts:
            raise SettingError(
                KEY,
                f"{settings.method} setting {KEY} must be keyed by start formats from {list(PROMPT_FORMATS)}; "
                f"unknown start format(s) {bad_starts}; got {dict(value)!r}",
            )
        settings.normalize(KEY, {k: _checked(settings, v, whole=value) for k, v in value.items()})
        return
    settings.normalize(KEY, _checked(settings, value, whole=value))


def _checked(settings: MethodSettings, value: Any, *, whole: Any) -> bool | tuple[str, ...]:
    """One bool-or-list value checked (a list as a tuple); the message shows the whole setting."""
    if isinstance(value, bool):
        return value
    ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    unknown = [v for v in value if v not in PROMPT_FORMATS] if ok else []
    if not ok or unknown:
        what = f"unknown format(s) {unknown}; " if unknown else ""
        raise SettingError(
            KEY,
            f"{settings.method} setting {KEY} must be true, false, a list of prompt formats from "
            f"{list(PROMPT_FORMATS)} or a mapping from a start format to one of these; {what}got {whole!r}",
        )
    return tuple(value)


def for_start(start_format: str, value: Any) -> bool | Sequence[str]:
    """What the setting allows a module starting in `start_format` (a mapping read at that key)."""
    if isinstance(value, Mapping):
        return value.get(start_format, False)
    return value


def searches_formats(value: Any) -> bool:
    """Whether the setting asks for any format search at all (False, [] and a mapping of those do not)."""
    if isinstance(value, Mapping):
        return any(bool(v) for v in value.values())
    return bool(value)


def format_choices(start_format: str, value: Any) -> list[str]:
    """The formats a module starting in `start_format` may take: the start's first, then the allowed
    ones in the order given (`PROMPT_FORMATS` order for True), each once. One choice means no search."""
    value = for_start(start_format, value)
    if not value:
        return [start_format]
    allowed = PROMPT_FORMATS if value is True else tuple(value)
    out = [start_format]
    for f in allowed:
        if f not in out:
            out.append(f)
    return out


def fingerprint_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Settings as a stored study's fingerprint reads them: `search_formats` only when it is on, so a
    run without format search keeps the fingerprint it had before the setting existed (and resumes)."""
    out = dict(settings)
    if not searches_formats(out.get(KEY, False)):
        out.pop(KEY, None)
    return out


__all__ = [
    "KEY",
    "check_search_formats",
    "fingerprint_settings",
    "for_start",
    "format_choices",
    "searches_formats",
]
