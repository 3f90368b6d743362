"""Runs end to end through the store: files, rows, resume after SIGKILL without paying twice."""

from __future__ import annotations

import html
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import optuna
import pytest
from rich.console import Console
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.exc import OperationalError, ProgrammingError

from pg_server import create_database, postgres_server
from prompthone.lm import run_sync
from prompthone.optimize import Budget
from prompthone.program import Candidate
from prompthone.runs.roles import role_lms
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunSpec
from prompthone.store import RunStore, database_url
from prompthone.tasks import get_task
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import careful_math_responder, fake_gsm8k_env, run_dir_once, write_fake_gsm8k
from runlib import fake_gsm8k_spec as spec

HERE = Path(__file__).resolve().parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    with fake_gsm8k_env(tmp_path, monkeypatch, latency_ms=5) as found:
        yield found


def test_a_run_records_everything_and_leaves_readable_files(env):
    tmp, url, srv = env
    out = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "runs"))
    assert out.start_test.mean == 0.0 and out.final_test.mean == 1.0
    assert "carefully" in out.result.best["solve"].instruction
    for name in ("summary.json", "best_candidate.json", "best_prompts.txt", "run.sqlite"):
        assert (out.run_dir / name).is_file(), name
    store = RunStore(out.run_dir)
    row = store.run_row()
    assert row["status"] == "completed" and row["config"]["task"] == "gsm8k"
    assert row["manifest"]["data"]["test"]["n"] == 10 and row["manifest"]["packages"]["openai"]
    assert row["result"]["final_test"]["score"] == 1.0
    trials = store.trials()
    assert len(trials) == len(out.result.trials) == 1 + 5 + 2
    assert [t["full"] for t in trials] == [True] + [False] * 5 + [True, True]
    usage = {u["role"]: u for u in store.lm_usage()}
    assert usage["task"]["paid_calls"] == srv.requests_received
    # a person can read it with sqlite3 alone
    con = sqlite3.connect(out.run_dir / "run.sqlite")
    assert con.execute("SELECT count(*) FROM ph_trials WHERE full = 1").fetchone()[0] == 3
    assert con.execute("SELECT count(*) FROM responses").fetchone()[0] == srv.requests_received


def _paid(run_dir: Path) -> int:
    """Paid calls in the run's store, read without touching its schema (a live run may be creating it)."""
    engine = create_engine(database_url(run_dir))
    try:
        with engine.connect() as c:
            return c.execute(text("SELECT count(*) FROM ph_lm_calls WHERE cached = false")).scalar_one()
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL server of this module's own (Debian's package; `make system-deps` installs it)."""
    with postgres_server() as url_template:
        yield url_template


@pytest.mark.parametrize(
    ("kill_after_calls", "store"), [(3, "sqlite"), (25, "sqlite"), (55, "sqlite"), (25, "postgresql")]
)
def test_resume_after_sigkill_gives_the_uninterrupted_result_without_paying_twice(
    env, kill_after_calls, store, monkeypatch, request
):
    """Killed at several moments, a run resumes to the uninterrupted result; also with its store on a server."""
    tmp, url, srv = env
    store_url = None
    if store == "postgresql":  # with a password, which the run folder must not keep (the server trusts anyone)
        store_url = create_database(request.getfixturevalue("postgres"), "killed").replace(
            "postgres@", "postgres:s3cr3t@"
        )
    reference = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "ref"))
    reference_paid = _paid(reference.run_dir)
    assert srv.requests_received == reference_paid
    # the shared cache would make the second run free: give the killed run an empty one
    fresh = {"PROMPTHONE_CACHE_DIR": str(tmp / "cache2"), "PROMPTHONE_RESPONSE_CACHE": str(tmp / "cache2" / "r.sqlite")}
    env_vars = {**os.environ, **fresh, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])}
    script = (
        "import sys, runlib; from pathlib import Path; from prompthone.lm import run_sync;"
        "from prompthone.runs.runner import run_optimization; from prompthone.runs.spec import RunSpec;"
        f"s = RunSpec(task='gsm8k', optimizer='instruction-search', model='openai/fake@{url}', n_train=4, n_val=10,"
        f" n_test=10, data_root={str(tmp / 'data')!r}, concurrency=1, max_tokens=32);"
        f"run_sync(run_optimization(s, out_dir=Path({str(tmp / 'killed')!r}), store_url={store_url!r}))"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], env=env_vars)
    run_dir = run_dir_once(
        proc,
        tmp / "killed",
        lambda d: _paid(d) >= kill_after_calls,
        timeout=240,  # generous: the machine may be busy
        marker="run.sqlite" if store_url is None else "store.json",
        transient=(sqlite3.OperationalError, OperationalError, ProgrammingError),  # the store is being created
    )
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    paid_before = _paid(run_dir)
    assert RunStore(run_dir).run_row()["status"] == "running"  # killed, not closed cleanly

    for k, v in fresh.items():
        monkeypatch.setenv(k, v)
    resumed = run_sync(run_optimization(resume=run_dir))
    assert resumed.result.best == reference.result.best
    assert [t.score for t in resumed.result.trials] == [t.score for t in reference.result.trials]
    assert resumed.final_test.mean == reference.final_test.mean
    # Across kill and resume every answer was bought once: the server saw the reference's requests again,
    # plus at most the one request in flight at the kill (the killed run had one call at a time), whose
    # answer died with the process.
    assert 2 * reference_paid <= srv.requests_received <= 2 * reference_paid + 1
    # The store's record: an answer is cached before its row is written (so it is never bought twice);
    # a call whose answer was cached in the instant before the kill is on record as a cache hit.
    assert reference_paid - 1 <= _paid(run_dir) <= reference_paid
    assert paid_before < reference_paid
    assert RunStore(run_dir).run_row()["status"] == "completed"
    assert json.loads((run_dir / "summary.json").read_text())["best_candidate"] == reference.result.best.hash
    if store_url is not None:  # the folder names the server, which holds the run's caches too
        assert not (run_dir / "run.sqlite").exists() and not (run_dir / "cache.sqlite").exists()
        pointer = (run_dir / "store.json").read_text()
        assert "s3cr3t" not in pointer
        assert make_url(json.loads(pointer)["url"]) == make_url(store_url)._replace(password=None)


@pytest.mark.parametrize(
    ("limit", "budget"),
    [
        ("lm_calls", {"max_lm_calls": 12}),
        ("tokens", {"max_tokens": 600}),
        ("cost", {"max_cost_usd": 0.0005, "prices": {}}),
        ("wall_time", {"max_wall_s": 0.0}),
    ],
)
def test_each_budget_limit_stops_the_run_cleanly_with_the_best_so_far(env, limit, budget):
    from prompthone.optimize import Budget

    tmp, url, _ = env
    if limit == "cost":
        budget["prices"] = {"openai/fake": (20.0, 20.0)}  # USD per 1M tokens, keyed by provider/model
    s = spec(url, tmp / "data", budget=Budget(**budget))
    out = run_sync(run_optimization(s, out_dir=tmp / "runs"))
    assert out.result.stopped_by == limit
    full = [t for t in out.result.trials if t.full]
    assert len(out.result.trials) < 8  # the uninterrupted search scores 8 times
    if full:
        assert out.result.best == full[0].candidate and out.result.best_score == full[0].score
    else:
        assert out.result.best == Candidate.default(get_task("gsm8k").make_program(None))
    row = RunStore(out.run_dir).run_row()
    assert row["status"] == "completed" and row["result"]["stopped_by"] == limit
    assert any(e["kind"] == "budget" and e["data"]["limit"] == limit for e in RunStore(out.run_dir).events())


def test_progress_shows_trials_best_score_and_spend_against_budget(env):
    import io

    from rich.console import Console

    from prompthone.optimize import Budget
    from prompthone.runs.progress import LiveProgress

    tmp, url, _ = env
    buf = io.StringIO()
    console = Console(file=buf, width=200)
    s = spec(url, tmp / "data", budget=Budget(max_lm_calls=30))
    out = run_sync(run_optimization(s, out_dir=tmp / "runs", console=console))
    text = buf.getvalue()
    assert "trial   0: validation 0.000 (best 0.000)" in text
    assert "budget: budget reached" in text and "of 30 paid LM calls" in text
    assert f"final: test {out.final_test.mean:.3f}" in text
    line = LiveProgress(console, s.budget).line()
    assert re.search(r"\d+ calls / 30", line)


def test_a_judge_config_scores_with_the_judge_model_and_counts_it_apart(tmp_path, monkeypatch):
    """Criteria in words replace the task's metric; judge calls are paid, stored and counted as `judge`."""
    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))

    def responder(body: dict) -> str:
        user = body["messages"][-1]["content"]
        if "Output to judge:" not in user:
            return careful_math_responder(body)
        reference = re.search(r"Reference answer.*?:\n(.*?)\n", user, re.S).group(1)
        output = user.rsplit("Output to judge:", 1)[1]
        right = reference.strip() in re.findall(r"\d+", output)
        return f"Reasoning: compared with the reference.\nScore: {int(right)}"

    judge = {"task_description": "Solve a word problem.", "criteria": "1 if it matches the reference.",
             "reference_field": "answer", "output_fields": ["answer"]}  # fmt: skip
    with FakeOpenAIServer(latency_ms=1, responder=responder) as url:
        run = spec(url, tmp_path / "data", judge=judge, judge_model=f"openai/judge@{url}")
        out = run_sync(run_optimization(run, out_dir=tmp_path / "runs"))
    assert out.start_test.mean == 0.0 and out.final_test.mean == 1.0
    assert out.usage["judge"]["paid_calls"] > 0 and out.usage["task"]["paid_calls"] > 0
    usage = {u["role"]: u for u in RunStore(out.run_dir).lm_usage()}
    judged = out.usage["judge"]["paid_calls"] + 2 * 10  # the optimization's, plus start and final test
    assert usage["judge"]["paid_calls"] == judged
    summary = json.loads((out.run_dir / "summary.json").read_text())
    assert summary["metric"] == "judge" and summary["judge_model"] == f"openai/judge@{url}"
    assert RunStore(out.run_dir).run_row()["manifest"]["models"]["judge"]
    # a judge that fails the careless start everywhere is not flagged as lenient
    assert not [e for e in RunStore(out.run_dir).events() if e["kind"] == "warning"]


def test_a_judge_that_passes_the_start_everywhere_is_reported_before_the_budget_is_spent(tmp_path, monkeypatch):
    """The failure a 1.5B judge showed (a 1 for every output, wrong ones too) is said out loud: in the
    console, as a stored event, and in the report, not left to be guessed from a run with no gain."""
    from prompthone.report import write_report

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))

    def responder(body: dict) -> str:
        if "Output to judge:" in body["messages"][-1]["content"]:
            return "Reasoning: looks fine.\nScore: 1"
        return careful_math_responder(body)

    judge = {"task_description": "Solve a word problem.", "criteria": "1 if it matches the reference.",
             "reference_field": "answer", "output_fields": ["answer"]}  # fmt: skip
    console = Console(record=True, width=200)
    with FakeOpenAIServer(latency_ms=1, responder=responder) as url:
        run = spec(url, tmp_path / "data", judge=judge, judge_model=f"openai/judge@{url}")
        out = run_sync(run_optimization(run, out_dir=tmp_path / "runs", console=console))
    assert out.start_test.mean == 1.0  # the careless start's wrong answers, all passed by this judge
    assert "top score to 10 of the start's 10 judged outputs" in console.export_text()
    warnings = [e for e in RunStore(out.run_dir).events() if e["kind"] == "warning"]
    assert len(warnings) == 1 and warnings[0]["data"]["about"] == "judge"
    page = html.unescape(write_report(out.run_dir).read_text())
    assert "top score to 10 of the start's 10 judged outputs" in page


def test_a_store_on_postgresql_serves_reports_and_holds_the_optuna_study(env, postgres):
    """`store_url` puts the store on a server: commands given the run folder find it there, and MIPRO's
    Optuna study (which lives at the store's URL) persists in the same database."""
    from prompthone.optimize.mipro.search import open_study
    from prompthone.report import write_report

    tmp, url, srv = env
    store_url = create_database(postgres, "shared")
    out = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "runs", store_url=store_url))
    assert _paid(out.run_dir) == srv.requests_received
    page = write_report(out.run_dir).read_text()
    assert f"{out.final_test.mean:.3f}" in page and out.run_dir.name in page

    study = open_study(store_url, "mipro-test", seed=0)
    trial = study.ask({"instruction": optuna.distributions.CategoricalDistribution([0, 1, 2])})
    study.tell(trial, 0.5)
    again = open_study(store_url, "mipro-test", seed=0)  # what a resumed run does
    assert [t.value for t in again.trials] == [0.5] and again.trials[0].params == trial.params
    engine = create_engine(store_url)
    with engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM trials")).scalar_one() == 1  # Optuna's own table
        assert c.execute(text("SELECT status FROM ph_run")).scalar_one() == "completed"
    engine.dispose()


def test_cli_optimize_with_store_then_runs_and_resume_find_it(env, postgres):
    from typer.testing import CliRunner

    from prompthone.cli.main import app

    tmp, url, srv = env
    store_url = create_database(postgres, "cli")
    args = ["optimize", "--task", "gsm8k", "--optimizer", "instruction-search", "--model", f"openai/fake@{url}"]
    args += ["--n-train", "4", "--n-val", "10", "--n-test", "10", "--data-root", str(tmp / "data")]
    args += ["--max-tokens", "32", "--out", str(tmp / "runs"), "--store", store_url]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    (run_dir,) = [d for d in (tmp / "runs").iterdir() if d.is_dir()]
    assert (run_dir / "store.json").is_file() and not (run_dir / "run.sqlite").exists()
    listed = CliRunner().invoke(app, ["runs", "--out", str(tmp / "runs")])
    assert listed.exit_code == 0  # the row read from the server: status and final test score (narrow table)
    assert "complet" in listed.output and "1.000" in listed.output
    paid = srv.requests_received
    again = CliRunner().invoke(app, ["optimize", "--resume", str(run_dir)])
    assert again.exit_code == 0, again.output
    assert srv.requests_received == paid  # the resumed run replays from the caches in the server's database


def test_the_same_spec_runs_twice_and_each_run_counts_only_its_own_calls(env):
    """A spec is plain data: running it again (a script's loop, a benchmark's warm re-run) neither fails nor
    charges the second run with the first run's calls."""
    tmp, url, srv = env
    run = spec(url, tmp / "data", budget=Budget(max_lm_calls=60))
    first = run_sync(run_optimization(run, out_dir=tmp / "runs"))
    paid = srv.requests_received
    second = run_sync(run_optimization(run, out_dir=tmp / "runs"))  # the shared cache answers everything
    assert srv.requests_received == paid and second.result.best == first.result.best
    assert second.result.stopped_by == first.result.stopped_by
    assert run.to_config()["budget"]["max_lm_calls"] == 60


def test_roles_on_one_endpoint_share_one_bound_on_requests_in_flight(tmp_path):
    """The spec's concurrency bounds what each server sees, however many roles send to it."""
    one, other = "http://127.0.0.1:9/v1", "http://127.0.0.1:10/v1"
    run = RunSpec(
        task="gsm8k", optimizer="mipro", model=f"openai/task@{one}", proposer_model=f"openai/big@{one}",
        judge={"task_description": "t", "criteria": "c"}, judge_model=f"openai/judge@{other}", concurrency=5,
    )  # fmt: skip
    lms = role_lms(run, False)
    assert lms["task"].slots is lms["proposer"].slots is lms["teacher"].slots
    assert lms["judge"].slots is not lms["task"].slots
    assert {lm.max_concurrency for lm in lms.values()} == {5}
    local = role_lms(RunSpec(task="gsm8k", optimizer="mipro", concurrency=5), False)
    assert local["task"].slots is local["proposer"].slots and local["task"].max_concurrency == 1
