"""MIPRO with the prompt format searched, on the real embedded model (Qwen2.5-Coder 0.5B): a tiny run
completes, its trials are rendered and parsed in the formats TPE chose, and the study records them."""

from __future__ import annotations

import optuna
import pytest

from prompthone.data import split
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.optimize import OptimizationSetup
from prompthone.optimize.mipro import MIPRO
from prompthone.program.params import PROMPT_FORMATS
from prompthone.tasks import get_task

pytestmark = pytest.mark.model

SETTINGS = dict(
    num_candidates=2,
    num_trials=3,
    max_bootstrapped_demos=1,
    max_labeled_demos=1,
    teacher_labeled=1,
    proposer_max_tokens=48,
    ground_dataset=False,
    ground_program=False,
    search_formats=True,
)


async def test_mipro_with_formats_searched_runs_on_the_embedded_model(tmp_path):
    task = get_task("trec-mini")
    parts = split(task.load(None), train=3, val=4, test=0, seed=0)
    program = task.make_program(None)
    lm = LM("local/qwen2.5-coder-0.5b", cache=tmp_path / "responses.sqlite", n_threads=2)
    evaluator = Evaluator(program, task.metric(), lm, concurrency=1, score_cache=ScoreCache(), max_tokens=16)
    setup = OptimizationSetup(
        program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator, task_lm=lm, seed=1
    )
    storage = tmp_path / "study.sqlite"
    r = await MIPRO(**SETTINGS, storage=str(storage)).optimize(setup)
    assert r.stopped_by == "completed" and r.best_score >= r.start_score
    (module,) = program.named_modules()
    start = program.named_modules()[module].format  # a Predict's: json
    assert r.info["pool_sizes"][module]["formats"] == [start, *(f for f in PROMPT_FORMATS if f != start)]
    trials = [t for t in r.trials if t.info.get("phase") == "trial"]
    assert len(trials) == 3 and all(t.full and t.n == 4 for t in trials)  # 4 val < minibatch: full trials
    formats = [t.candidate[module].format for t in trials]
    # the start first; the other two are TPE's random start-up draws, which depend on the seed and the
    # pool's sizes only (seed 1 draws other formats)
    assert formats[0] == start and len(set(formats)) > 1
    study = optuna.load_study(study_name=r.info["study"], storage=f"sqlite:///{storage}")
    assert [t.params[f"{module}::format"] for t in study.trials] == formats
    records = await evaluator.evaluate(trials[-1].candidate, parts.val)
    assert records.n_errors == 0  # the model's replies in that format were read (right or wrong), none failed
