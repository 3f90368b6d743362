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


class RequestSlots:
    """A bound on requests in flight that several `LM` objects can share.

    A run gives each role (task, proposer, teacher, judge) its own `LM` so their calls are counted
    apart; when two roles send to the same endpoint, their requests must still fit under one bound,
    or the endpoint sees the sum of the roles' limits.
    """

    def __init__(self, size: int) -> None:
        if int(size) < 1:
            raise ValueError(f"a request bound must be >= 1, got {size!r}")
        self.size = int(size)
        self._semaphores: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(self.size))

    def get(self) -> asyncio.Semaphore:
        return self._semaphores.get()
