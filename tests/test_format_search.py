"""Issue 15, part 2: the prompt format can be searched. MIPRO's variants and bootstrap random search take
`search_formats`; off, or with MIPRO's default (`{"json": ["tags"]}`) on a module that starts in `labels`, every
trial, request and stored study is what it was before the setting existed; on, trials explore formats
and the format that scores best wins. OPRO and GRAD-SUM keep the start's format. Scripted models only
(test_format_search_model.py has the real one)."""

from __future__ import annotations

import asyncio
import json
import re
from collections import defaultdict

import optuna
import pytest
from optuna.trial import TrialState

from format_world import GOOD_FORMAT, footprint, format_answer, request_format
from prompthone.cli.checks import check_settings
from prompthone.lm.types import Request
from prompthone.optimize.mipro import MIPRO
from prompthone.optimize.mipro.settings import MIPROSettings
from prompthone.optimize.registry import make_optimizer
from prompthone.optimize.settings import SettingError
from prompthone.program import Predict
from prompthone.program.params import PROMPT_FORMATS
from prompthone.tasks import get_task
from prompthone.testing.replies import write_reply
from test_mipro_world import make_setup, task_answer

MIPRO_VARIANTS = ["mipro", "mipro-0shot", "bayesian-bootstrap", "mipro++"]
SMALL = {
    "mipro": dict(minibatch_size=10, num_trials=8, num_candidates=3),
    "mipro-0shot": dict(minibatch_size=10, num_trials=6, num_candidates=3),
    "bayesian-bootstrap": dict(minibatch_size=10, num_trials=6, num_candidates=3),
    "mipro++": dict(minibatch_size=10, num_trials=4, num_candidates=3),
    "bootstrap-random-search": dict(num_candidate_sets=4, max_labeled_demos=2),
}
#: `format_world.footprint` of each SMALL run on `make_setup(seed=3, n_train=12, n_val=20)`, taken with the
#: code before `search_formats` existed (main at 80cc593): with the setting off, nothing may differ
BEFORE = {
    "mipro": {
        "trail": "c395965b6b231e78",
        "requests": "943a5e2d60b7df6a",
        "best": "75a13561754e5943db6524c861862071596a5bf0072f23296b293c247181b457",
        "study": "mipro-822b4c7c53382ee6",
        "study_attrs": "6f839a98d5fa3d34",
        "study_trials": "4c2a670838fae1ac",
    },
    "mipro-0shot": {
        "trail": "2c164b9314919ca3",
        "requests": "5547653f53346198",
        "best": "fcd8fd3d5a70d791d1ef16f62ca75fe843ea54a082301684881399da1580b0de",
        "study": "mipro-0shot-8018b0e401fddf16",
        "study_attrs": "0fd60b3f3e62359a",
        "study_trials": "029869098fa2872f",
    },
    "bayesian-bootstrap": {
        "trail": "d50f8809fe60abd3",
        "requests": "8c4d02d68d399e5b",
        "best": "ef09b772e65957996a5918305e427fce3ae3833e6f28280a6a2b209cf595211a",
        "study": "bayesian-bootstrap-4f0ec8f30530afa9",
        "study_attrs": "e69d5fcfd3422582",
        "study_trials": "c39c6a9ac1b3c739",
    },
    "mipro++": {
        "trail": "76fc511641469865",
        "requests": "5097980b819e47b1",
        "best": "bff39f6d7abbdddf2375b879f06d01e446af026ce791f1c6483deb8dcc2a193a",
        "study": "mipro++-8feca996adcec2ea",
        "study_attrs": "d617193acc65b967",
        "study_trials": "60241134f6ec3e46",
    },
    "bootstrap-random-search": {
        "trail": "53923ca27897a4da",
        "requests": "55998d53a0b8c996",
        "best": "9083a4894ff9c998230827cf059e865ce768ff0e9bab2e278117c059ed772458",
    },
}


def small_run(name: str, tmp_path, *, task=task_answer, **extra):
    settings = dict(SMALL[name], **extra)
    storage = None
    if name != "bootstrap-random-search":
        storage = str(tmp_path / f"{name}-{len(list(tmp_path.iterdir()))}.sqlite")
        settings["storage"] = storage
    setup, tb, pb = make_setup(seed=3, n_train=12, n_val=20, task=task)
    r = asyncio.run(make_optimizer(name, **settings).optimize(setup))
    return r, footprint(r, [tb, pb], storage), tb


def trail(r) -> list[tuple[str, float, bool]]:
    return [(t.candidate.hash, round(t.score, 9), t.full) for t in r.trials]


# --------------------------------------------------------------------------- off: as before


@pytest.mark.parametrize("name", sorted(SMALL))
def test_by_default_or_off_a_labels_start_is_searched_as_before(name, tmp_path):
    _, default, _ = small_run(name, tmp_path)
    assert default == BEFORE[name]
    _, off, _ = small_run(name, tmp_path, search_formats=False)
    _, empty, _ = small_run(name, tmp_path, search_formats=[])
    assert off == empty == BEFORE[name]


@pytest.mark.parametrize("name", sorted(SMALL))
@pytest.mark.parametrize("value", [["labels"], {"json": ["tags"], "recap": True}, {"labels": ["labels"]}, {}])
def test_allowing_only_the_start_format_searches_nothing_new(name, value, tmp_path):
    _, only_start, _ = small_run(name, tmp_path, search_formats=value)
    # nothing differs, not even the study's fingerprint (its name and attributes): a setting that
    # searches no module's format is no setting, so runs stored before it existed resume under it
    assert only_start == BEFORE[name]


@pytest.mark.parametrize("name", MIPRO_VARIANTS)
@pytest.mark.parametrize(
    ("value", "formats"),
    [
        (None, ["json", "tags"]),  # the default: a JSON start may take the tagged layout
        ({"json": ["labels", "recap"], "labels": ["tags"]}, ["json", "labels", "recap"]),  # read at the start
        (["labels"], ["json", "labels"]),
    ],
)
def test_a_json_start_searches_what_the_setting_allows_a_json_start(name, value, formats, tmp_path):
    setup, _, _ = make_setup(seed=3, n_train=12, n_val=20)
    assert setup.start is not None
    module = next(iter(setup.program.named_modules()))
    setup.start = setup.start.with_module(module, setup.start[module].with_format("json"))
    given = {} if value is None else {"search_formats": value}
    r = asyncio.run(make_optimizer(name, **SMALL[name], **given, storage=str(tmp_path / "s.sqlite")).optimize(setup))
    assert r.info["pool_sizes"][module]["formats"] == formats
    tried = {t.candidate[module].format for t in r.trials}
    assert tried <= set(formats) and "json" in tried and len(tried) >= 2


@pytest.mark.parametrize("name", sorted(SMALL))
def test_the_cost_estimate_does_not_change_with_formats(name):
    setup, _, _ = make_setup(seed=3, n_train=12, n_val=20)
    off = make_optimizer(name, **SMALL[name]).estimate(setup)
    on = make_optimizer(name, **SMALL[name], search_formats=True).estimate(setup)
    assert on == off
    default = {k: v for k, v in SMALL[name].items() if k in ("num_candidate_sets",)}
    assert make_optimizer(name, **default, search_formats=True).estimate(setup) == make_optimizer(
        name, **default
    ).estimate(setup)


# --------------------------------------------------------------------------- on: explored, best wins


def by_format(r) -> dict[str, list[float]]:
    scores: dict[str, list[float]] = defaultdict(list)
    for t in r.trials:
        if t.info.get("phase") != "start":
            scores[t.candidate["classify"].format].append(t.score)
    return scores


@pytest.mark.parametrize("name", [*MIPRO_VARIANTS, "bootstrap-random-search"])
def test_trials_explore_formats_and_the_format_that_scored_best_wins(name, tmp_path):
    extra = {"num_trials": 12} if name != "bootstrap-random-search" else {"num_candidate_sets": 8}
    r, _, tb = small_run(name, tmp_path, task=format_answer, search_formats=True, **extra)
    scores = by_format(r)
    assert len(scores) > 1  # more than one format was tried
    best_format = max(scores, key=lambda f: sum(scores[f]) / len(scores[f]))
    assert best_format == GOOD_FORMAT == r.best["classify"].format
    assert r.best_score == 1.0 and r.start_score == pytest.approx(0.2)
    # every trial's requests were rendered in the format its candidate carries, demos included
    seen = {request_format(req) for req in tb.requests}
    assert seen == set(scores) | {"labels"}
    tags_with_demos = [req for req in tb.requests if request_format(req) == "tags" and len(req.messages) > 2]
    for req in tags_with_demos:
        assert all(c.startswith("<answer>") for role, c in req.messages if role == "assistant")
    if name != "bootstrap-random-search":
        assert r.info["pool_sizes"]["classify"]["formats"] == list(PROMPT_FORMATS)


def test_a_list_limits_the_formats_and_the_start_format_comes_first(tmp_path):
    r, _, _ = small_run("mipro", tmp_path, task=format_answer, search_formats=["json", "tags"], num_trials=10)
    assert r.info["pool_sizes"]["classify"]["formats"] == ["labels", "json", "tags"]
    assert set(by_format(r)) <= {"labels", "json", "tags"}
    assert r.best["classify"].format == GOOD_FORMAT
    # the first trial is the start's configuration, in the start's format
    first = next(t for t in r.trials if t.info.get("phase") == "trial")
    assert first.candidate == r.trials[0].candidate


def test_the_format_is_one_categorical_per_module_in_the_study(tmp_path):
    r, _, _ = small_run("mipro", tmp_path, task=format_answer, search_formats=True)
    storage = f"sqlite:///{next(tmp_path.glob('mipro-*.sqlite'))}"
    study = optuna.load_study(study_name=r.info["study"], storage=storage)
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert all(set(t.params) == {"classify::instruction", "classify::demos", "classify::format"} for t in trials)
    assert trials[0].params["classify::format"] == "labels"  # the start, tried first
    for t in trials:
        cand = r.trials[[x.info.get("optuna_trial") for x in r.trials].index(t.number)].candidate
        assert cand["classify"].format == t.params["classify::format"]
    assert r.info["study"] != BEFORE["mipro"]["study"]  # another run: its own fingerprint


def test_bootstrap_random_search_draws_formats_without_moving_the_demo_sets(tmp_path):
    off, _, _ = small_run("bootstrap-random-search", tmp_path, num_candidate_sets=8)
    on, _, _ = small_run("bootstrap-random-search", tmp_path, num_candidate_sets=8, search_formats=True)
    assert [t.candidate["classify"].demos for t in on.trials] == [t.candidate["classify"].demos for t in off.trials]
    assert len(on.trials) == len(off.trials)  # one format per demo set: no extra evaluation
    assert len({t.candidate["classify"].format for t in on.trials}) > 1
    again, _, _ = small_run("bootstrap-random-search", tmp_path, num_candidate_sets=8, search_formats=True)
    assert trail(again) == trail(on)  # seeded


# --------------------------------------------------------------------------- resume


class Killed(BaseException):
    """Stands for the process being killed in the middle of an LM call."""


@pytest.mark.parametrize(
    ("world", "kill_at"),
    [(format_answer, 100), (format_answer, 150), (format_answer, 200), (task_answer, 140), (task_answer, 180)],
)
def test_a_killed_run_resumes_to_the_same_trials_wherever_it_was_killed(world, kill_at, tmp_path):
    """Killed in the middle of a batch of trials in flight, or in a full evaluation: the resumed run
    records what the uninterrupted one did, in the same order (with formats searched, and without:
    the `task_answer` kill points are ones where an earlier version recorded trials out of order)."""
    on = world is format_answer
    settings = dict(minibatch_size=10, num_trials=12, full_eval_every=4, parallel_trials=3, search_formats=on)
    ref_setup, _, _ = make_setup(task=world)
    ref = asyncio.run(MIPRO(**settings).optimize(ref_setup))
    if on:
        assert len(by_format(ref)) > 1

    calls = {"n": 0}

    def dies(req: Request):
        calls["n"] += 1
        if calls["n"] == kill_at:
            raise Killed()
        return world(req)

    db = str(tmp_path / "run.sqlite")
    setup, _, _ = make_setup(task=dies)
    with pytest.raises(Killed):
        asyncio.run(MIPRO(**settings, storage=db).optimize(setup))
    (summary,) = optuna.get_all_study_summaries(storage=f"sqlite:///{db}")
    study = optuna.load_study(study_name=summary.study_name, storage=f"sqlite:///{db}")
    assert 0 < len([t for t in study.trials if t.state == TrialState.COMPLETE]) < 12  # killed mid-search
    again, _, pb = make_setup(task=world)
    resumed = asyncio.run(MIPRO(**settings, storage=db).optimize(again))
    assert resumed.info["resumed"] is True
    assert trail(resumed) == trail(ref) and resumed.best == ref.best
    assert resumed.info["full_evals"] == ref.info["full_evals"] and len(pb.requests) == 0
    if on:
        assert resumed.best["classify"].format == GOOD_FORMAT


def test_a_study_with_formats_searched_is_not_continued_with_other_formats(tmp_path):
    db = str(tmp_path / "run.sqlite")
    first, _, _ = make_setup(task=format_answer)
    asyncio.run(MIPRO(minibatch_size=10, num_trials=4, search_formats=True, storage=db).optimize(first))
    again, _, _ = make_setup(task=format_answer)
    same = asyncio.run(MIPRO(minibatch_size=10, num_trials=4, search_formats=True, storage=db).optimize(again))
    assert same.info["resumed"] is True
    other, _, _ = make_setup(task=format_answer)
    fresh = asyncio.run(MIPRO(minibatch_size=10, num_trials=4, search_formats=["recap"], storage=db).optimize(other))
    assert fresh.info["resumed"] is False and fresh.info["study"] != same.info["study"]


# --------------------------------------------------------------------------- settings


@pytest.mark.parametrize("name", [*MIPRO_VARIANTS, "bootstrap-random-search"])
@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("json", "got 'json'"),
        ("true", "got 'true'"),
        (["tags", "xml"], "unknown format(s) ['xml']; got ['tags', 'xml']"),
        ([1], "got [1]"),
        (2, "got 2"),
        ({"json": "tags"}, "got {'json': 'tags'}"),
        ({"json": ["xml"]}, "unknown format(s) ['xml']; got {'json': ['xml']}"),
    ],
)
def test_a_bad_search_formats_names_the_key_and_the_formats(name, value, words):
    method = "bootstrap-random-search" if name == "bootstrap-random-search" else "mipro"
    with pytest.raises(SettingError) as err:
        make_optimizer(name, search_formats=value)
    assert err.value.key == "search_formats"
    expected = (
        f"{method} setting search_formats must be true, false, a list of prompt formats from "
        "['labels', 'recap', 'tags', 'json'] or a mapping from a start format to one of these; "
    )
    assert str(err.value).startswith(expected) and str(err.value).endswith(words)


def test_search_formats_reads_as_given_from_a_config_or_the_command_line():
    assert MIPROSettings.build(search_formats=["tags", "json"]).search_formats == ("tags", "json")
    assert MIPROSettings.build(search_formats=True).search_formats is True
    assert MIPROSettings.build().search_formats == {"json": ("tags",)}
    given = {"json": ["tags", "labels"], "recap": False}
    assert MIPROSettings.build(search_formats=given).search_formats == {"json": ("tags", "labels"), "recap": False}
    assert check_settings("mipro", {"search_formats": ["recap", "json"]}) is None
    assert check_settings("mipro", {"search_formats": {"json": ["tags"]}}) is None
    line = check_settings("mipro", {"search_formats": "xml"})
    assert line == (
        "--set search_formats=xml: mipro setting search_formats must be true, false, a list of prompt formats "
        "from ['labels', 'recap', 'tags', 'json'] or a mapping from a start format to one of these; got 'xml'"
    )
    line = check_settings("mipro", {"search_formats": {"xml": ["tags"]}})
    assert line == (
        "--set search_formats={'xml': ['tags']}: mipro setting search_formats must be keyed by start formats from "
        "['labels', 'recap', 'tags', 'json']; unknown start format(s) ['xml']; got {'xml': ['tags']}"
    )


# --------------------------------------------------------------------------- OPRO and GRAD-SUM


@pytest.mark.parametrize("fmt", ["recap", "tags"])
async def test_opro_keeps_the_start_format(fmt):
    from prompthone.optimize.opro import OPRO
    from prompthone.program.program import SingleModule
    from test_opro import START, leveled_task_lm, make_setup, proposer

    program = SingleModule(Predict("question -> answer", instruction=START, format=fmt), name="qa")
    setup = make_setup(proposer([f"<INS>level {i}</INS>" for i in range(1, 30)]), leveled_task_lm(), program=program)
    r = await OPRO(steps=3, candidates_per_step=2).optimize(setup)
    assert len({t.candidate["qa"].instruction for t in r.trials}) > 1  # it did propose
    assert {t.candidate["qa"].format for t in r.trials} == {fmt} and r.best["qa"].format == fmt


@pytest.mark.parametrize("fmt", ["recap", "tags"])
def test_gradsum_keeps_the_start_format(fmt):
    from prompthone.optimize.gradsum import GradSum
    from test_gradsum import QA, Proposer, make_setup, run

    program = QA()
    program.answer.format = fmt
    r = run(GradSum(iterations=2, minibatch_size=8, edits_per_prompt=2), make_setup(Proposer(), program=program))
    assert len({t.candidate["answer"].instruction for t in r.trials}) > 1  # it did edit
    assert {t.candidate["answer"].format for t in r.trials} == {fmt} and r.best["answer"].format == fmt


def test_parity_program_starts_in_the_legacy_format():
    """The golden footprints above assume the world's start renders as it did before formats."""
    assert make_setup()[0].program.classify.format == "labels"


# --------------------------------------------------------------------------- what a run leaves


def tags_math_responder(body: dict) -> str:
    """The fake GSM8K server of runlib, whose task model is right only in the `tags` format."""
    from runlib import mipro_math_responder

    system, user = body["messages"][0]["content"], body["messages"][-1]["content"]
    if "Write a new instruction" in user or system.startswith("You are") or "observations" in user:
        return mipro_math_responder(body)
    numbers = re.findall(r"\d+", user)
    if "Inputs, each inside its tags" in system and numbers:
        return f"<reasoning>done</reasoning>\n<answer>{numbers[0]}</answer>"
    if "source code" in user or "role of the step" in user:
        return mipro_math_responder(body)
    return "Reasoning: done.\nAnswer: 0"


def test_summary_prompts_report_and_exports_say_which_format_won(tmp_path, monkeypatch):
    from prompthone.lm import run_sync
    from prompthone.report.html import write_report
    from prompthone.runs.export import messages_document
    from prompthone.runs.runner import run_optimization
    from prompthone.runs.spec import RunSpec
    from prompthone.testing.fake_openai_server import FakeOpenAIServer
    from runlib import write_fake_gsm8k

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    settings = {"num_candidates": 2, "num_trials": 6, "minibatch_size": 5, "summary_batches": 1,
                "max_bootstrapped_demos": 1, "max_labeled_demos": 1, "search_formats": ["tags"]}  # fmt: skip
    with FakeOpenAIServer(latency_ms=1, responder=tags_math_responder) as url:
        spec = RunSpec(task="gsm8k", optimizer="mipro", model=f"openai/fake@{url}", settings=settings, n_train=6,
                       n_val=10, n_test=10, data_root=str(tmp_path / "data"), concurrency=4, max_tokens=32)  # fmt: skip
        out = run_sync(run_optimization(spec, out_dir=tmp_path / "runs"))
    assert out.result.best["solve"].format == "tags" and out.final_test.mean == 1.0
    summary = json.loads((out.run_dir / "summary.json").read_text())
    assert summary["prompt_formats"] == {
        "task_model": "module",
        "start": {"solve": "labels"},
        "best": {"solve": "tags"},
    }
    assert summary["settings"]["search_formats"] == ["tags"]
    text = (out.run_dir / "best_prompts.txt").read_text()
    assert text.startswith("=== module: solve (prompt format: tags) ===") and "<question>" in text
    html = write_report(out.run_dir).read_text()
    assert "Prompt format: <code>tags</code> (the start's was <code>labels</code>)" in html
    doc = messages_document(get_task("gsm8k").make_program(None), out.result.best)
    assert doc["modules"]["solve"]["prompt_format"] == "tags"


def two_stage_format_lm(req: Request) -> str:
    """TwoStage (test_proposers.py) whose answer step is right only in the `tags` format, not the one it
    starts in (from a good query); the query step writes the same query in every format. Each step replies
    in the format its prompt asks for."""
    from format_world import number_of

    system = req.messages[0][1]
    n = number_of(req)
    if "search" in system.lower() and "context" not in system.lower():
        return write_reply(system, {"search_query": f"{'bad' if n % 3 == 0 else 'good'} {n}"})
    right = "even" if n % 2 == 0 else "odd"
    ok = request_format(req) == "tags" and "good" in req.messages[-1][1]
    return write_reply(system, {"answer": right if ok else "maybe"})


def test_each_module_of_a_pipeline_has_its_own_format_variable(tmp_path):
    from test_proposers import TwoStage

    storage = str(tmp_path / "s.sqlite")
    setup, _, _ = make_setup(task=two_stage_format_lm, program=TwoStage(), n_train=12, n_val=20)
    r = asyncio.run(MIPRO(minibatch_size=10, num_trials=12, search_formats=True, storage=storage).optimize(setup))
    study = optuna.load_study(study_name=r.info["study"], storage=f"sqlite:///{storage}")
    assert {"query::format", "answer::format"} <= set(study.trials[0].params)
    assert len({t.params["query::format"] for t in study.trials}) > 1
    assert setup.program.answer.format != "tags"
    assert r.best["answer"].format == "tags" and r.best_score > r.start_score
