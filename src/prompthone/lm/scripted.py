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
    """Answers each request with `respond(request)`; a returned `Exception` instance is raised instead."""

    kind = "scripted"

    def __init__(
        self,
        respond: Callable[[Request], str | Exception],
        *,
        name: str = "scripted",
        delay_s: float = 0.0,
        max_concurrency: int = 64,
    ) -> None:
        super().__init__(name)
        self.respond = respond
        self.delay_s = delay_s
        self.max_concurrency = max_concurrency
        self.requests: list[Request] = []

    def identity(self) -> str:
        return f"scripted:{self.model}:{id(self.respond)}"

    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        self.requests.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        out = self.respond(request)
        if isinstance(out, Exception):
            raise out
        prompt_tokens = sum(len(c.split()) for _, c in request.messages)
        return Generation(
            text=out, finish_reason="stop", prompt_tokens=prompt_tokens, completion_tokens=len(out.split())
        )
