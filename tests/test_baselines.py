"""The bootstrap baselines on the scripted parity world (see test_mipro_world.py)."""

from __future__ import annotations

import re

import pytest

from prompthone.lm import ServerError
from prompthone.lm.types import Request
from prompthone.optimize.baselines import BootstrapFewShot, BootstrapRandomSearch, LabeledFewShot
from test_mipro_world import make_setup, number_of, task_answer
from test_proposers import TwoStage, two_stage_lm


async def test_labeled_fewshot_uses_k_labelled_training_examples_and_keeps_the_better():
    setup, _, _ = make_setup(n_train=20)
    r = await LabeledFewShot(k=5).optimize(setup)
    demos = r.best["classify"].demos
    train_questions = {e.inputs["question"]: e.labels["answer"] for e in setup.trainset}
    assert len(demos) == 5 and all(train_questions[d["question"]] == d["answer"] for d in demos)
    assert [t.info["phase"] for t in r.trials] == ["start", "labeled"]
    assert r.best_score == pytest.approx(2 / 3, abs=0.05) and r.best_score > r.start_score
    again, _, _ = make_setup(n_train=20)
    assert LabeledFewShot(k=5).candidate(again) == r.best  # a seeded sample


async def test_labeled_fewshot_leaves_modules_without_labelled_fields_alone():
    setup, _, _ = make_setup(task=two_stage_lm, program=TwoStage(), n_train=10, n_val=10)
    r = await LabeledFewShot().optimize(setup)
    assert [t.info["phase"] for t in r.trials] == ["start"]  # nothing to add: no labelled query or context
    assert r.best == setup.start


async def test_bootstrap_fewshot_uses_passing_traces_plus_labelled_fill():
    def wrong_on_multiples_of_3(req: Request) -> str:
        n = number_of(req)
        return "Answer: neither" if n % 3 == 0 else f"Answer: {('even', 'odd')[n % 2]}"

    setup, _, _ = make_setup(task=wrong_on_multiples_of_3, n_train=24, separate_teacher=True)
    r = await BootstrapFewShot(max_bootstrapped_demos=3, max_labeled_demos=2, teacher_labeled=0).optimize(setup)
    cand = next(t.candidate for t in r.trials if t.info["phase"] == "bootstrapped")["classify"].demos
    boot, fill = cand[:3], cand[3:]
    assert len(boot) == 3 and len(fill) == 2
    assert all(int(re.findall(r"\d+", d["question"])[0]) % 3 for d in boot)  # only passing runs
    assert not {d["question"] for d in boot} & {d["question"] for d in fill}
    assert r.info["bootstrap"]["passed"] == 3
    assert setup.budget.usage_by_role()["teacher"].paid_calls == r.info["bootstrap"]["tried"]
    assert r.best_score >= r.start_score


async def test_bootstrap_random_search_scores_each_distinct_demo_set_and_keeps_the_best():
    setup, _, _ = make_setup(n_train=20)
    r = await BootstrapRandomSearch(num_candidate_sets=4, max_labeled_demos=2).optimize(setup)
    phases = [t.info["phase"] for t in r.trials]
    assert phases[0] == "start" and phases.count("demo_set") == 4
    assert all(t.full for t in r.trials)
    assert len({t.candidate for t in r.trials}) == len(r.trials)  # no set scored twice
    assert r.best_score == max(t.score for t in r.trials) and r.best_score > r.start_score


async def test_bootstrap_random_search_skips_a_demo_set_whose_evaluation_errors_never_scoring_it_zero():
    def down_with_many_demos(req: Request):
        demos = sum(1 for role, _ in req.messages if role == "assistant")
        return ServerError("the server is down") if demos >= 3 else task_answer(req)

    events: list = []
    setup, _, _ = make_setup(task=down_with_many_demos, n_train=40, events=events)
    r = await BootstrapRandomSearch(num_candidate_sets=4, max_labeled_demos=2, teacher_labeled=0).optimize(setup)
    failed = r.info["failed_sets"]
    assert failed and all("server is down" in f["error"] for f in failed)
    assert all(len(t.candidate["classify"].demos) < 3 for t in r.trials)  # the failed sets have no score at all
    assert sum(k == "trial_failed" for k, _ in events) == len(failed)
    assert r.stopped_by == "completed" and r.best_score >= r.start_score


@pytest.mark.parametrize("opt", [LabeledFewShot(), BootstrapFewShot(), BootstrapRandomSearch()], ids=lambda o: o.name)
def test_baseline_estimates_name_every_role_and_bound_the_task_calls(opt):
    setup, _, _ = make_setup(n_train=12, n_val=10)
    est = opt.estimate(setup)
    assert set(est) == {"task", "proposer", "teacher"} and est["proposer"]["calls"] == 0
    assert est["task"]["calls"] >= 2 * len(setup.valset) and est["task"]["prompt_tokens"] > 0
    assert (est["teacher"]["calls"] > 0) == (opt.name != "labeled-fewshot")


def test_baseline_settings_are_checked():
    with pytest.raises(ValueError, match="k must be"):
        LabeledFewShot(k=0)
    with pytest.raises(ValueError, match="num_candidate_sets"):
        BootstrapRandomSearch(num_candidate_sets=0)
