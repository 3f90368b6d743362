"""`LM`: the one object the rest of prompthone talks to.

It owns the policies that every backend shares: the response cache, retries with backoff, the
bound on requests in flight, and usage accounting. Backends only know how to answer one request.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from prompthone.lm import settings
from prompthone.lm.backend import Backend, PerLoop
from prompthone.lm.cache import ResponseCache, cache_key
from prompthone.lm.errors import LMError
from prompthone.lm.local.catalog import start_format_of
from prompthone.lm.model_string import DEFAULT_MODEL, parse_model_string
from prompthone.lm.slots import RequestSlots
from prompthone.lm.types import Completion, Generation, Message, Request
from prompthone.lm.usage import Usage

T = TypeVar("T")

_CACHES: dict[Path, ResponseCache] = {}
_CACHES_LOCK = threading.Lock()


def open_cache(path: str | Path | None = None) -> ResponseCache:
    """One shared `ResponseCache` per file per process."""
    p = Path(path).expanduser().resolve() if path else settings.response_cache_path().resolve()
    with _CACHES_LOCK:
        if p not in _CACHES:
            _CACHES[p] = ResponseCache(p)
        return _CACHES[p]


def make_backend(model: str, **options: Any) -> Backend:
    """Build the backend a model string names. Options go to that backend's constructor."""
    spec = parse_model_string(model)
    if spec.provider == "local":
        from prompthone.lm.local.backend import LocalBackend

        return LocalBackend(spec.model, **options)
    from prompthone.lm.openai_backend import OpenAIBackend

    return OpenAIBackend(spec.model, base_url=spec.base_url, **options)


class LM:
    """A model you can ask things, async first.

    >>> lm = LM("local/qwen2.5-coder-0.5b")
    >>> lm.complete_sync([{"role": "user", "content": "2+2="}], max_tokens=8).text

    `cache` is True (the default file, see `prompthone.lm.settings`), False, a path, or a
    `ResponseCache`. PROMPTHONE_NO_CACHE=1 turns caching off globally. `max_concurrency` bounds this
    object's requests in flight; `slots` instead shares one bound with other `LM`s (one endpoint, several
    roles). An endpoint that serves one request at a time (`Backend.one_at_a_time`, or a bound of 1) is
    sent related prompts in a row, so that it reuses its KV cache (`prompthone.lm.slots`). `timeout_s`
    bounds each attempt of a call; `role` (task, proposer, teacher, judge) is put on the errors this LM
    raises, so that a run's message can say which of its models failed.

    `gate` (None by default: nothing is checked) is called once before each paid request is sent, once
    it holds its slot, never for an answer from the cache or shared with a twin in flight: a run's budget
    shared by several processes reserves the call there, and refuses it by raising `BudgetExhausted`
    (nothing is sent, nothing is counted). What the call cost reaches `listeners` with its Completion.

    `start_format` is the prompt format (`labels`, `recap`, `tags`, `json`) this model reads best, for the
    modules that leave theirs to the model (`Module(format=None)`); None takes the embedded catalog's entry
    for a model it knows (also a server model served under a catalog name), else the modules' own default.
    """

    def __init__(
        self,
        model: str | Backend = DEFAULT_MODEL,
        *,
        cache: bool | str | Path | ResponseCache = True,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 30.0,
        max_concurrency: int | None = None,
        slots: RequestSlots | None = None,
        role: str | None = None,
        start_format: str | None = None,
        **backend_options: Any,
    ) -> None:
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s!r}")
        self.role = role
        self.backend = model if isinstance(model, Backend) else make_backend(model, **backend_options)
        self.model = self.backend.describe()
        #: the format modules that leave theirs to the model start in on this one (None: their own default);
        #: the program layer, which owns the format names, checks it when a module adopts it
        self.start_format = start_format if start_format is not None else start_format_of(self.backend.model)
        if isinstance(cache, ResponseCache):
            self.cache: ResponseCache | None = cache
        elif cache is True:
            self.cache = open_cache() if settings.cache_enabled() else None
        elif cache:
            self.cache = open_cache(cache) if settings.cache_enabled() else None
        else:
            self.cache = None
        self.timeout_s = float(timeout_s)
        self.max_retries = int(max_retries)
        self.backoff_base_s = float(backoff_base_s)
        self.backoff_max_s = float(backoff_max_s)
        if slots is None:
            size = int(max_concurrency or self.backend.max_concurrency)
            if size < 1:
                raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
            slots = RequestSlots(size, one_at_a_time=self.backend.one_at_a_time)
        elif max_concurrency is not None:
            raise ValueError("give max_concurrency or shared slots, not both")
        self.slots = slots
        self.usage = Usage()
        #: called with every Completion (paid or cached), e.g. by a run store that logs LM calls
        self.listeners: list[Callable[[Completion], None]] = []
        #: run before each paid request is sent; may raise `BudgetExhausted` (see the class docstring)
        self.gate: Callable[[], None] | None = None
        self._inflight: PerLoop[dict[str, asyncio.Future]] = PerLoop(dict)
        self._identity = self.backend.identity()

    def __repr__(self) -> str:
        return f"LM({self.model!r})"

    @property
    def max_concurrency(self) -> int:
        """Requests this LM may have in flight at once (a bound it may share with other LMs)."""
        return self.slots.size

    @property
    def identity(self) -> str:
        """Where this LM's answers come from, without secrets: backend identity plus model."""
        return f"{self._identity}|{self.backend.model}"

    def key_for(self, request: Request) -> str:
        return cache_key(self._identity, self.backend.model, request)

    async def complete(
        self,
        messages: list[Message],
        *,
        temperature: float = 0.0,
        max_tokens: int = 512,
        stop: list[str] | str | None = None,
        top_p: float = 1.0,
        seed: int = 0,
        sample_index: int = 0,
        response_format: dict[str, Any] | None = None,
        cache: bool = True,
    ) -> Completion:
        """Answer a chat, from the cache when this exact call was answered before.

        `sample_index` tells apart several samples of one prompt at temperature > 0: each index is
        its own cache entry and its own sampling seed, so a re-run replays the same samples.
        `response_format` is a JSON schema the reply must follow, where the backend can enforce it.
        """
        request = Request.build(
            messages,
            temperature=temperature,
            max_tokens=max_tokens,
            stop=stop,
            top_p=top_p,
            seed=seed,
            sample_index=sample_index,
            response_format=response_format,
        )
        return await self.complete_request(request, cache=cache)

    async def complete_request(self, request: Request, *, cache: bool = True) -> Completion:
        key = self.key_for(request)
        use_cache = cache and self.cache is not None
        if use_cache:
            t0 = time.perf_counter()
            hit = self.cache.get(key)
            if hit is not None:
                c = Completion(
                    text=hit.text,
                    finish_reason=hit.finish_reason,
                    prompt_tokens=hit.prompt_tokens,
                    completion_tokens=hit.completion_tokens,
                    latency_s=time.perf_counter() - t0,
                    cached=True,
                    model=self.model,
                    cache_key=key,
                )
                self._record(c)
                return c
        inflight = self._inflight.get() if use_cache else None
        if inflight is not None and key in inflight:  # the same call is already being paid for: share its answer
            gen, latency = await asyncio.shield(inflight[key])
            paid = False
        elif inflight is None:  # no cache: nothing to share with concurrent twins either
            paid = True
            gen, latency = await self._send(request)
        else:
            paid = True
            future: asyncio.Future = asyncio.get_running_loop().create_future()
            inflight[key] = future
            try:
                gen, latency = await self._send(request)
                self.cache.put(key, self._identity, self.backend.model, request, gen, latency)
                future.set_result((gen, latency))
            except BaseException as exc:
                future.set_exception(exc)
                future.exception()  # mark retrieved: waiters re-raise it, nobody else needs to
                raise
            finally:
                inflight.pop(key, None)
        c = Completion(
            text=gen.text,
            finish_reason=gen.finish_reason,
            prompt_tokens=gen.prompt_tokens,
            completion_tokens=gen.completion_tokens,
            latency_s=latency,
            cached=not paid,
            model=self.model,
            cache_key=key,
            reused_prompt_tokens=gen.reused_prompt_tokens if paid else None,
        )
        self._record(c)
        return c

    async def _send(self, request: Request) -> tuple[Generation, float]:
        """Pay for one answer: in a slot, past the gate (which may refuse it), with retries; its latency."""
        async with self.slots.hold(request):
            if self.gate is not None:
                self.gate()
            t0 = time.perf_counter()
            gen = await self._generate_with_retries(request)
            return gen, time.perf_counter() - t0

    async def _generate_with_retries(self, request: Request):
        attempt = 0
        while True:
            try:
                return await self.backend.generate(request, timeout_s=self.timeout_s)
            except LMError as exc:
                if not exc.retryable or attempt >= self.max_retries:
                    self.usage.record_error()
                    if exc.role is None:
                        exc.role = self.role
                    if exc.retryable:
                        _say_gave_up(exc, attempt)
                    raise
                delay = self._backoff(attempt, getattr(exc, "retry_after", None))
                attempt += 1
                self.usage.record_retry()
                await asyncio.sleep(delay)

    def _backoff(self, attempt: int, retry_after: float | None) -> float:
        """Full-jitter exponential backoff; a server's Retry-After is a floor, never shortened."""
        ceiling = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = random.uniform(ceiling / 2, ceiling)
        if retry_after is not None:
            delay = max(delay, min(float(retry_after), self.backoff_max_s * 4))
        return delay

    def _record(self, c: Completion) -> None:
        self.usage.record(c)
        for listener in self.listeners:
            listener(c)

    def complete_sync(self, messages: list[Message], **kwargs: Any) -> Completion:
        """The same as `complete`, for code that is not async."""
        return run_sync(self.complete(messages, **kwargs))

    async def aclose(self) -> None:
        await self.backend.aclose()


def _say_gave_up(exc: LMError, retries: int) -> None:
    """End a retryable error's message with the fact that it is final: it was raised after the last retry."""
    tries = "no retries" if retries == 0 else f"{retries} retr{'y' if retries == 1 else 'ies'}"
    exc.args = (f"{str(exc).rstrip()} It failed on every try: gave up after {tries}.", *exc.args[1:])


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when a loop is already running (notebooks)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    result: list[T] = []
    error: list[BaseException] = []

    def worker() -> None:
        try:
            result.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            error.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    t.join()
    if error:
        raise error[0]
    return result[0]
