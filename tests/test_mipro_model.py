"""MIPRO end to end on the real embedded model (Qwen2.5-Coder 0.5B), on a tiny TREC budget, twice:
the second run, with the same seed and the response cache warm, must give the same result for free."""

from __future__ import annotations

import pytest

from prompthone.data import split
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.optimize import OptimizationSetup
from prompthone.optimize.mipro import MIPRO
from prompthone.tasks import get_task

pytestmark = pytest.mark.model

MODEL = "local/qwen2.5-coder-0.5b"
SETTINGS = dict(
    num_candidates=2,  # the start's instruction + 1 proposal; 2 demo sets
    num_trials=3,
    max_bootstrapped_demos=2,
    max_labeled_demos=2,
    teacher_labeled=2,
    proposer_max_tokens=48,
    ground_dataset=False,  # grounding is covered with a scripted LM; here: the real path, kept short
    ground_program=False,
)


async def run_once(cache, data):
    task, parts = data
    program = task.make_program(None)
    lm = LM(MODEL, cache=cache, n_threads=1)
    evaluator = Evaluator(program, task.metric(), lm, concurrency=4, score_cache=ScoreCache(), max_tokens=10)
    setup = OptimizationSetup(
        program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator, task_lm=lm, seed=0
    )
    result = await MIPRO(**SETTINGS).optimize(setup)
    return result, setup


@pytest.fixture(scope="module")
def trec():
    task = get_task("trec")
    return task, split(task.load(None), train=6, val=6, test=0, seed=0)


async def test_mipro_runs_on_the_embedded_model_and_replays_from_a_warm_cache(tmp_path, trec):
    cache = tmp_path / "responses.sqlite"
    first, setup = await run_once(cache, trec)
    assert first.stopped_by == "completed" and first.start_score is not None
    assert first.best_score >= first.start_score
    trials = [t for t in first.trials if t.info.get("phase") == "trial"]
    assert len(trials) == 3 and all(t.full and t.n == 6 for t in trials)  # 6 val < minibatch: full trials
    assert first.info["pool_sizes"]["classify"]["demo_sets"] == 2
    proposals = [p for p in first.info["proposals"] if p["purpose"] == "instruction"]
    assert 1 <= len(proposals) <= 3 and all(p["reply"] for p in proposals)  # real text came back
    paid = setup.task_lm.usage.paid_calls
    assert paid > 0

    second, setup2 = await run_once(cache, trec)
    assert [(t.candidate.hash, t.score, t.full) for t in second.trials] == [
        (t.candidate.hash, t.score, t.full) for t in first.trials
    ]
    assert second.best == first.best and second.best_score == first.best_score
    assert setup2.task_lm.usage.paid_calls == 0 and setup2.task_lm.usage.cache_hits > 0
