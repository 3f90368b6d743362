"""The bound on requests in flight to one endpoint, and the order in which waiting requests are sent.

A server such as `llama_cpp.server` (and the embedded model) answers one request at a time and keeps
the KV cache of the prompt it evaluated last: a request whose prompt starts like the previous one only
evaluates the part that differs. Several candidates scored at once, their requests sent in the order
they arrived, make every prompt start unlike the previous one (measured: 71-74% of prompt tokens reused
against 84-89% with one candidate at a time). So when an endpoint serves one request at a time, the
free slot goes to the waiting request whose messages share the longest prefix with the last request
sent (ties: the one waiting longest): a candidate's examples, which differ only in their last message,
run in a row. Only the order changes, never a request, so answers, cache keys and scores do not.

Fairness: a request that has seen `PATIENCE` others sent since it began to wait goes next, so a stream
of related requests can delay another by a bounded number of requests, never starve it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prompthone.lm import settings
from prompthone.lm.backend import PerLoop

if TYPE_CHECKING:
    from prompthone.lm.backend import Backend
    from prompthone.lm.types import Request

Messages = tuple[tuple[str, str], ...]

#: how many requests may be sent ahead of a waiting one before it goes next, whatever its prefix
PATIENCE = 256


def common_prefix_chars(a: str, b: str) -> int:
    """Length of the longest common prefix of two strings (binary search on slices: C-speed compares)."""
    lo, hi = 0, min(len(a), len(b))
    if a[:hi] == b[:hi]:
        return hi
    while hi - lo > 1:  # a[:lo] == b[:lo], a[:hi] != b[:hi]
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


def shared_prefix(a: Messages, b: Messages) -> int:
    """How many characters of chat `b` repeat chat `a` from the start: whole equal messages, then the
    common start of the first message that differs (same role). A proxy for the prompt tokens a server
    can reuse, which follow the rendered chat in the same order."""
    n = 0
    for (role_a, text_a), (role_b, text_b) in zip(a, b, strict=False):
        if role_a != role_b:
            return n
        if text_a != text_b:
            return n + common_prefix_chars(text_a, text_b)
        n += len(text_a) + 1  # +1: the message boundary is shared too
    return n


@dataclass(eq=False)
class _Waiter:
    messages: Messages
    seq: int  # arrival order
    sent_before: int  # how many requests had been sent when it began to wait
    future: asyncio.Future = field(repr=False)


class AffineGate:
    """One request at a time, the next one chosen for its shared prefix with the last one sent.

    `affine=False` sends them in arrival order instead (PROMPTHONE_REQUEST_ORDER=fifo), for measuring
    what the order gains. Bound to one event loop, like every asyncio primitive.
    """

    def __init__(self, *, affine: bool = True, patience: int | None = None) -> None:
        self.affine = affine
        self.patience = int(PATIENCE if patience is None else patience)
        self.busy = False
        self.waiters: list[_Waiter] = []
        self.last: Messages | None = None
        #: requests sent through this gate so far
        self.sent = 0
        self._seq = 0

    @contextlib.asynccontextmanager
    async def hold(self, messages: Messages) -> AsyncIterator[None]:
        await self._acquire(messages)
        try:
            yield
        finally:
            self._release()

    async def _acquire(self, messages: Messages) -> None:
        if not self.busy and not self.waiters:
            self.busy = True
            self._sent(messages)
            return
        waiter = _Waiter(messages, self._seq, self.sent, asyncio.get_running_loop().create_future())
        self._seq += 1
        self.waiters.append(waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if waiter.future.done() and not waiter.future.cancelled():
                self._release()  # the slot was handed over just before the cancellation: pass it on
            elif waiter in self.waiters:
                self.waiters.remove(waiter)
            raise

    def _release(self) -> None:
        while self.waiters:
            waiter = self._pick()
            self.waiters.remove(waiter)
            if waiter.future.done():  # cancelled while waiting
                continue
            waiter.future.set_result(None)  # the slot passes straight to it: `busy` stays True
            self._sent(waiter.messages)
            return
        self.busy = False

    def _sent(self, messages: Messages) -> None:
        self.last = messages
        self.sent += 1

    def _pick(self) -> _Waiter:
        oldest = self.waiters[0]  # kept in arrival order
        if not self.affine or self.last is None or self.sent - oldest.sent_before >= self.patience:
            return oldest
        last = self.last
        # the longest shared prefix; among equals the earliest arrival (max keeps the first maximum)
        return max(self.waiters, key=lambda w: shared_prefix(last, w.messages))


class RequestSlots:
    """A bound on requests in flight that several `LM` objects can share.

    A run gives each role (task, proposer, teacher, judge) its own `LM` so their calls are counted
    apart; when two roles send to the same endpoint, their requests must still fit under one bound,
    or the endpoint sees the sum of the roles' limits.

    `size` is the bound callers plan with (`LM.max_concurrency`: e.g. how many trials MIPRO keeps in
    flight). An endpoint that serves one request at a time (`size` 1, or `one_at_a_time`: the embedded
    model, a server known to) is sent one request at a time whatever `size` is, in the order described
    in this module's docstring: more requests queued at such a server only wait there, in an order
    that no longer follows the prompts.
    """

    def __init__(self, size: int, *, one_at_a_time: bool = False) -> None:
        if int(size) < 1:
            raise ValueError(f"a request bound must be >= 1, got {size!r}")
        self.size = int(size)
        self.one_at_a_time = bool(one_at_a_time) or self.size == 1
        self._semaphores: PerLoop[asyncio.Semaphore] = PerLoop(lambda: asyncio.Semaphore(self.size))
        #: "affine" or "fifo" (PROMPTHONE_REQUEST_ORDER), read once: a bad value is refused before any call
        self.order = settings.request_order()
        self._gates: PerLoop[AffineGate] = PerLoop(lambda: AffineGate(affine=self.order == "affine"))

    @classmethod
    def for_backend(cls, backend: Backend, concurrency: int) -> RequestSlots:
        """The slots of one endpoint: at most `concurrency`, never above what the backend serves at once."""
        return cls(min(int(concurrency), backend.max_concurrency), one_at_a_time=backend.one_at_a_time)

    def get(self) -> asyncio.Semaphore:
        """This loop's plain bound (arrival order), whatever the endpoint serves at once."""
        return self._semaphores.get()

    def gate(self) -> AffineGate:
        """This loop's one-at-a-time gate (used when `one_at_a_time`)."""
        return self._gates.get()

    def hold(self, request: Request) -> contextlib.AbstractAsyncContextManager[object]:
        """A slot for sending `request`, held for the `async with` block."""
        if self.one_at_a_time:
            return self.gate().hold(request.messages)
        return self.get()
