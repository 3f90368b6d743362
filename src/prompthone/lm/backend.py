"""The one interface every model backend implements.

A backend turns a `Request` into a `Generation` or raises a typed `LMError`; retries, caching,
concurrency limits and accounting live once, in `LM`, so that a new backend is a single small class.
"""

from __future__ import annotations

import asyncio
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Generic, TypeVar

from prompthone.lm.types import Generation, Request

T = TypeVar("T")


class Backend(ABC):
    """A place that answers chat requests: an embedded model, or a server."""

    #: short name used in model strings and logs, e.g. "local" or "openai"
    kind: str = "backend"
    #: how many requests this backend should have in flight at once
    max_concurrency: int = 1
    #: True when it answers one request at a time, keeping the KV cache of the last prompt (the embedded
    #: model, llama_cpp.server): its requests are then sent one at a time, related prompts in a row
    #: (see `prompthone.lm.slots`)
    one_at_a_time: bool = False

    def __init__(self, model: str) -> None:
        self.model = model

    @abstractmethod
    def identity(self) -> str:
        """A string that names where answers come from, without any secret.

        Part of every cache key: two backends with the same identity and model must give the same
        answer to the same request.
        """

    @abstractmethod
    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        """Answer one request, or raise an `LMError` subclass."""

    async def aclose(self) -> None:  # noqa: B027 - optional hook
        """Release network clients; the default has nothing to release."""

    def describe(self) -> str:
        return f"{self.kind}/{self.model}"


class PerLoop(Generic[T]):
    """One object per running event loop.

    asyncio primitives and async HTTP clients are bound to the loop that first used them, while the
    sync convenience API starts a fresh loop per call; this keeps one instance per loop and forgets it
    when the loop is gone.
    """

    def __init__(self, factory: Callable[[], T]) -> None:
        self._factory = factory
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T] = weakref.WeakKeyDictionary()

    def get(self) -> T:
        loop = asyncio.get_running_loop()
        obj = self._by_loop.get(loop)
        if obj is None:
            obj = self._factory()
            self._by_loop[loop] = obj
        return obj

    def values(self) -> list[T]:
        return list(self._by_loop.values())
