"""A backend that answers from a Python function: for fast tests of logic above the LM layer.

It goes through the same `LM` machinery (cache, retries, accounting) as a real model, so code tested
against it exercises the real paths; it never stands in for a real model as proof that a feature works.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from prompthone.lm.backend import Backend
from prompthone.lm.types import Generation, Request


class ScriptedBackend(Backend):
    """Answers each request with `respond(request)`; a returned `Exception` instance is raised instead.

    `delay_s` (seconds, or a function of the request) holds each answer back, e.g. to make requests
    finish in another order than they were sent."""

    kind = "scripted"

    def __init__(
        self,
        respond: Callable[[Request], str | Exception],
        *,
        name: str = "scripted",
        delay_s: float | Callable[[Request], float] = 0.0,
        max_concurrency: int = 64,
    ) -> None:
        super().__init__(name)
        self.respond = respond
        self.delay_s = delay_s
        self.max_concurrency = max_concurrency
        self.requests: list[Request] = []
        #: requests being answered now, and the most ever at once (what a concurrency bound must cap)
        self.inflight = self.peak_inflight = 0

    def identity(self) -> str:
        return f"scripted:{self.model}:{id(self.respond)}"

    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        self.requests.append(request)
        self.inflight += 1
        self.peak_inflight = max(self.peak_inflight, self.inflight)
        try:
            delay = self.delay_s(request) if callable(self.delay_s) else self.delay_s
            if delay:
                await asyncio.sleep(delay)
            out = self.respond(request)
        finally:
            self.inflight -= 1
        if isinstance(out, Exception):
            raise out
        prompt_tokens = sum(len(c.split()) for _, c in request.messages)
        return Generation(
            text=out, finish_reason="stop", prompt_tokens=prompt_tokens, completion_tokens=len(out.split())
        )
