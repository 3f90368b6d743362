"""The prompt format as a searched variable: which formats a module may take during a search.

MIPRO (every variant) and `bootstrap-random-search` take a `search_formats` setting: False or an
empty list keeps every module in its start's format, so requests, candidate hashes and stored
studies stay exactly what they were before formats could be searched; True allows every format in
`PROMPT_FORMATS`; a list allows those. Defaults, from the measurements in docs/benchmarks.md: MIPRO
`["labels"]` (a JSON start may go back to labelled lines), bootstrap-random-search False (not
measured). A module's start format is always a choice, and the
first one, so the start configuration stays in the search space (MIPRO tries it first, and the
result is never worse than the start).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prompthone.optimize.settings import MethodSettings, SettingError
from prompthone.program.params import PROMPT_FORMATS

KEY = "search_formats"


def check_search_formats(settings: MethodSettings) -> None:
    """Raise `SettingError` unless `search_formats` is a bool or a list of format names; a list is kept
    as a tuple (settings are frozen and hashable), in the order given."""
    value = getattr(settings, KEY)
    if isinstance(value, bool):
        return
    ok = isinstance(value, list | tuple) and all(isinstance(v, str) for v in value)
    unknown = [v for v in value if v not in PROMPT_FORMATS] if ok else []
    if not ok or unknown:
        what = f"unknown format(s) {unknown}; " if unknown else ""
        raise SettingError(
            KEY,
            f"{settings.method} setting {KEY} must be true, false or a list of prompt formats from "
            f"{list(PROMPT_FORMATS)}; {what}got {value!r}",
        )
    settings.normalize(KEY, tuple(value))


def searches_formats(value: bool | Sequence[str]) -> bool:
    """Whether the setting asks for any format search at all (False and [] do not)."""
    return bool(value)


def format_choices(start_format: str, value: bool | Sequence[str]) -> list[str]:
    """The formats a module starting in `start_format` may take: the start's first, then the allowed
    ones in the order given (`PROMPT_FORMATS` order for True), each once. One choice means no search."""
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


__all__ = ["KEY", "check_search_formats", "fingerprint_settings", "format_choices", "searches_formats"]
