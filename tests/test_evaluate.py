"""The evaluator with a scripted LM: outcomes kept apart, score cache, concurrency, error policy."""

from __future__ import annotations

import asyncio
import re

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import EvaluationError, Evaluator, ScoreCache, mean_ci
from prompthone.lm import LM, ServerError
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import ExactMatch
from prompthone.program import Candidate, Predict, Program, PromptParams


class QA(Program):
    def __init__(self) -> None:
        self.answer = Predict("question -> answer", instruction="Answer the question.")

    def forward(self, question: str) -> dict:
        return {"answer": self.answer(question=question).answer}


def examples(n: int) -> list[Example]:
    return [Example(id=f"q{i}", inputs={"question": f"what is {i}?"}, labels={"answer": str(i)}) for i in range(n)]


def question_number(req) -> int:
    return int(re.findall(r"what is (\d+)\?", req.messages[-1][1])[-1])


def oracle(req):
    """Right for even numbers, wrong for odd ones, unreadable for multiples of 5 above 0."""
    n = question_number(req)
    if n % 5 == 0 and n > 0:
        return ""
    return f"Answer: {n if n % 2 == 0 else n + 1}"


def test_outcomes_are_kept_apart_and_the_mean_counts_parse_failures_as_zero():
    lm = LM(ScriptedBackend(oracle), cache=False)
    result = Evaluator(QA(), ExactMatch(), lm).evaluate_sync(None, examples(10))
    by = result.by_id()
    assert by["q2"].status == "scored" and by["q2"].score == 1.0
    assert by["q3"].status == "scored" and by["q3"].score == 0.0
    assert by["q5"].status == "parse_failure" and by["q5"].raw == ""
    assert result.n_parse_failures == 1 and result.n_errors == 0
    # 0,2,4,6,8 right; 5 is a parse failure counted as 0 in the mean
    assert result.mean == pytest.approx(5 / 10)
    lo, hi = result.ci95
    assert lo < 0.5 < hi


def test_errors_are_never_scored_and_fail_loudly_past_the_limit():
    def flaky(req):
        return ServerError("server down") if question_number(req) in (1, 2) else oracle(req)

    lm = LM(ScriptedBackend(flaky), cache=False, max_retries=1, backoff_base_s=0.001)
    with pytest.raises(EvaluationError, match="2 of 6 examples failed") as exc:
        Evaluator(QA(), ExactMatch(), lm).evaluate_sync(None, examples(6))
    partial = exc.value.result
    assert {r.example_id for r in partial.records if r.status == "error"} == {"q1", "q2"}
    assert all(r.score is None for r in partial.records if r.status == "error")

    tolerant = Evaluator(QA(), ExactMatch(), lm, max_errors=2).evaluate_sync(None, examples(6))
    assert tolerant.n_errors == 2 and len(tolerant.scores) == 4  # errors left out of the mean


def test_score_cache_serves_repeats_and_never_keeps_errors(tmp_path):
    backend = ScriptedBackend(oracle)
    lm = LM(backend, cache=False)
    cache = ScoreCache(tmp_path / "scores.sqlite")
    ev = Evaluator(QA(), ExactMatch(), lm, score_cache=cache)
    first = ev.evaluate_sync(None, examples(8))
    n_requests = len(backend.requests)
    second = ev.evaluate_sync(None, examples(8))
    assert len(backend.requests) == n_requests
    assert [r.score for r in second.records] == [r.score for r in first.records]
    assert all(r.cached for r in second.records)
    # a new process reading the same file
    ev2 = Evaluator(QA(), ExactMatch(), lm, score_cache=ScoreCache(tmp_path / "scores.sqlite"))
    ev2.evaluate_sync(None, examples(8))
    assert len(backend.requests) == n_requests
    # another candidate is another key
    other = Candidate.default(QA()).with_module("answer", PromptParams("Reply with the number."))
    ev.evaluate_sync(other, examples(8))
    assert len(backend.requests) == 2 * n_requests


async def test_bounded_concurrency_and_order():
    in_flight = 0
    peak = 0

    class Probe(ScriptedBackend):
        async def generate(self, request, *, timeout_s):
            nonlocal in_flight, peak
            in_flight += 1
            peak = max(peak, in_flight)
            await asyncio.sleep(0.01)
            in_flight -= 1
            return await super().generate(request, timeout_s=timeout_s)

    lm = LM(Probe(oracle), cache=False, max_concurrency=64)
    ev = Evaluator(QA(), ExactMatch(), lm, concurrency=7)
    result = await ev.evaluate(None, examples(40))
    assert peak == 7
    assert [r.example_id for r in result.records] == [f"q{i}" for i in range(40)]


def test_a_label_the_data_lacks_is_a_setup_error_not_a_score():
    lm = LM(ScriptedBackend(oracle), cache=False)
    bad = [Example(id="x", inputs={"question": "what is 1?"}, labels={"label": "1"})]
    with pytest.raises(LookupError, match="label"):
        Evaluator(QA(), ExactMatch(), lm).evaluate_sync(None, bad)


def test_confidence_intervals():
    m, lo, hi = mean_ci([1.0] * 10)
    assert m == 1.0 and hi == pytest.approx(1.0) and 0.6 < lo < 0.8  # Wilson does not collapse at n/n
    m, lo, hi = mean_ci([0.5, 0.7, 0.6, 0.4])
    assert lo < m < hi and m == pytest.approx(0.55)
    assert mean_ci([1.0] * 100)[1] > mean_ci([1.0] * 10)[1]


@pytest.mark.parametrize("max_errors", [0, 100])
def test_a_permanent_lm_error_stops_the_evaluation_at_once_whatever_the_tolerance(max_errors):
    """A refused key fails every example alike: it is raised as itself, not counted as an example's error."""
    from prompthone.lm import AuthenticationError

    backend = ScriptedBackend(lambda req: AuthenticationError("refused the API key"), max_concurrency=1)
    lm = LM(backend, cache=False)
    with pytest.raises(AuthenticationError, match="refused the API key"):
        Evaluator(QA(), ExactMatch(), lm, concurrency=2, max_errors=max_errors).evaluate_sync(None, examples(20))
    assert len(backend.requests) <= 2  # the examples in flight, not all twenty


def test_a_per_example_bad_request_is_still_an_example_error():
    from prompthone.lm import ContextTooLongError

    def long_ones(req):
        return ContextTooLongError("too long") if question_number(req) == 3 else oracle(req)

    lm = LM(ScriptedBackend(long_ones), cache=False)
    result = Evaluator(QA(), ExactMatch(), lm, max_errors=1).evaluate_sync(None, examples(6))
    assert result.n_errors == 1 and result.by_id()["q3"].status == "error"


@pytest.mark.parametrize("cache", [False, True])
def test_twin_evaluations_in_flight_at_once_score_each_example_once(cache):
    """Two trials scoring the same candidate at the same moment (MIPRO keeps several in flight) make the
    calls of one: the second waits for the score being computed, as it would read the score cache a
    moment later, so a run's call count does not depend on how its trials happen to overlap."""
    backend = ScriptedBackend(oracle, delay_s=0.02)
    lm = LM(backend, cache=cache)
    evaluator = Evaluator(QA(), ExactMatch(), lm, concurrency=4)

    async def both():
        return await asyncio.gather(evaluator.evaluate(None, examples(8)), evaluator.evaluate(None, examples(8)))

    first, second = asyncio.run(both())
    assert len(backend.requests) == 8
    assert lm.usage.as_dict()["cache_hits"] == 0
    assert [r.score for r in first.records] == [r.score for r in second.records]
    assert sum(r.cached for r in first.records + second.records) == 8


def test_a_twin_stopped_midway_leaves_the_example_to_the_one_waiting():
    """If the evaluation computing a score is cancelled, the one waiting for it scores the example itself
    rather than failing or returning nothing."""
    backend = ScriptedBackend(oracle, delay_s=0.05)
    lm = LM(backend, cache=False)
    evaluator = Evaluator(QA(), ExactMatch(), lm, concurrency=1)

    async def run():
        owner = asyncio.create_task(evaluator.evaluate(None, examples(1)))
        await asyncio.sleep(0.01)  # the owner's call is in flight
        waiter = asyncio.create_task(evaluator.evaluate(None, examples(1)))
        await asyncio.sleep(0.01)
        owner.cancel()
        return await waiter

    result = asyncio.run(run())
    assert result.records[0].status == "scored" and result.records[0].score == 1.0
    assert len(backend.requests) == 2


def test_trace_replays_a_cached_score_through_the_response_cache():
    """A score from the score cache keeps no trace; `trace` gives the module calls behind it again, answered
    by the response cache, so a method reading them (GRAD-SUM) pays nothing twice."""
    backend = ScriptedBackend(oracle)
    lm = LM(backend, cache=True)
    evaluator = Evaluator(QA(), ExactMatch(), lm)
    evaluator.evaluate_sync(None, examples(3))
    again = evaluator.evaluate_sync(None, examples(3))
    assert all(r.cached for r in again.records) and again.traces == {}
    trace = asyncio.run(evaluator.trace(None, examples(3)[2]))
    assert len(backend.requests) == 3
    assert [c.module for c in trace] == ["answer"] and trace[0].cached
    assert trace[0].outputs["answer"] == "2"
