"""The run context: what one program run uses (LM, candidate, trace), carried in a ContextVar.

Nothing about a run is stored on the program or its modules, so one program object can run under many
candidates at once in one process. asyncio tasks and `copy_context()` give every run its own copy of
the variable; a module call reads it to learn which LM to ask, which params to render, and where to
record itself.

Sync `forward` methods run in worker threads (a copied context goes with them). A sync module call in
such a thread does not call the LM itself: it submits its coroutine to the run's event loop and waits.
So every LM call and every trace append happens on the event loop thread, and a thread only blocks
while its own run waits for the model.
"""

from __future__ import annotations

import asyncio
import contextvars
import itertools
import threading
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

from prompthone.lm.client import LM

if TYPE_CHECKING:
    from prompthone.program.candidate import Candidate
    from prompthone.program.module import Module
    from prompthone.program.trace import ModuleCall

T = TypeVar("T")

#: Threads for sync `forward` methods. Each one mostly waits on the model, so there are many more than
#: cores: the default executor's min(32, cores + 4) would cap a 2-core machine at 6 runs in flight.
FORWARD_THREADS = 256


class ProgramError(RuntimeError):
    """A program or module was used in a way that cannot work (no LM, unnamed module, sync-in-async)."""


@dataclass
class RunContext:
    """Everything one run of a program needs that must not live on the shared program object."""

    lm: LM
    candidate: Candidate | None
    names: dict[int, str]  # id(module) -> dotted name, walked once at the start of the run
    modules: Mapping[str, Module]  # keeps the named modules alive so their ids stay unique
    loop: asyncio.AbstractEventLoop
    program_name: str = "program"
    lm_options: dict[str, Any] = field(default_factory=dict)
    lm_for: dict[str, LM] = field(default_factory=dict)
    structured: bool | None = None
    trace: list[ModuleCall] = field(default_factory=list)
    cancelled: bool = False
    _seq: Iterator[int] = field(default_factory=itertools.count)
    _pending: set[Future[Any]] = field(default_factory=set)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def name_of(self, module: Module) -> str:
        try:
            return self.names[id(module)]
        except KeyError:
            raise ProgramError(
                f"{module!r} is not an attribute of {self.program_name}: assign every module in "
                "__init__ (self.x = Predict(...), or inside a list/dict attribute) so it has a name"
            ) from None

    def next_seq(self) -> int:
        return next(self._seq)

    def cancel(self) -> None:
        """Stop a sync forward left running in its thread after the run was cancelled (a timeout).

        Its pending module call is cancelled and any later one raises, so the thread makes no more
        LM calls for a run nobody waits for.
        """
        with self._lock:
            self.cancelled = True
            pending = list(self._pending)
        for fut in pending:
            fut.cancel()

    def check_not_cancelled(self, what: str) -> None:
        if self.cancelled:
            raise ProgramError(f"{what}: the run was cancelled")


_RUN: contextvars.ContextVar[RunContext | None] = contextvars.ContextVar("prompthone_run", default=None)
_DEFAULT_LM: contextvars.ContextVar[LM | None] = contextvars.ContextVar("prompthone_default_lm", default=None)


def current_run() -> RunContext | None:
    return _RUN.get()


@contextmanager
def enter_run(ctx: RunContext) -> Iterator[RunContext]:
    token = _RUN.set(ctx)
    try:
        yield ctx
    finally:
        _RUN.reset(token)


@contextmanager
def using(lm: LM) -> Iterator[LM]:
    """Give interactive calls (`program(question=...)`, `module(question=...)`) an LM to use."""
    if not isinstance(lm, LM):
        raise TypeError(f"using() needs an LM, got {type(lm).__name__}")
    token = _DEFAULT_LM.set(lm)
    try:
        yield lm
    finally:
        _DEFAULT_LM.reset(token)


def default_lm(what: str) -> LM:
    lm = _DEFAULT_LM.get()
    if lm is None:
        raise ProgramError(
            f"{what} was called outside a run and no LM is set: use program.run_sync(inputs, lm=lm), "
            "`await run_program(program, inputs, lm=lm)`, or `with using(lm): ...`"
        )
    return lm


def on_event_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def wait_on_run_loop(ctx: RunContext, coro: Coroutine[Any, Any, T], what: str) -> T:
    """Run `coro` on the run's event loop from a worker thread, in this run's context, and wait."""
    if on_event_loop():
        coro.close()
        raise ProgramError(
            f"{what} was called synchronously inside async code, which would block the event loop; "
            "use `await ....acall(...)` in an async forward"
        )

    async def in_run() -> T:
        _RUN.set(ctx)  # the task runs in its own copy of the loop's context; this set stays inside it
        return await coro

    with ctx._lock:
        if ctx.cancelled:
            coro.close()
            raise ProgramError(f"{what}: the run was cancelled")
        fut = asyncio.run_coroutine_threadsafe(in_run(), ctx.loop)
        ctx._pending.add(fut)
    try:
        return fut.result()
    finally:
        with ctx._lock:
            ctx._pending.discard(fut)


_EXECUTOR: ThreadPoolExecutor | None = None
_EXECUTOR_LOCK = threading.Lock()


def forward_executor() -> ThreadPoolExecutor:
    global _EXECUTOR
    with _EXECUTOR_LOCK:
        if _EXECUTOR is None:
            _EXECUTOR = ThreadPoolExecutor(FORWARD_THREADS, thread_name_prefix="prompthone-forward")
        return _EXECUTOR


async def in_worker_thread(fn: Any, /, **kwargs: Any) -> Any:
    """Call a sync function in a worker thread with a copy of the current context (the run)."""
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(forward_executor(), lambda: ctx.run(fn, **kwargs))
