"""GRAD-SUM end to end on the real embedded model, with an LLM judge, on a tiny budget (about a minute).

The 0.5B model plays task model, judge and proposer at once, so nothing asserted here depends on how
good its prompts are: only that the whole loop runs on real replies (judge verdicts parsed or counted
as judge failures, gradients, a summary, edits, the beam scored on validation), that every role is
counted, and that a re-run with the same seed replays every call from the response cache.
"""

from __future__ import annotations

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.metrics import JudgeMetric
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.optimize.gradsum import GradSum
from prompthone.program import Predict

pytestmark = pytest.mark.model

MODEL = "local/qwen2.5-coder-0.5b"
CAPITALS = [
    ("France", "Paris"),
    ("Japan", "Tokyo"),
    ("Italy", "Rome"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Kenya", "Nairobi"),
]


def capital_examples() -> list[Example]:
    return [
        Example(id=f"cap-{c}", inputs={"country": c}, labels={"answer": city}) for c, city in CAPITALS
    ]


def make_setup(cache_path) -> tuple[OptimizationSetup, dict[str, LM]]:
    lms = {role: LM(MODEL, cache=cache_path) for role in ("task", "judge", "proposer")}
    # a start prompt that asks for the wrong thing, so there are failures to learn from
    program = Predict("country -> answer", instruction="Name the country's largest river.", max_tokens=24)
    judge = JudgeMetric(
        lms["judge"],
        task_description="Name the capital city of the given country.",
        criteria="Score 1 if the answer names the same city as the reference answer, else 0.",
        reference_field="answer",
        max_tokens=60,
    )
    data = capital_examples()
    evaluator = Evaluator(program, judge, lms["task"], concurrency=2, max_errors=3, score_cache=ScoreCache())
    setup = OptimizationSetup(
        program=evaluator.program,
        trainset=data[:3],
        valset=data[3:],
        evaluator=evaluator,
        task_lm=lms["task"],
        proposer_lm=lms["proposer"],
        judge_lm=lms["judge"],
        seed=0,
        budget=Budget(max_lm_calls=60),
    )
    return setup, lms


async def test_gradsum_runs_end_to_end_on_the_embedded_model_with_a_judge(tmp_path):
    cache = tmp_path / "responses.sqlite"
    setup, lms = make_setup(cache)
    optimizer = GradSum(beam_width=1, edits_per_prompt=1, iterations=1, minibatch_size=3, max_chars=200)
    result = await optimizer.optimize(setup)

    assert result.stopped_by in ("completed", "early_stop")
    assert result.start_score is not None
    assert result.best_score >= result.start_score
    full = [t for t in result.trials if t.full]
    assert full[0].candidate == setup.start and all(t.n == 3 for t in result.trials)
    (parent,) = result.info["history"][0]["parents"]
    usage = setup.budget.usage_by_role()
    assert usage["task"].paid_calls >= 6 and usage["judge"].paid_calls >= 1
    if parent["failures"]:
        # below the top score: a gradient per failure, one summary, one edit (which may be unusable)
        assert usage["proposer"].paid_calls >= parent["failures"] + 2
        assert parent["summaries"]["predict"].strip()
    if parent.get("edits") and parent["edits"][0]["modules"]:
        child = full[1].candidate
        assert child["predict"].instruction != setup.start["predict"].instruction
        assert child["predict"].instruction.strip()

    # the same seed and the same cached answers make the same choices, paying for nothing
    again_setup, again_lms = make_setup(cache)
    again = await GradSum(beam_width=1, edits_per_prompt=1, iterations=1, minibatch_size=3, max_chars=200).optimize(
        again_setup
    )
    assert again.best == result.best and again.best_score == result.best_score
    assert sum(lm.usage.paid_calls for lm in again_lms.values()) == 0
