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
import contextlib
import contextvars
import functools
import itertools
import os
import queue
import threading
from collections.abc import Coroutine, Iterator, Mapping
from concurrent.futures import CancelledError
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar

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
    _pending: set[_LoopCall[Any]] = field(default_factory=set)
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

    # The task runs in a copy of this thread's context with the run set, so the set stays inside it.
    # (A context rather than a wrapper coroutine: a call cancelled before it starts then closes the
    # module's own coroutine, which a user's Ctrl-C would otherwise report as "never awaited".)
    context = contextvars.copy_context()
    context.run(_RUN.set, ctx)
    with ctx._lock:
        if ctx.cancelled:
            coro.close()
            raise ProgramError(f"{what}: the run was cancelled")
        call: _LoopCall[T] = _LoopCall(ctx.loop, coro, context)
        ctx._pending.add(call)
    try:
        call.submit()
        return call.wait()
    finally:
        with ctx._lock:
            ctx._pending.discard(call)


class _LoopCall(Generic[T]):
    """A coroutine run on an event loop for a thread that waits for it.

    What `asyncio.run_coroutine_threadsafe(coro, loop).result()` does, with one lock instead of a
    `concurrent.futures.Future` chained to a task by callbacks in both directions: every module call of
    a sync forward makes this round trip, and the lighter one costs about half the CPU. `cancel()`
    wakes the waiting thread at once with `concurrent.futures.CancelledError`, as cancelling the
    concurrent future did, and cancels the task.
    """

    __slots__ = ("_context", "_coro", "_done", "_loop", "_outcome", "_settle_lock", "_task")

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, T],
        context: contextvars.Context,
    ) -> None:
        self._loop = loop
        self._coro: Coroutine[Any, Any, T] | None = coro
        self._context = context  # the task's own: nothing else enters it
        self._task: asyncio.Task[T] | None = None
        self._outcome: tuple[bool, Any] | None = None  # (ok, result or exception), set once
        self._settle_lock = threading.Lock()
        self._done = threading.Lock()
        self._done.acquire()  # released when there is an outcome

    def submit(self) -> None:
        """Schedule the coroutine on the loop (from any thread)."""
        try:
            self._loop.call_soon_threadsafe(self._start)
        except RuntimeError:  # the loop is closed: the coroutine will never run
            self._close_unstarted()
            raise

    def wait(self) -> T:
        """Block until the coroutine finished (or the call was cancelled); return or raise its outcome."""
        self._done.acquire()
        assert self._outcome is not None
        ok, value = self._outcome
        if ok:
            return value
        raise value

    def cancel(self) -> None:
        """Wake the waiting thread with `CancelledError` and cancel the task if it started."""
        if self._settle(False, CancelledError()):
            task = self._task
            if task is not None:
                if on_event_loop() and asyncio.get_running_loop() is self._loop:
                    task.cancel()
                else:
                    self._loop.call_soon_threadsafe(task.cancel)

    def _start(self) -> None:  # on the loop
        coro, self._coro = self._coro, None
        if coro is None:
            return
        if self._outcome is not None:  # cancelled before it started
            coro.close()
            return
        self._task = self._loop.create_task(coro, context=self._context)
        self._task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[T]) -> None:  # on the loop
        if task.cancelled():
            self._settle(False, CancelledError())
        elif (exc := task.exception()) is not None:
            self._settle(False, exc)
        else:
            self._settle(True, task.result())

    def _settle(self, ok: bool, value: Any) -> bool:
        with self._settle_lock:
            if self._outcome is not None:
                return False
            self._outcome = (ok, value)
        self._done.release()
        return True

    def _close_unstarted(self) -> None:
        coro, self._coro = self._coro, None
        if coro is not None:
            coro.close()


_Work = tuple[asyncio.AbstractEventLoop, "asyncio.Future[Any]", Any]  # loop, future, function


class _ForwardThreads:
    """The threads sync `forward` methods run in: a queue of work, and up to `max_threads` threads,
    started as they are needed (an idle one is reused first) and kept.

    What `loop.run_in_executor(ThreadPoolExecutor(...), fn)` does, with the result handed back by one
    `call_soon_threadsafe` instead of a `concurrent.futures.Future` wrapped in an asyncio one: each sync
    run crosses threads twice this way, and the lighter hop costs about half the CPU. As with an
    executor, work whose future was cancelled before a thread took it never starts. The threads are
    daemons, so a forward stuck on a loop that is gone cannot keep the interpreter from exiting.
    """

    def __init__(self, max_threads: int) -> None:
        self.max_threads = max_threads
        self._reset()

    def _reset(self) -> None:
        """Start empty; also in a forked child, where the parent's threads do not exist."""
        self._queue: queue.SimpleQueue[_Work] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0

    def submit(self, loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], fn: Any) -> None:
        with self._lock:
            if self._idle:
                self._idle -= 1
                start = False
            else:
                start = self._threads < self.max_threads
                if start:
                    self._threads += 1
                    name = f"prompthone-forward_{self._threads - 1}"
        self._queue.put((loop, future, fn))
        if start:
            threading.Thread(target=self._work, name=name, daemon=True).start()

    def _work(self) -> None:
        while True:
            loop, future, fn = self._queue.get()
            if not future.cancelled():  # cancelled while queued: it never starts
                try:
                    value = fn()
                except BaseException as exc:  # handed to the awaiting task, as an executor would
                    _post(loop, _set_exception, future, exc)
                else:
                    _post(loop, _set_result, future, value)
            loop = future = fn = value = None  # hold nothing while idle
            with self._lock:
                self._idle += 1


def _post(loop: asyncio.AbstractEventLoop, setter: Any, future: asyncio.Future[Any], value: Any) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits for this result any more
        loop.call_soon_threadsafe(setter, future, value)


def _set_result(future: asyncio.Future[Any], value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        if isinstance(exc, StopIteration):  # a Future refuses it; it would leave the run waiting forever
            exc = RuntimeError(f"forward raised {exc!r}")
        future.set_exception(exc)


_FORWARD_THREADS = _ForwardThreads(FORWARD_THREADS)
os.register_at_fork(after_in_child=_FORWARD_THREADS._reset)


async def in_worker_thread(fn: Any, /, **kwargs: Any) -> Any:
    """Call a sync function in a worker thread with a copy of the current context (the run)."""
    ctx = contextvars.copy_context()
    loop = asyncio.get_running_loop()
    future = loop.create_future()
    _FORWARD_THREADS.submit(loop, future, functools.partial(ctx.run, fn, **kwargs))
    return await future
