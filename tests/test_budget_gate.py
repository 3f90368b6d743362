"""A budget enforced per paid call (`LM.gate`): the gate runs before every paid request and never for a cached
answer; a refusal (`BudgetExhausted`) inside a program run is a stop, never an example's error, in every
registered method."""

from __future__ import annotations

import asyncio

import pytest

from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM, BudgetExhausted, budget_stop_in
from prompthone.lm.scripted import ScriptedBackend
from prompthone.lm.types import Request
from prompthone.metrics import ExactMatch, JudgeMetric
from prompthone.optimize.proposers.calls import propose_samples
from prompthone.optimize.registry import OPTIMIZERS, make_optimizer
from prompthone.program import Predict, Program
from test_mipro_world import GOOD, Parity, make_setup, parity_examples, proposer_answer


class Gate:
    """Refuses every paid call after the first `n` (shared by every LM it is set on)."""

    def __init__(self, n: int) -> None:
        self.n, self.calls, self.refused = n, 0, 0

    def __call__(self) -> None:
        if self.calls >= self.n:
            self.refused += 1
            raise BudgetExhausted("lm_calls", f"budget reached: {self.calls} of {self.n} paid LM calls")
        self.calls += 1


def echo(req: Request) -> str:
    return f"Answer: {req.messages[-1][1][-12:]}"


# -- the class itself ------------------------------------------------------------------------------------
def test_budget_exhausted_is_one_class_on_the_lm_floor_exported_where_it_was():
    from prompthone.lm.errors import BudgetExhausted as on_lm_floor
    from prompthone.optimize import BudgetExhausted as from_optimize
    from prompthone.optimize.budget import BudgetExhausted as from_budget

    assert on_lm_floor is from_optimize is from_budget is BudgetExhausted
    stop = BudgetExhausted("tokens", "budget reached")
    try:
        try:
            raise stop
        except BudgetExhausted as exc:
            raise RuntimeError("a user's program wrapped it") from exc
    except RuntimeError as wrapped:
        assert budget_stop_in(wrapped) is stop
    assert budget_stop_in(RuntimeError("x")) is None and budget_stop_in(None) is None


# -- the gate on LM ----------------------------------------------------------------------------------------
async def test_the_gate_runs_before_each_paid_request_and_never_for_a_cache_hit_or_a_twin(tmp_path):
    backend = ScriptedBackend(echo, delay_s=0.05)
    lm = LM(backend, cache=tmp_path / "r.sqlite")
    seen: list[int] = []
    lm.gate = lambda: seen.append(len(backend.requests))  # how many requests were sent when it ran
    ask = [{"role": "user", "content": "one"}]
    twins = await asyncio.gather(lm.complete(ask), lm.complete(ask))  # one paid, one shares its answer
    again = await lm.complete(ask)  # from the cache
    other = await lm.complete([{"role": "user", "content": "two"}], cache=False)  # paid, not cached
    assert seen == [0, 1]  # once per paid call, each before its request was sent
    assert [c.cached for c in (*twins, again, other)] == [False, True, True, False]
    assert lm.usage.paid_calls == 2


async def test_a_refusing_gate_sends_nothing_and_its_twin_gets_the_same_stop(tmp_path):
    backend = ScriptedBackend(echo)
    lm = LM(backend, cache=tmp_path / "r.sqlite")
    lm.gate = Gate(0)
    ask = [{"role": "user", "content": "one"}]
    results = await asyncio.gather(lm.complete(ask), lm.complete(ask), return_exceptions=True)
    assert all(isinstance(r, BudgetExhausted) and r.limit == "lm_calls" for r in results)
    assert backend.requests == [] and lm.usage.paid_calls == 0 and lm.usage.errors == 0
    lm.gate = None  # nothing was cached or left in flight: the call is made once allowed
    assert (await lm.complete(ask)).cached is False and len(backend.requests) == 1


async def test_without_a_gate_nothing_changes():
    lm = LM(ScriptedBackend(echo), cache=False)
    assert lm.gate is None
    assert (await lm.complete([{"role": "user", "content": "x"}])).text.startswith("Answer:")


# -- the evaluator: a stop, never an example's error ------------------------------------------------------
class Swallowing(Program):
    """A user's program that wraps whatever its module raises."""

    def __init__(self) -> None:
        self.classify = Predict("question -> answer")

    def forward(self, question: str) -> dict:
        try:
            return {"answer": self.classify(question=question).answer}
        except Exception as exc:
            raise RuntimeError("my program failed") from exc


@pytest.mark.parametrize("program", [Parity, Swallowing], ids=["plain", "wrapped"])
async def test_the_evaluator_re_raises_a_refused_call_whatever_max_errors(program):
    lm = LM(ScriptedBackend(echo), cache=False)
    lm.gate = Gate(3)
    ev = Evaluator(program(), ExactMatch(), lm, max_errors=1000, concurrency=1, score_cache=ScoreCache())
    with pytest.raises(BudgetExhausted):
        await ev.evaluate(None, parity_examples(10))
    assert lm.usage.paid_calls == 3 and ev.score_cache.get("x") is None


async def test_calls_in_flight_when_the_budget_refuses_one_are_answered_not_cancelled():
    """They were reserved and sent: cancelling them would throw away answers already paid for."""
    backend = ScriptedBackend(echo, delay_s=0.02)
    lm = LM(backend, cache=False)
    lm.gate = Gate(6)
    ev = Evaluator(Parity(), ExactMatch(), lm, concurrency=4, score_cache=ScoreCache())
    with pytest.raises(BudgetExhausted):
        await ev.evaluate(None, parity_examples(20))
    assert lm.usage.paid_calls == len(backend.requests) == 6


async def test_a_judge_refused_by_the_budget_stops_the_evaluation_it_is_no_judge_error():
    task = LM(ScriptedBackend(echo), cache=False)
    judge = LM(ScriptedBackend(lambda req: "Score: 5"), cache=False)
    judge.gate = Gate(2)
    metric = JudgeMetric(judge, task_description="parity", criteria="right")
    ev = Evaluator(Parity(), metric, task, max_errors=1000, concurrency=1)
    with pytest.raises(BudgetExhausted):
        await ev.evaluate(None, parity_examples(5))


async def test_a_sample_refused_by_the_budget_stops_the_samples_it_is_no_failed_sample():
    setup, _, pb = make_setup()
    setup.proposer_lm.gate = Gate(2)
    with pytest.raises(BudgetExhausted):
        await propose_samples(setup, "Write a new instruction", n=3, first_index=0, purpose="opro_instruction",
                              temperature=0.7, max_tokens=16)  # fmt: skip
    assert len(pb.requests) == 2


# -- every registered method stops cleanly -----------------------------------------------------------------
def any_proposer(req: Request) -> str:
    """The parity world's proposer, also answering OPRO's meta-prompt and GRAD-SUM's steps."""
    reply = proposer_answer(req)
    if reply != "?":
        return reply
    return f"<INS>{GOOD}</INS> <instruction>{GOOD} (v{req.sample_index})</instruction> Be careful."


#: the registered methods (a test module may register its own, as an object: those are left out)
METHODS = [name for name, entry in OPTIMIZERS.items() if isinstance(entry, str)]
SETTINGS = {
    "mipro": {"minibatch_size": 8, "num_trials": 6, "num_candidates": 3, "parallel_trials": 2},
    "mipro-0shot": {"minibatch_size": 8, "num_trials": 6, "num_candidates": 3},
    "bayesian-bootstrap": {"minibatch_size": 8, "num_trials": 6, "num_candidates": 3},
    "mipro++": {"minibatch_size": 8, "num_trials": 6, "num_candidates": 3},
    "opro": {"steps": 3, "candidates_per_step": 3},
    "gradsum": {"iterations": 2, "minibatch_size": 8},
    "gradsum-nosum": {"iterations": 2, "minibatch_size": 8},
}


def gated_run(name: str, n: int | None, monkeypatch, tmp_path):
    """Run method `name` on the parity world with every LM behind one gate of `n` calls (None: no gate).
    Returns the result, the events, every example record any evaluation made, and the gate."""
    records: list = []
    real = Evaluator.evaluate

    async def evaluate(self, candidate, examples, **kw):
        result = await real(self, candidate, examples, **kw)
        records.extend(result.records)
        return result

    monkeypatch.setattr(Evaluator, "evaluate", evaluate)
    events: list = []
    setup, _, _ = make_setup(n_train=12, n_val=16, proposer=any_proposer, events=events, separate_teacher=True,
                             delay_s=0.001, concurrency=6, task_max_concurrency=4)  # fmt: skip
    gate = Gate(10**9 if n is None else n)
    lms = {id(lm): lm for lm in (setup.task_lm, setup.proposer_lm, setup.teacher_lm)}.values()
    for lm in lms:
        lm.gate = gate
    settings = dict(SETTINGS.get(name, {}))
    if "mipro" in name or "bayes" in name:
        settings["storage"] = str(tmp_path / f"{name}-{n}.sqlite")

    async def search_then_more():
        result = await make_optimizer(name, **settings).optimize(setup)
        # every call the gate let through was answered and counted by the time the method returned
        assert sum(lm.usage.paid_calls for lm in lms) == gate.calls
        gate.n = 10**9  # the search is over: calls are no longer refused (as a shared budget's end())
        await asyncio.sleep(0.05)
        assert gate.calls == sum(lm.usage.paid_calls for lm in lms)  # and nothing of the search goes on calling
        return result

    result = asyncio.run(search_then_more())
    monkeypatch.setattr(Evaluator, "evaluate", real)
    return result, events, records, gate


@pytest.mark.parametrize("name", METHODS)
def test_every_method_stops_on_a_refused_call_with_stopped_by_set_and_no_example_error(name, monkeypatch, tmp_path):
    full, _, _, ungated = gated_run(name, None, monkeypatch, tmp_path)
    assert full.stopped_by in ("completed", "early_stop")
    total = ungated.calls
    assert total > 4
    for n in sorted({*range(0, total, max(1, total // 10)), total - 1}):  # stops in every phase
        result, events, records, gate = gated_run(name, n, monkeypatch, tmp_path)
        assert result.stopped_by == "lm_calls", (n, total)
        assert gate.calls == n and gate.refused >= 1, (n, total)
        assert [r for r in records if r.status == "error"] == [], (n, total)
        kinds = [k for k, _ in events]
        assert "trial_failed" not in kinds and "full_eval_failed" not in kinds, (n, total)
        assert all(d.get("errors", 0) == 0 for k, d in events if k == "bootstrap"), (n, total)
        assert all(d.get("failed", 0) == 0 for k, d in events if k == "step"), (n, total)
        assert ("budget", {"limit": "lm_calls", "message": f"budget reached: {n} of {n} paid LM calls"}) in events
