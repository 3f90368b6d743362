"""What the other processes of a run spent, read back from the run's `ph_lm_calls`.

A run's summary counts usage from its leader's own `LM` objects; the calls its workers made are in the
store (each row names the process that made it), so the summary adds them: a run done by workers reports
every call, whoever made it, as a single-process run of the same config does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prompthone.lm.types import Completion
from prompthone.lm.usage import Usage


def others_usage(calls: Sequence[dict[str, Any]], me: str, windows: Sequence[tuple[float, float]]) -> dict[str, Usage]:
    """Usage by role of the `calls` (`RunStore.lm_calls()` rows) made by processes other than `me` at a
    time within one of `windows` ((start, end) in `time.time()` seconds)."""
    out: dict[str, Usage] = {}
    for row in calls:
        if row.get("worker") in (None, me) or not any(lo <= row["ts"] <= hi for lo, hi in windows):
            continue
        completion = Completion(text="", finish_reason=row.get("finish_reason") or "stop", model=row["model"],
                                prompt_tokens=row["prompt_tokens"], completion_tokens=row["completion_tokens"],
                                latency_s=row["latency_s"], cached=bool(row["cached"]),
                                reused_prompt_tokens=row.get("reused_prompt_tokens"))  # fmt: skip
        out.setdefault(row["role"], Usage()).record(completion)
    return out


def plus(usage: dict[str, float | int], other: Usage | None) -> dict[str, float | int]:
    """`usage` (a `Usage.as_dict()`) with `other` added."""
    if other is None:
        return usage
    more = other.as_dict()
    return {k: v + more.get(k, 0) for k, v in usage.items()}
