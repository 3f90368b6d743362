"""Plain values that cross the LM layer's boundary: what is asked and what comes back."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant"]
Message = dict[str, str]  # {"role": ..., "content": ...}: the chat format every backend speaks

FinishReason = Literal["stop", "length", "timeout", "other"]


def check_messages(messages: list[Message]) -> list[Message]:
    """Reject malformed chat messages early, with the index and field at fault."""
    if not isinstance(messages, list) or not messages:
        raise ValueError("messages must be a non-empty list of {'role': ..., 'content': ...} dicts")
    out: list[Message] = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise ValueError(f"messages[{i}] must be a dict with 'role' and 'content', got {type(m).__name__}")
        role, content = m.get("role"), m.get("content")
        if role not in ("system", "user", "assistant"):
            raise ValueError(f"messages[{i}].role must be 'system', 'user' or 'assistant', got {role!r}")
        if not isinstance(content, str):
            raise ValueError(f"messages[{i}].content must be a string, got {type(content).__name__}")
        out.append({"role": role, "content": content})
    return out


@dataclass(frozen=True)
class Request:
    """Everything that can change an answer, apart from the backend's own identity.

    It is the unit of caching: two equal requests to the same backend and model give the same answer,
    which is why `sample_index` is part of it (several samples at temperature > 0 stay distinct and
    still replay exactly).
    """

    messages: tuple[tuple[str, str], ...]
    temperature: float = 0.0
    max_tokens: int = 512
    stop: tuple[str, ...] = ()
    top_p: float = 1.0
    seed: int = 0
    sample_index: int = 0
    response_format: str | None = None  # canonical JSON of a JSON schema, or None for free text

    @classmethod
    def build(
        cls,
        messages: list[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: list[str] | tuple[str, ...] | str | None = None,
        top_p: float = 1.0,
        seed: int = 0,
        sample_index: int = 0,
        response_format: dict[str, Any] | None = None,
    ) -> Request:
        msgs = check_messages(messages)
        if not 0.0 <= float(temperature) <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature!r}")
        if int(max_tokens) < 1:
            raise ValueError(f"max_tokens must be >= 1, got {max_tokens!r}")
        if not 0.0 < float(top_p) <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {top_p!r}")
        if int(sample_index) < 0:
            raise ValueError(f"sample_index must be >= 0, got {sample_index!r}")
        stops = (stop,) if isinstance(stop, str) else tuple(stop or ())
        # Key order is kept: it is the order a grammar makes the model write the fields in (reasoning first).
        fmt = json.dumps(response_format, separators=(",", ":")) if response_format else None
        return cls(
            messages=tuple((m["role"], m["content"]) for m in msgs),
            temperature=float(temperature),
            max_tokens=int(max_tokens),
            stop=stops,
            top_p=float(top_p),
            seed=int(seed),
            sample_index=int(sample_index),
            response_format=fmt,
        )

    @property
    def chat(self) -> list[Message]:
        return [{"role": r, "content": c} for r, c in self.messages]

    @property
    def schema(self) -> dict[str, Any] | None:
        return json.loads(self.response_format) if self.response_format else None

    def effective_seed(self) -> int:
        """The seed a backend should sample with: distinct per sample index, reproducible per request."""
        return (self.seed * 1_000_003 + self.sample_index) % (2**31 - 1)

    def key_fields(self) -> dict[str, Any]:
        # Built by hand: dataclasses.asdict deep-copies and costs ~30x more on this hot path.
        return {
            "messages": [list(m) for m in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "stop": list(self.stop),
            "top_p": self.top_p,
            "seed": self.seed,
            "sample_index": self.sample_index,
            "response_format": self.response_format,
        }


@dataclass(frozen=True)
class Generation:
    """What a backend returns for one request, before caching and accounting."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    #: prompt tokens the backend took from its KV cache instead of evaluating them (the prefix it shares
    #: with the prompt before), when the backend says; None when it does not
    reused_prompt_tokens: int | None = None


@dataclass(frozen=True)
class Completion:
    """One answer, with what it cost and where it came from."""

    text: str
    finish_reason: FinishReason
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    cached: bool
    model: str
    cache_key: str = field(default="", repr=False)
    #: see `Generation.reused_prompt_tokens`; None for an answer from the response cache
    reused_prompt_tokens: int | None = None

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens
