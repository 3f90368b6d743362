"""Traces: the record of every module call in one run, and demos bootstrapped from them.

Optimizers learn from traces (MIPRO keeps the module inputs/outputs of runs that passed the metric as
demos), and the store keeps them, so each call records what was sent and what came back in full.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from prompthone.lm.types import Message
from prompthone.program.params import Demo
from prompthone.program.parse import ParseFailure
from prompthone.program.values import format_value

CallStatus = Literal["ok", "parse_failure", "error"]


@dataclass(frozen=True)
class ModuleCall:
    """One module call: its inputs, the messages sent, the raw reply and what was read from it.

    `status` is "ok", "parse_failure" (the reply came back but a required field could not be read;
    `outputs` then holds None for it) or "error" (the LM call raised; `error` says what). `seq` is the
    order in which calls started within the run; `RunResult.trace` is sorted by it.
    """

    module: str
    inputs: dict[str, Any]
    outputs: dict[str, str | None]
    raw: str
    messages: list[Message]
    status: CallStatus
    seq: int = 0
    failure: ParseFailure | None = None
    error: str | None = None
    parsed_how: dict[str, str] = field(default_factory=dict)
    structured: bool = False
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    cached: bool = False
    finish_reason: str = ""
    #: the reply to the follow-up that asked for outputs `raw` lacked (None: none was asked); its
    #: tokens and latency are included above
    follow_up: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def lm_calls(self) -> int:
        """The LM requests this module call made: its own, and the follow-up's if one was asked."""
        return 1 if self.follow_up is None else 2

    @property
    def makes_demo(self) -> bool:
        """Whether this call shows the reply format done right in one reply (parsed, no follow-up)."""
        return self.ok and self.follow_up is None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-friendly form for stores and reports (inputs are kept as their prompt text)."""
        return {
            "module": self.module,
            "seq": self.seq,
            "status": self.status,
            "inputs": {k: format_value(v) for k, v in self.inputs.items()},
            "outputs": dict(self.outputs),
            "raw": self.raw,
            "messages": [dict(m) for m in self.messages],
            "failure": None if self.failure is None else self.failure.reason,
            "error": self.error,
            "parsed_how": dict(self.parsed_how),
            "structured": self.structured,
            "model": self.model,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "latency_s": self.latency_s,
            "cached": self.cached,
            "finish_reason": self.finish_reason,
            "follow_up": self.follow_up,
        }


def call_to_demo(call: ModuleCall) -> Demo:
    """The demo one successful call makes: its inputs and outputs (reasoning included)."""
    if not call.ok:
        raise ValueError(f"call to {call.module!r} has status {call.status!r}; only ok calls make demos")
    fields: dict[str, Any] = {k: v for k, v in call.inputs.items() if v is not None}
    fields.update({k: v for k, v in call.outputs.items() if v is not None})
    return Demo(fields)


def trace_to_demos(trace: Iterable[ModuleCall]) -> dict[str, Demo]:
    """One demo per module from a run's trace, for bootstrapping.

    A module called several times in one run (a loop, multi-hop) gives the demo of its FIRST ok call;
    `trace_to_all_demos` returns every one. Calls that failed to parse, errored or needed a follow-up
    to give their outputs are skipped: a demo must show the format done right, in one reply. Whether
    the run as a whole was good (the metric) is the caller's decision.
    """
    demos: dict[str, Demo] = {}
    for call in sorted(trace, key=lambda c: c.seq):
        if call.makes_demo and call.module not in demos:
            demos[call.module] = call_to_demo(call)
    return demos


def trace_to_all_demos(trace: Iterable[ModuleCall]) -> dict[str, list[Demo]]:
    out: dict[str, list[Demo]] = {}
    for call in sorted(trace, key=lambda c: c.seq):
        if call.makes_demo:
            out.setdefault(call.module, []).append(call_to_demo(call))
    return out


def count_failures(trace: Iterable[ModuleCall]) -> int:
    return sum(1 for c in trace if c.status == "parse_failure")
