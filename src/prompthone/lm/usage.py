"""Usage accounting: what was paid for, and what the cache served for free."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field, fields

from prompthone.lm.types import Completion


@dataclass
class Usage:
    """Running totals for one LM (or a sum of several).

    `prompt_tokens` / `completion_tokens` count tokens a backend actually processed (paid for);
    the `cached_*` fields count tokens replayed from the cache, so a warm re-run shows its savings.
    `reused_prompt_tokens` counts prompt tokens a backend took from its KV cache (the prefix shared with
    the prompt before), out of `reuse_reported_prompt_tokens`: the prompt tokens of the paid calls whose
    backend said how many it reused; their ratio is the reused share.
    """

    calls: int = 0
    cache_hits: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cached_completion_tokens: int = 0
    reused_prompt_tokens: int = 0
    reuse_reported_prompt_tokens: int = 0
    retries: int = 0
    errors: int = 0
    latency_s: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, c: Completion) -> None:
        with self._lock:
            self.calls += 1
            if c.cached:
                self.cache_hits += 1
                self.cached_prompt_tokens += c.prompt_tokens
                self.cached_completion_tokens += c.completion_tokens
            else:
                self.prompt_tokens += c.prompt_tokens
                self.completion_tokens += c.completion_tokens
                self.latency_s += c.latency_s
                if c.reused_prompt_tokens is not None:
                    self.reused_prompt_tokens += c.reused_prompt_tokens
                    self.reuse_reported_prompt_tokens += c.prompt_tokens

    def record_retry(self) -> None:
        with self._lock:
            self.retries += 1

    def record_error(self) -> None:
        with self._lock:
            self.errors += 1

    @property
    def paid_calls(self) -> int:
        return self.calls - self.cache_hits

    def as_dict(self) -> dict[str, float | int]:
        # Not `asdict`: it deep-copies every field, and the lock cannot be copied.
        d: dict[str, float | int] = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "_lock"}
        d["paid_calls"] = self.paid_calls
        return d

    def __add__(self, other: Usage) -> Usage:
        a, b = self.as_dict(), other.as_dict()
        a.pop("paid_calls"), b.pop("paid_calls")
        return Usage(**{k: a[k] + b[k] for k in a})
