"""The fast paths behind the evaluator-throughput work (issue 3) give the same answers as the slow ones.

Each shortcut taken for speed (score keys built from pieces, the forward-input check without
`Signature.bind`, the ASCII label key, the worker pool, the light thread hops, the OpenAI backend's raw
HTTP response) is checked here against the behaviour it replaced.
"""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import inspect
import random
import threading
from concurrent.futures import CancelledError

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM, ServerError
from prompthone.lm.openai_backend import OpenAIBackend
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import ExactMatch
from prompthone.program import Candidate, Predict, Program, PromptParams, run_program
from prompthone.program.context import _ForwardThreads, _LoopCall, in_worker_thread
from prompthone.program.run import _check_forward_inputs
from prompthone.program.values import label_key
from prompthone.testing import FakeOpenAIServer, Fault
from prompthone.testing.replies import without_reminder, write_reply


def question_of(request) -> str:
    return without_reminder(request.messages[-1][1])


def answer_with_number(request) -> str:
    """The number the question ends with, in the reply format the prompt asks for."""
    return write_reply(request.messages[0][1], {"answer": question_of(request).split()[-1].rstrip("?")})


def examples(n: int) -> list[Example]:
    return [Example(id=f"q{i}", inputs={"question": f"what is {i}?"}, labels={"answer": str(i)}) for i in range(n)]


class SyncQA(Program):
    def __init__(self) -> None:
        self.answer = Predict("question -> answer")

    def forward(self, question: str):
        return self.answer(question=question)


# -- score keys ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [{}, {"temperature": 0.5, "max_tokens": 9, "stop": ("a", "é")}, {"seed": 3, "sample_index": 2}],
)
def test_score_keys_built_from_pieces_equal_score_key(options: dict) -> None:
    lm = LM(ScriptedBackend(answer_with_number), cache=False)
    ev = Evaluator(Predict("question -> answer"), ExactMatch(), lm, **options)
    default = Candidate.default(ev.program)
    other = default.with_module("predict", PromptParams("Reply with a number, «exactly»."))
    odd = [
        Example(id="é1", inputs={"question": "ü?", "n": [1, 2.5, None, {"b": 1, "a": True}]}, labels={"answer": ["x"]}),
        Example(id="2", inputs={}, labels={"when": datetime.date(2020, 1, 1)}),  # not JSON: str()'d
        *examples(3),
    ]
    for candidate in (default, other):
        key_of = ev._keyer(candidate)
        for ex in odd:
            assert key_of(ex) == ev._key(candidate, ex)


# -- forward input check -------------------------------------------------------------------------


class _Shapes:
    def plain(self, question, context="none"): ...
    def kwonly(self, *, question, hint=None): ...
    def var_kw(self, question, **rest): ...
    def var_pos(self, *args, question): ...
    def pos_only(self, question, /, context=None): ...
    def nothing(self): ...


@pytest.mark.parametrize("method", ["plain", "kwonly", "var_kw", "var_pos", "pos_only", "nothing"])
def test_forward_input_check_accepts_and_rejects_what_bind_does(method: str) -> None:
    shapes = _Shapes()
    program = Program()
    program.forward = getattr(shapes, method)  # an instance attribute is looked up like a method
    bound = getattr(shapes, method)
    for inputs in ({}, {"question": 1}, {"question": 1, "context": 2}, {"hint": 1}, {"other": 1}):
        try:
            inspect.signature(bound).bind(**inputs)
            expected = None
        except TypeError:
            expected = TypeError
        for _ in range(2):  # the second time from the cached shape
            if expected is None:
                _check_forward_inputs(program, inputs)
            else:
                with pytest.raises(TypeError, match="cannot take inputs"):
                    _check_forward_inputs(program, inputs)


def test_forward_input_check_follows_a_replaced_method() -> None:
    class A(Program):
        def forward(self, question): ...

    _check_forward_inputs(A(), {"question": 1})

    def forward(self, query): ...

    A.forward = forward
    with pytest.raises(TypeError, match="cannot take inputs"):
        _check_forward_inputs(A(), {"question": 1})
    _check_forward_inputs(A(), {"query": 1})


# -- label keys ----------------------------------------------------------------------------------


def test_label_key_fast_path_matches_the_general_rule() -> None:
    def slow(text: str) -> str:
        return "".join(ch for ch in text.lower() if ch.isalnum())

    rng = random.Random(0)
    alphabet = [chr(i) for i in range(128)] + list("éÉßİ١٢Ⅻ_ ：")
    for _ in range(20_000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12)))
        assert label_key(text) == slow(text)
    for c in range(0x80):
        assert label_key(chr(c)) == slow(chr(c))


# -- evaluator workers ---------------------------------------------------------------------------


async def test_a_setup_error_stops_the_other_examples() -> None:
    backend = ScriptedBackend(answer_with_number, delay_s=0.05)
    lm = LM(backend, cache=False)
    data = examples(40)
    data[3] = Example(id="bad", inputs={"question": "what is 3?"}, labels={"label": "3"})  # no "answer" label
    with pytest.raises(LookupError, match="label"):
        await Evaluator(Predict("question -> answer"), ExactMatch(), lm, concurrency=4).evaluate(None, data)
    sent = len(backend.requests)
    await asyncio.sleep(0.3)
    assert len(backend.requests) == sent < 40  # nothing left running in the background


async def test_examples_do_not_share_context_variables() -> None:
    seen: list[object] = []
    marker: contextvars.ContextVar[object] = contextvars.ContextVar("marker", default=None)

    class Leaky(Program):
        def __init__(self) -> None:
            self.answer = Predict("question -> answer")

        async def forward(self, question: str):
            seen.append(marker.get())
            marker.set(question)  # never reset: must not reach the next example
            return await self.answer.acall(question=question)

    lm = LM(ScriptedBackend(answer_with_number), cache=False)
    result = await Evaluator(Leaky(), ExactMatch(), lm, concurrency=2).evaluate(None, examples(10))
    assert result.mean == 1.0
    assert seen == [None] * 10


async def test_evaluation_order_counts_and_score_cache_with_sync_forward() -> None:
    lm = LM(ScriptedBackend(answer_with_number, delay_s=0.01), cache=False)
    cache = ScoreCache()
    ev = Evaluator(SyncQA(), ExactMatch(), lm, concurrency=16, score_cache=cache)
    first = await ev.evaluate(None, examples(100))
    assert [r.example_id for r in first.records] == [f"q{i}" for i in range(100)]
    assert first.mean == 1.0 and len(first.traces) == 100
    again = await ev.evaluate(None, examples(100))
    assert all(r.cached for r in again.records) and again.mean == 1.0
    empty = await ev.evaluate(None, [])
    assert empty.n == 0


async def test_errors_in_sync_forwards_are_returned_per_example() -> None:
    def flaky(request):
        return ServerError("down") if question_of(request).endswith("3?") else answer_with_number(request)

    lm = LM(ScriptedBackend(flaky), cache=False, max_retries=0)
    result = await Evaluator(SyncQA(), ExactMatch(), lm, max_errors=1).evaluate(None, examples(6))
    assert [r.status for r in result.records] == ["scored"] * 3 + ["error"] + ["scored"] * 2
    assert "ServerError" in (result.records[3].error or "")


# -- thread hops ---------------------------------------------------------------------------------


async def test_worker_threads_return_results_and_raise_errors() -> None:
    assert await in_worker_thread(lambda x: x * 2, x=21) == 42
    with pytest.raises(ValueError, match="boom"):
        await in_worker_thread(lambda: (_ for _ in ()).throw(ValueError("boom")))

    def stop() -> None:
        raise StopIteration  # a Future refuses StopIteration; it must not leave the caller hanging

    with pytest.raises(RuntimeError, match="StopIteration"):
        await asyncio.wait_for(in_worker_thread(stop), timeout=5)


async def test_worker_threads_are_reused_and_bounded() -> None:
    pool = _ForwardThreads(3)
    loop = asyncio.get_running_loop()
    gate = threading.Event()
    names: set[str] = set()

    def work() -> str:
        gate.wait(5)
        names.add(threading.current_thread().name)
        return "ok"

    futures = [loop.create_future() for _ in range(8)]
    for f in futures:
        pool.submit(loop, f, work)
    await asyncio.sleep(0.05)
    gate.set()
    assert await asyncio.gather(*futures) == ["ok"] * 8
    assert pool._threads == 3 and len(names) == 3  # eight jobs, three threads
    more = [loop.create_future() for _ in range(3)]
    for f in more:
        pool.submit(loop, f, work)
    await asyncio.gather(*more)
    assert pool._threads == 3  # idle threads were reused, none added


async def test_work_cancelled_before_it_starts_never_runs() -> None:
    pool = _ForwardThreads(1)
    loop = asyncio.get_running_loop()
    release = threading.Event()
    ran: list[str] = []
    first, second = loop.create_future(), loop.create_future()
    pool.submit(loop, first, lambda: release.wait(5) and ran.append("first"))
    pool.submit(loop, second, lambda: ran.append("second"))
    second.cancel()
    release.set()
    await first
    await asyncio.sleep(0.05)
    assert ran == ["first"]


def test_a_loop_call_that_never_starts_closes_the_coroutine_it_was_given() -> None:
    """A sync forward's module call cancelled before the loop started it (a Ctrl-C, a killed run), or
    submitted to a closed loop, closes the module's own coroutine: nothing is left "never awaited"."""

    async def module_call() -> int:
        return 1

    loop = asyncio.new_event_loop()
    try:
        coro = module_call()
        call = _LoopCall(loop, coro, contextvars.copy_context())
        call.submit()
        call.cancel()  # before the loop ran its start
        loop.run_until_complete(asyncio.sleep(0))
        assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
        with pytest.raises(CancelledError):
            call.wait()
    finally:
        loop.close()
    coro = module_call()
    with pytest.raises(RuntimeError):
        _LoopCall(loop, coro, contextvars.copy_context()).submit()
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED


def test_a_loop_call_runs_in_the_context_it_was_given() -> None:
    mark: contextvars.ContextVar[str] = contextvars.ContextVar("mark", default="none")

    async def read_mark() -> str:
        return mark.get()

    context = contextvars.copy_context()
    context.run(mark.set, "given")
    loop = asyncio.new_event_loop()
    try:
        call = _LoopCall(loop, read_mark(), context)
        call.submit()
        loop.run_until_complete(asyncio.sleep(0.01))
        assert call.wait() == "given" and mark.get() == "none"
    finally:
        loop.close()


async def test_fifty_sync_runs_in_flight_at_once() -> None:
    lm = LM(ScriptedBackend(answer_with_number, delay_s=0.2), cache=False)
    program = SyncQA()
    t0 = asyncio.get_running_loop().time()
    runs = await asyncio.gather(*(run_program(program, {"question": f"what is {i}?"}, lm=lm) for i in range(50)))
    assert all(r.ok for r in runs)
    assert [r.outputs["answer"] for r in runs] == [str(i) for i in range(50)]
    assert asyncio.get_running_loop().time() - t0 < 5.0  # in parallel, not 50 x 0.2 s


# -- OpenAI backend: the body is read by prompthone, not by the SDK's models ---------------------


@pytest.fixture
def server():
    srv = FakeOpenAIServer()
    with srv:
        yield srv


def _lm(server: FakeOpenAIServer) -> LM:
    return LM(OpenAIBackend("fake", base_url=server.base_url), cache=False, max_retries=0, timeout_s=5.0)


@pytest.mark.parametrize(
    ("body", "text", "finish", "tokens"),
    [
        # content filtered: no content, an empty answer
        (b'{"choices":[{"message":{"content":null},"finish_reason":"content_filter"}]}', "", "other", (0, 0)),
        # no usage block, an unknown finish reason
        (b'{"choices":[{"message":{"content":"hi"},"finish_reason":"eos"}]}', "hi", "stop", (0, 0)),
        (
            b'{"choices":[{"message":{"content":"x"},"finish_reason":"length"}],"usage":{"prompt_tokens":3}}',
            "x",
            "length",
            (3, 0),
        ),
        (
            b'{"choices":[{"message":{"content":"x"},"finish_reason":7}],"usage":{"prompt_tokens":"3"}}',
            "x",
            "other",
            (0, 0),
        ),
    ],
)
async def test_lenient_completions_are_read(server, body: bytes, text: str, finish: str, tokens: tuple) -> None:
    server.inject(Fault.malformed(body), times=1)
    lm = _lm(server)
    c = await lm.complete([{"role": "user", "content": "hi"}])
    await lm.aclose()
    assert (c.text, c.finish_reason, (c.prompt_tokens, c.completion_tokens)) == (text, finish, tokens)


@pytest.mark.parametrize(
    "body", [b"[1, 2]", b'"just a string"', b'{"choices": ["no message"]}', b'{"choices": [{"message": "x"}]}']
)
async def test_json_that_is_not_a_completion_is_malformed(server, body: bytes) -> None:
    server.inject(Fault.malformed(body), times=None)
    lm = _lm(server)
    with pytest.raises(ServerError, match="malformed") as info:
        await lm.complete([{"role": "user", "content": "hi"}])
    await lm.aclose()
    assert info.value.status == 200


def test_a_forked_child_starts_its_own_forward_threads() -> None:
    import multiprocessing

    from prompthone.program.context import _FORWARD_THREADS

    async def sync_run() -> str:
        lm = LM(ScriptedBackend(answer_with_number), cache=False)
        result = await run_program(SyncQA(), {"question": "what is 7?"}, lm=lm)
        return result.outputs["answer"]

    assert asyncio.run(sync_run()) == "7"  # the parent has forward threads now
    assert _FORWARD_THREADS._threads >= 1
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(1) as pool:
        assert pool.apply_async(_child_sync_run).get(timeout=30) == "7"


def _child_sync_run() -> str:
    async def sync_run() -> str:
        lm = LM(ScriptedBackend(answer_with_number), cache=False)
        result = await run_program(SyncQA(), {"question": "what is 7?"}, lm=lm)
        return result.outputs["answer"]

    return asyncio.run(sync_run())
