"""MIPRO and its variants on the scripted parity world (see test_mipro_world.py): search, schedule,
cadence, failures, resume, determinism, estimates. No real model here (test_mipro_model.py has one)."""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict

import optuna
import pytest
from optuna.trial import TrialState

from prompthone.lm import ServerError
from prompthone.lm.types import Request
from prompthone.optimize import Budget
from prompthone.optimize.mipro import (
    MIPRO,
    PRESETS,
    BayesianBootstrap,
    MinibatchSchedule,
    MIPRO0Shot,
    MIPROPlusPlus,
    MIPROSettings,
)
from prompthone.optimize.proposers import TIPS
from prompthone.optimize.registry import make_optimizer
from test_mipro_world import GOOD, make_setup, parity_examples, task_answer

# --------------------------------------------------------------------------- settings


def test_presets_and_trial_counts_follow_the_documented_formula():
    assert MIPROSettings.build("light").trials_for(2, 6) == 11
    assert MIPROSettings.build("light").trials_for(4, 6) == 21
    assert MIPROSettings.build("medium").trials_for(2, 12) == 18
    assert MIPROSettings.build("heavy").trials_for(4, 18) == 34
    assert {k: v["num_candidates"] for k, v in PRESETS.items()} == {"light": 6, "medium": 12, "heavy": 18}
    s = MIPROSettings.build("medium", num_trials=7)
    assert s.num_candidates == 12 and s.val_size == 300 and s.trials_for(2, 12) == 7


def test_a_preset_halves_the_instruction_pool_when_demos_are_searched_too_as_miprov2_auto_does():
    light = MIPROSettings.build("light")
    assert (light.instructions_for(True), light.instructions_for(False), light.n_demo_sets) == (3, 6, 6)
    assert MIPROSettings.build("heavy").instructions_for(True) == 9
    assert MIPROSettings.build("light", num_instructions=5).instructions_for(True) == 5  # set outright
    assert MIPROSettings.build(None, num_candidates=4).instructions_for(True) == 4  # no preset: both counts
    assert MIPROSettings.build("light", num_candidates=4).instructions_for(True) == 4  # candidates given outright
    assert MIPRO().n_instructions() == 3 and MIPRO0Shot().n_instructions() == 6
    assert MIPROPlusPlus().n_instructions() == 6  # no pool: its proposer-demo rotations keep one per candidate


async def test_a_light_run_proposes_two_instructions_per_module_beside_six_demo_sets():
    setup, _, pb = make_setup()
    r = await MIPRO(minibatch_size=10, num_trials=3).optimize(setup)
    asked = {q.sample_index for q in pb.requests if "Write a new instruction" in q.messages[-1][1]}
    assert r.info["pool_sizes"]["classify"]["demo_sets"] == 6
    assert r.info["pool_sizes"]["classify"]["instructions"] <= 3 and {0, 3} <= asked  # proposals k=0, 1 (3k)
    assert not asked & {6, 9, 12}  # no third proposal was asked for


def test_startup_trials_are_sized_to_the_budget():
    s = MIPROSettings.build()
    assert [s.startup_for(n) for n in (2, 5, 11, 30, 100)] == [2, 2, 3, 6, 20]
    assert MIPROSettings.build(n_startup_trials=4).startup_for(11) == 4


def test_unknown_or_bad_settings_fail_clearly():
    with pytest.raises(TypeError, match=r"unknown MIPRO setting.*minibatch"):
        MIPRO(minibatc_size=3)
    with pytest.raises(ValueError, match="unknown preset"):
        MIPRO(preset="huge")
    with pytest.raises(ValueError, match="full_eval_every"):
        MIPRO(full_eval_every=0)


def test_parallel_trials_default_follows_the_task_model():
    s = MIPROSettings.build()
    assert s.parallel_for(1) == 1 and s.parallel_for(8) == 4
    assert MIPROSettings.build(parallel_trials=3).parallel_for(1) == 3


# --------------------------------------------------------------------------- minibatch schedule


def test_minibatch_schedule_is_seeded_fixed_size_and_covers_the_validation_set():
    import random

    val = parity_examples(23)
    a = MinibatchSchedule(val, 10, random.Random("s:1"))
    b = MinibatchSchedule(val, 10, random.Random("s:1"))
    c = MinibatchSchedule(val, 10, random.Random("s:2"))
    assert len(a) == 3 and all(len(batch) == 10 for batch in a.batches)
    assert {e.id for batch in a.batches for e in batch} == {e.id for e in val}
    assert a.batches == b.batches and a.batches != c.batches
    assert [a.index_for(t) for t in range(7)] == [0, 1, 2, 0, 1, 2, 0]
    whole = MinibatchSchedule(val, 50, random.Random(0))
    assert len(whole) == 1 and len(whole.batches[0]) == 23


@pytest.mark.parametrize("parallel", [1, 3])
async def test_trials_with_the_same_batch_index_are_scored_on_the_same_examples(parallel):
    setup, _, _ = make_setup()
    r = await MIPRO(minibatch_size=10, num_trials=12, parallel_trials=parallel, num_instructions=6).optimize(setup)
    ev = setup.evaluator
    assert len(ev.calls) == len(r.trials)  # every score went through the shared evaluator, in order
    by_batch: dict[int, set] = defaultdict(set)
    seen: dict[str, set[int]] = defaultdict(set)  # batches each configuration was scored on so far
    moved = 0
    for t, (h, ids) in zip(r.trials, ev.calls, strict=True):
        assert h == t.candidate.hash
        if t.info.get("phase") == "trial":
            b, scheduled = t.info["batch"], t.info["optuna_trial"] % 4
            assert len(ids) == 10  # 40 val / 10
            # the schedule's batch, unless the configuration was scored on it: then one it was not scored on
            if scheduled in seen[h] and len(seen[h]) < 4:
                assert b not in seen[h]
                moved += 1
            else:
                assert b == scheduled
            seen[h].add(b)
            by_batch[b].add(ids)
        else:
            assert len(ids) == 40
            seen[h] |= {0, 1, 2, 3}
    assert len(by_batch) == 4 and all(len(v) == 1 for v in by_batch.values())
    if parallel == 1:  # (with 3 in flight this seed's TPE asks for no configuration twice on one batch)
        assert moved > 0  # TPE asked again for a configuration it had scored on that trial's batch


def test_a_configuration_asked_again_is_scored_on_a_batch_it_has_not_seen_even_while_in_flight():
    """The batch is chosen when a trial is asked: a repeat of a configuration scored on batch 1 and
    another of it asked in the same round each get a batch of their own."""
    import random
    from types import SimpleNamespace

    from prompthone.optimize.mipro.search import ConfigStats

    setup, _, _ = make_setup()
    cand = setup.start
    stats = ConfigStats(cand, 1, minibatch=[(1, 0.5, 0.1)])
    run = SimpleNamespace(stats={cand.hash: stats}, batch_of={}, in_flight={},
                          schedule=MinibatchSchedule(parity_examples(40), 10, random.Random(0)))  # fmt: skip
    plan = MIPRO()._plan_batch
    assert plan(run, 5, cand) == 2  # scheduled 5 mod 4 = 1, which it has seen
    assert plan(run, 6, cand) == 3  # scheduled 2, taken by trial 5 in flight
    assert plan(run, 8, cand) == 0  # scheduled 0, unseen
    run.in_flight.clear()
    stats.full = 0.5  # fully scored: every batch is known, so the schedule's stands
    assert plan(run, 9, cand) == 1


# --------------------------------------------------------------------------- the search


async def test_mipro_finds_the_planted_best_configuration():
    setup, _, pb = make_setup()
    # the world's proposer script plants its `Predict(...)` reply among the first five proposals
    r = await MIPRO(minibatch_size=10, num_instructions=6).optimize(setup)
    assert r.start_score == pytest.approx(0.2) and r.best_score == 1.0
    best = r.best["classify"]
    assert "parity" in best.instruction and len(best.demos) >= 2
    assert r.stopped_by == "completed"
    assert r.info["plan"]["trials"] == 11 and r.info["pool_sizes"]["classify"] == {"instructions": 5, "demo_sets": 6}
    # every proposal call is recorded, including the rejected `Predict(...)` ones
    assert len(r.info["proposals"]) == len(pb.requests)
    assert any(p["kept"] is None and "code" in p["note"] for p in r.info["proposals"])


async def _guided(seed: int, startup: int) -> tuple[float, float]:
    setup, _, _ = make_setup(seed=seed)
    r = await MIPRO(minibatch_size=10, num_trials=30, n_startup_trials=startup, parallel_trials=1).optimize(setup)
    late = [t for t in r.trials if t.info.get("phase") == "trial" and t.info["optuna_trial"] >= 5]
    best = sum(GOOD in t.candidate["classify"].instruction and len(t.candidate["classify"].demos) >= 2 for t in late)
    return best / len(late), sum(t.score for t in late) / len(late)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_tpe_concentrates_on_the_planted_best_where_random_search_does_not(seed):
    tpe_share, tpe_mean = await _guided(seed, startup=5)
    random_share, random_mean = await _guided(seed, startup=30)  # all 30 trials are random start-up trials
    assert tpe_share > random_share and tpe_mean > random_mean


async def test_full_evaluations_come_every_n_trials_and_pick_the_best_unscored_by_minibatch():
    setup, _, _ = make_setup()
    r = await MIPRO(minibatch_size=10, num_trials=12, full_eval_every=4).optimize(setup)
    full = [e for e in r.info["full_evals"] if e["kind"] == "full"]
    assert [e["after"] for e in full] == [4, 8, 12]
    seen_trials = 0
    scored = {setup.start.hash}
    adv: dict[str, list[float]] = defaultdict(list)
    first: dict[str, int] = {}
    for t in r.trials:
        if t.info.get("phase") == "trial":
            seen_trials += 1
            adv[t.candidate.hash].append(t.info["advantage"])
            first.setdefault(t.candidate.hash, t.info["optuna_trial"])
        elif t.info.get("phase") in ("full", "final"):
            if t.info["phase"] == "full":
                assert seen_trials % 4 == 0  # right after the 4th, 8th, 12th trial
            pending = {h: sum(v) / len(v) for h, v in adv.items() if h not in scored}
            expected = max(pending, key=lambda h: (pending[h], -first[h]))
            assert t.candidate.hash == expected
            scored.add(t.candidate.hash)
    assert r.best_score == max(t.score for t in r.trials if t.full)


async def test_small_validation_sets_make_every_trial_a_full_evaluation():
    setup, _, _ = make_setup(n_val=12)
    r = await MIPRO(num_trials=5).optimize(setup)  # minibatch 35 > 12 examples
    trials = [t for t in r.trials if t.info.get("phase") == "trial"]
    assert len(trials) == 5 and all(t.full and t.n == 12 for t in trials)
    assert r.info["full_evals"] == [r.info["full_evals"][0]]  # only the start: trials are already full


async def test_the_result_is_never_worse_than_the_start_on_validation():
    def bad_demos(req: Request) -> str:  # demos make this model worse
        demos = sum(1 for role, _ in req.messages if role == "assistant")
        return "Answer: banana" if demos else task_answer(req)

    setup, _, _ = make_setup(task=bad_demos)
    r = await BayesianBootstrap(minibatch_size=10).optimize(setup)
    assert r.best == setup.start and r.best_score == r.start_score


# --------------------------------------------------------------------------- variants


async def test_zero_shot_mipro_never_puts_demos_in_a_candidate():
    setup, _, _ = make_setup()
    r = await MIPRO0Shot(minibatch_size=10).optimize(setup)
    assert all(len(t.candidate["classify"].demos) == 0 for t in r.trials)
    assert len({t.candidate["classify"].instruction for t in r.trials}) > 1
    assert r.best_score == 0.75 and "parity" in r.best["classify"].instruction  # instruction alone: 3 in 4

    class Leaky(MIPRO0Shot):
        searches_demos = True

    setup, _, _ = make_setup()
    with pytest.raises(AssertionError, match="demos leaked"):
        await Leaky(minibatch_size=10).optimize(setup)


async def test_bayesian_bootstrap_searches_demos_only_and_calls_no_proposer():
    setup, _, pb = make_setup()
    r = await BayesianBootstrap(minibatch_size=10).optimize(setup)
    assert {t.candidate["classify"].instruction for t in r.trials} == {"Answer the question."}
    assert len(pb.requests) == 0
    assert r.best_score == pytest.approx(2 / 3, abs=0.05) and len(r.best["classify"].demos) >= 2


async def test_mipro_plus_plus_proposes_in_each_trial_as_tpe_chose():
    setup, _, _ = make_setup()
    r = await MIPROPlusPlus(minibatch_size=10, num_trials=8, storage=None, study_name="pp").optimize(setup)
    study_trials = {t.info["optuna_trial"]: t for t in r.trials if t.info.get("phase") == "trial"}
    assert len(study_trials) == 8
    proposals = [p for p in r.info["proposals"] if p["purpose"] == "instruction"]
    assert {p["sample_index"] // 3 for p in proposals} == set(range(8))  # trial n proposes with indices 3n..3n+2
    # re-run the same study in memory to read TPE's choices: the run is deterministic
    setup2, _, _ = make_setup()
    opt = MIPROPlusPlus(minibatch_size=10, num_trials=8)
    captured: list[optuna.Study] = []
    orig = MIPROPlusPlus._decode

    async def spy(self, run, params, number):
        captured.append(run.study)
        return await orig(self, run, params, number)

    MIPROPlusPlus._decode = spy  # type: ignore[method-assign]
    try:
        r2 = await opt.optimize(setup2)
    finally:
        MIPROPlusPlus._decode = orig  # type: ignore[method-assign]
    assert [t.candidate.hash for t in r2.trials] == [t.candidate.hash for t in r.trials]
    params = {t.number: t.params for t in captured[0].get_trials()}
    for p in proposals:
        chosen = params[p["sample_index"] // 3]
        assert p["temperature"] == chosen["classify::temperature"]
        tip = TIPS[chosen["classify::tip"]].strip()
        assert (tip in p["prompt"]) if tip else all(t.strip() not in p["prompt"] for t in TIPS.values() if t)
        assert ("About the data:" in p["prompt"]) == chosen["classify::use_dataset"]
        assert ("Examples of this step done right" in p["prompt"]) == chosen["classify::use_demos"]
    later = [p for p in proposals if p["sample_index"] // 3 >= 1]
    assert later and all("Earlier instructions" in p["prompt"] for p in later)
    assert r.best_score >= r.start_score


@pytest.mark.parametrize(
    "name",
    [
        "mipro",
        "mipro-0shot",
        "bayesian-bootstrap",
        "mipro++",
        "labeled-fewshot",
        "bootstrap-fewshot",
        "bootstrap-random-search",
    ],
)
async def test_every_variant_and_baseline_runs_end_to_end_on_a_small_budget(name, tmp_path):
    """...and the same seed with a warm response cache gives the same result again, paying nothing."""
    settings = {"minibatch_size": 8, "num_trials": 6, "num_candidates": 3} if "mipro" in name or "bayes" in name else {}
    cache = tmp_path / "responses.sqlite"
    setup, _, _ = make_setup(n_train=12, n_val=20, cache=cache)
    r = await make_optimizer(name, **settings).optimize(setup)
    assert r.stopped_by == "completed"
    assert r.start_score == pytest.approx(0.2)
    assert r.best_score >= r.start_score and r.best_score > 0.5
    assert any(t.full and t.candidate == r.best and t.score == r.best_score for t in r.trials)
    assert setup.budget.usage_by_role()["task"].paid_calls > 0

    again, tb, pb = make_setup(n_train=12, n_val=20, cache=cache)  # a new process: fresh LMs and score cache
    r2 = await make_optimizer(name, **settings).optimize(again)
    assert trail(r2) == trail(r) and r2.best == r.best and r2.best_score == r.best_score
    assert len(tb.requests) == len(pb.requests) == 0  # everything replayed from the cache


async def test_a_pool_without_alternatives_skips_the_search():
    setup, _, pb = make_setup(proposer=lambda req: 'Predict("question -> answer")')  # every proposal rejected
    events: list = []
    setup.events = lambda k, d: events.append((k, d))
    r = await MIPRO0Shot(minibatch_size=10, ground_dataset=False, ground_program=False).optimize(setup)
    assert [t.info["phase"] for t in r.trials] == ["start"] and r.best == setup.start
    assert len(pb.requests) == 5 * 3  # 5 proposals, 3 attempts each, all recorded and rejected
    assert ("step", {"stage": "search skipped", "reason": "the pool offers no alternative to the start"}) in events


# --------------------------------------------------------------------------- failures, budget


async def test_a_trial_whose_evaluation_errors_is_marked_failed_not_scored_zero(tmp_path):
    def broken_good(req: Request):
        return ServerError("the server is down") if "parity" in req.messages[0][1] else task_answer(req)

    events: list = []
    setup, _, _ = make_setup(task=broken_good, events=events)
    db = tmp_path / "study.sqlite"
    r = await MIPRO(minibatch_size=10, num_trials=12, storage=str(db), study_name="s").optimize(setup)
    failed = r.info["failed_trials"]
    assert failed and all("server is down" in f["error"] for f in failed)
    assert not any("parity" in t.candidate["classify"].instruction for t in r.trials)  # never scored, not even 0
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{db}")
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.FAIL) == len(failed) and states.count(TrialState.COMPLETE) == 12 - len(failed)
    assert sum(k == "trial_failed" for k, _ in events) == len(failed)
    assert r.stopped_by == "completed" and r.best_score >= r.start_score


async def test_budget_stops_the_search_and_keeps_the_best_fully_scored():
    setup, _, _ = make_setup(budget=Budget(max_lm_calls=120))
    r = await MIPRO(minibatch_size=10).optimize(setup)
    assert r.stopped_by == "lm_calls"
    assert r.start_score == pytest.approx(0.2) and r.best_score >= r.start_score
    assert "plan" in r.info


# --------------------------------------------------------------------------- resume, determinism


def trail(r) -> list[tuple[str, float, bool]]:
    return [(t.candidate.hash, round(t.score, 9), t.full) for t in r.trials]


async def test_a_run_stopped_by_its_budget_resumes_from_its_study_to_the_same_result(tmp_path):
    settings = dict(minibatch_size=10, num_trials=14, full_eval_every=4, parallel_trials=2)
    ref_setup, ref_tb, _ = make_setup()
    ref = await MIPRO(**settings, storage=str(tmp_path / "ref.sqlite")).optimize(ref_setup)

    db = str(tmp_path / "run.sqlite")
    cut, _, _ = make_setup(budget=Budget(max_lm_calls=170))
    part = await MIPRO(**settings, storage=db).optimize(cut)
    assert part.stopped_by == "lm_calls"
    done = [t for t in part.trials if t.info.get("phase") == "trial"]
    assert 0 < len(done) < 14  # it stopped inside the search

    again, tb, pb = make_setup()  # a new process: fresh LMs, no response cache, empty score cache
    resumed = await MIPRO(**settings, storage=db).optimize(again)
    assert resumed.info["resumed"] is True
    assert trail(resumed) == trail(ref)
    assert resumed.best == ref.best and resumed.best_score == ref.best_score
    assert len(pb.requests) == 0  # the pool came from the study, not from new proposals
    assert len(tb.requests) < len(ref_tb.requests)

    finished, tb2, _ = make_setup()  # a finished study: the same result, not one LM call
    replay = await MIPRO(**settings, storage=db).optimize(finished)
    assert trail(replay) == trail(ref) and len(tb2.requests) == 0


class Killed(BaseException):
    """Stands for the process being killed in the middle of an LM call."""


def test_a_killed_run_resumes_from_its_study_to_the_same_result(tmp_path):
    settings = dict(minibatch_size=10, num_trials=12, full_eval_every=4, parallel_trials=3)
    ref_setup, _, _ = make_setup()
    ref = asyncio.run(MIPRO(**settings).optimize(ref_setup))

    calls = {"n": 0}

    def dies(req: Request):
        calls["n"] += 1
        if calls["n"] == 150:
            raise Killed()
        return task_answer(req)

    db = str(tmp_path / "run.sqlite")
    setup, _, _ = make_setup(task=dies)
    with pytest.raises(Killed):
        asyncio.run(MIPRO(**settings, storage=db).optimize(setup))
    (summary,) = optuna.get_all_study_summaries(storage=f"sqlite:///{db}")
    states = [t.state for t in optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}").trials]
    assert TrialState.RUNNING in states and 0 < states.count(TrialState.COMPLETE) < 12  # killed mid-search
    again, _, _ = make_setup()
    resumed = asyncio.run(MIPRO(**settings, storage=db).optimize(again))
    assert resumed.info["resumed"] is True
    assert trail(resumed) == trail(ref) and resumed.best == ref.best


async def test_a_study_of_another_run_is_not_resumed_by_mistake(tmp_path):
    db = str(tmp_path / "s.sqlite")
    setup, _, _ = make_setup(n_train=12, n_val=12)
    await MIPRO(num_trials=2, storage=db, study_name="mine").optimize(setup)
    other, _, _ = make_setup(n_train=12, n_val=12, seed=2)
    with pytest.raises(ValueError, match="belongs to a different run"):
        await MIPRO(num_trials=2, storage=db, study_name="mine").optimize(other)


async def test_the_runs_store_url_holds_the_study_when_no_storage_is_set(tmp_path):
    url = f"sqlite:///{tmp_path / 'run.sqlite'}"
    setup, _, _ = make_setup(n_train=12, n_val=12, storage_url=url)
    r = await MIPRO(num_trials=3).optimize(setup)
    names = [s.study_name for s in optuna.get_all_study_summaries(storage=url)]
    assert names == [r.info["study"]]


async def test_same_seed_with_a_warm_cache_gives_the_same_result_for_free(tmp_path):
    cache = tmp_path / "responses.sqlite"
    first_setup, _, _ = make_setup(cache=cache)
    first = await MIPRO(minibatch_size=10).optimize(first_setup)
    second_setup, _, _ = make_setup(cache=cache)
    second = await MIPRO(minibatch_size=10).optimize(second_setup)
    assert trail(second) == trail(first) and second.best == first.best
    assert second.info["proposals"] == first.info["proposals"] or all(p["cached"] for p in second.info["proposals"])
    usage = second_setup.budget.usage_by_role()
    assert all(u.paid_calls == 0 for u in usage.values()) and usage["task"].cache_hits > 0


async def test_trials_in_flight_run_concurrently_and_stay_deterministic():
    a_setup, _, _ = make_setup(delay_s=0.002)
    a = await MIPRO(minibatch_size=10, num_trials=12, parallel_trials=3).optimize(a_setup)
    b_setup, _, _ = make_setup(delay_s=0.002)
    b = await MIPRO(minibatch_size=10, num_trials=12, parallel_trials=3).optimize(b_setup)
    assert a_setup.evaluator.peak == 3  # three trials scored at once
    assert trail(a) == trail(b)
    serial_setup, _, _ = make_setup()
    serial = await MIPRO(minibatch_size=10, num_trials=12, parallel_trials=1).optimize(serial_setup)
    assert serial_setup.evaluator.peak == 1 and serial.best_score == 1.0 and a.best_score == 1.0


async def test_trials_in_flight_share_one_bound_on_lm_requests():
    """Four trials in flight, each evaluation willing to send 8 requests at once: the task LM's one
    bound (3) caps them all together, and the result is the one a serial search finds."""
    setup, tb, _ = make_setup(delay_s=0.002, task_max_concurrency=3, concurrency=8)
    r = await MIPRO(minibatch_size=10, num_trials=12, parallel_trials=4).optimize(setup)
    assert setup.evaluator.peak == 4  # four evaluations at once...
    assert tb.peak_inflight == 3  # ...but never more than 3 requests to the model
    assert r.info["plan"]["parallel_trials"] == 4 and r.best_score == 1.0
    # answers coming back in another order (random delays) leave the same record: Optuna is told in
    # trial order, after the whole batch of trials in flight was scored
    jitter = random.Random(7)
    again, _, _ = make_setup(delay_s=lambda req: jitter.random() * 0.01, task_max_concurrency=3, concurrency=8)
    assert trail(await MIPRO(minibatch_size=10, num_trials=12, parallel_trials=4).optimize(again)) == trail(r)


# --------------------------------------------------------------------------- estimate


@pytest.mark.parametrize("cls", [MIPRO, MIPRO0Shot, BayesianBootstrap, MIPROPlusPlus])
async def test_the_estimate_bounds_what_a_cold_run_pays(cls):
    setup, _, _ = make_setup(separate_teacher=True)
    opt = cls(minibatch_size=10)
    est = opt.estimate(setup)
    assert set(est) == {"task", "proposer", "teacher"}
    r = await opt.optimize(setup)
    assert r.stopped_by == "completed"
    usage = setup.budget.usage_by_role()
    assert usage["task"].paid_calls <= est["task"]["calls"] <= 3 * usage["task"].paid_calls
    assert usage["teacher"].paid_calls <= est["teacher"]["calls"]
    if cls is BayesianBootstrap:
        assert est["proposer"]["calls"] == usage["proposer"].paid_calls == 0
    else:
        paid = usage["proposer"].paid_calls
        assert est["proposer"]["calls"] <= paid <= 3 * est["proposer"]["calls"]  # rejected ones are re-sampled
    for role in ("task", "proposer"):
        if est[role]["calls"]:
            assert est[role]["prompt_tokens"] > est[role]["calls"] and est[role]["completion_tokens"] > 0
    assert math.isfinite(sum(v for d in est.values() for v in d.values()))
