"""GRAD-SUM end to end on the real embedded model, on a tiny budget (about a minute on an idle machine).

The 0.5B model plays task model and proposer at once, so nothing asserted here depends on how good its
prompts are: only that the whole loop runs on real replies (failures found, gradients, a summary, an
edit, the beam scored on validation), that every role is counted, and that a re-run with the same seed
replays every call from the response cache. The judge is checked on its own: the 0.5B model is too weak
to judge well (it passed every wrong answer in a trial run), but its replies must be read.
"""

from __future__ import annotations

import dataclasses

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.metrics import ExactMatch, JudgeMetric
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.optimize.gradsum import GradSum
from prompthone.program import Predict

pytestmark = pytest.mark.model

MODEL = "local/qwen2.5-coder-0.5b"
CAPITALS = [("France", "Paris"), ("Japan", "Tokyo"), ("Italy", "Rome"), ("Egypt", "Cairo"), ("Kenya", "Nairobi")]


def capital_examples() -> list[Example]:
    return [Example(id=f"cap-{c}", inputs={"country": c}, labels={"answer": city}) for c, city in CAPITALS]


def make_setup(cache_path) -> tuple[OptimizationSetup, dict[str, LM]]:
    lms = {role: LM(MODEL, cache=cache_path) for role in ("task", "proposer")}
    # a start prompt that asks for the wrong thing, so the exact metric fails its answers
    program = Predict("country -> answer", instruction="Name the country's largest river.", max_tokens=24)
    data = capital_examples()
    evaluator = Evaluator(program, ExactMatch(), lms["task"], concurrency=2, score_cache=ScoreCache())
    setup = OptimizationSetup(
        program=evaluator.program,
        trainset=data[:3],
        valset=data[3:],
        evaluator=evaluator,
        task_lm=lms["task"],
        proposer_lm=lms["proposer"],
        seed=0,
        budget=Budget(max_lm_calls=40),
    )
    return setup, lms


def optimizer() -> GradSum:
    return GradSum(
        beam_width=1,
        edits_per_prompt=1,
        iterations=1,
        minibatch_size=3,
        max_chars=200,
        task_description="Name the capital city of the given country.",
    )


async def test_gradsum_runs_end_to_end_on_the_embedded_model(tmp_path):
    cache = tmp_path / "responses.sqlite"
    setup, _ = make_setup(cache)
    events: list[tuple[str, dict]] = []
    setup = dataclasses.replace(setup, events=lambda kind, data: events.append((kind, data)))
    result = await optimizer().optimize(setup)

    assert result.stopped_by == "completed"
    assert result.start_score is not None and result.best_score >= result.start_score
    full = [t for t in result.trials if t.full]
    assert full[0].candidate == setup.start and full[0].n == 2
    (parent,) = result.info["history"][0]["parents"]
    assert parent["failures"] >= 1  # rivers are never the expected capitals
    usage = setup.budget.usage_by_role()
    assert usage["task"].paid_calls >= 5
    # a gradient per failure, one summary and the edit calls (one, and a second when the task-contract check
    # rejected the first), each a real reply of the proposer
    edit_calls = [d for kind, d in events if kind == "proposal" and d.get("purpose") == "gradsum_edit"]
    assert 1 <= len(edit_calls) <= 2
    assert usage["proposer"].paid_calls == parent["failures"] + 1 + len(edit_calls)
    assert all(text.strip() for text in parent["gradients"]["predict"])
    assert parent["summaries"]["predict"].strip()
    (edit,) = parent["edits"]
    if edit["modules"]:  # a usable edit: a new, non-empty instruction, scored on validation
        child = full[1].candidate
        assert child["predict"].instruction.strip()
        assert child["predict"].instruction != setup.start["predict"].instruction

    # the same seed and the same cached answers make the same choices, paying for nothing
    again_setup, again_lms = make_setup(cache)
    again = await optimizer().optimize(again_setup)
    assert again.best == result.best and again.best_score == result.best_score
    assert sum(lm.usage.paid_calls for lm in again_lms.values()) == 0


def test_the_embedded_model_judges_in_a_format_the_judge_metric_reads(tmp_path):
    judge = JudgeMetric(
        LM(MODEL, cache=tmp_path / "judge.sqlite"),
        task_description="Name the capital city of the given country.",
        criteria="Score 1 if the answer names the same city as the reference answer, else 0.",
        reference_field="answer",
        max_tokens=80,
    )
    example = capital_examples()[0]
    result = judge.score(example, {"answer": "Paris"})
    assert result.score in (0.0, 1.0)
    assert result.feedback.startswith("judge score") and len(result.feedback) > len("judge score 1 on a 0-1 scale: ")
    assert judge.lm.usage.paid_calls in (1, 2)  # a second call only if the first reply was unreadable
