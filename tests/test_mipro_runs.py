"""MIPRO through `prompthone optimize`'s runner against the fake OpenAI server: the study lives in the
run's SQLite file, a run killed with SIGKILL at several moments resumes to the uninterrupted result
without paying an LM call twice, and several trials in flight share one bound on requests."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest

from prompthone.lm import run_sync
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunSpec
from prompthone.store import RunStore
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import mipro_math_responder, run_dir_once, write_fake_gsm8k

HERE = Path(__file__).resolve().parent

#: small, but every phase is there: bootstrap, data summary, program description, proposals, minibatch
#: trials (4 in flight: the HTTP backend serves concurrent requests), full evaluations, the final one
SETTINGS = {
    "num_candidates": 3,
    "num_trials": 8,
    "minibatch_size": 5,
    "full_eval_every": 3,
    "summary_batches": 1,
    "max_bootstrapped_demos": 2,
    "max_labeled_demos": 2,
    "teacher_labeled": 1,
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp_path / "cache" / "shared.sqlite"))
    srv = FakeOpenAIServer(latency_ms=5, responder=mipro_math_responder)
    with srv as url:
        yield tmp_path, url, srv


def spec_kwargs(url: str, root: Path, concurrency: int = 4) -> dict:
    return dict(
        task="gsm8k",
        optimizer="mipro",
        model=f"openai/fake@{url}",
        settings=SETTINGS,
        n_train=8,
        n_val=10,
        n_test=10,
        data_root=str(root),
        concurrency=concurrency,
        max_tokens=32,
    )


def _calls(run_dir: Path) -> list[tuple[str, int]]:
    con = sqlite3.connect(run_dir / "run.sqlite")
    try:
        return con.execute("SELECT role, cached FROM ph_lm_calls ORDER BY id").fetchall()
    finally:
        con.close()


def _paid(run_dir: Path) -> int:
    return sum(1 for _, cached in _calls(run_dir) if not cached)


def proposals(run_dir: Path) -> list[str]:
    """The run's `proposal` events as a multiset, without `cached` (a replayed call is served from the cache)."""
    events = [e["data"] for e in RunStore(run_dir).events() if e["kind"] == "proposal"]
    return sorted(json.dumps({k: v for k, v in d.items() if k != "cached"}, sort_keys=True) for d in events)


def trail(out) -> list[tuple[str, float, bool]]:
    return [(t.candidate.hash, round(t.score, 9), t.full) for t in out.result.trials]


@pytest.fixture
def reference(env):
    tmp, url, _ = env
    out = run_sync(run_optimization(RunSpec(**spec_kwargs(url, tmp / "data")), out_dir=tmp / "ref"))
    return out


def test_the_study_lives_in_the_runs_sqlite_file(env, reference):
    out = reference
    url = RunStore(out.run_dir).url
    (summary,) = optuna.get_all_study_summaries(storage=url)
    assert summary.study_name == out.result.info["study"]
    study = optuna.load_study(study_name=summary.study_name, storage=url)
    assert len(study.trials) == SETTINGS["num_trials"] and "pool" in study.user_attrs
    assert out.result.info["plan"]["parallel_trials"] == 4  # trials in flight: the fake server takes many
    # the run exercised every phase the kill moments below aim at
    roles = [r for r, _ in _calls(out.run_dir)]
    assert {"task", "teacher", "proposer"} <= set(roles)
    assert out.result.info["bootstrap"]["passed"] > 0
    assert out.final_test.mean > out.start_test.mean  # the fake proposer's "carefully" instruction was found


def _kill_points(reference_dir: Path) -> dict[str, int]:
    """Paid-call counts at which to kill: while scoring the start on test, in the middle of the
    proposals (after grounding), and in the middle of the search."""
    roles = [r for r, cached in _calls(reference_dir) if not cached]
    first_proposer = roles.index("proposer")
    last_proposer = len(roles) - 1 - roles[::-1].index("proposer")
    return {
        "start-test": 3,
        "proposals": (first_proposer + last_proposer) // 2 + 1,
        "search": (last_proposer + len(roles)) // 2,
    }


@pytest.mark.parametrize("moment", ["start-test", "proposals", "search"])
def test_a_mipro_run_killed_with_sigkill_resumes_to_the_same_result_without_paying_twice(
    env, reference, moment, monkeypatch
):
    tmp, url, srv = env
    reference_paid = _paid(reference.run_dir)
    assert srv.requests_received == reference_paid
    kill_after = _kill_points(reference.run_dir)[moment]
    concurrency = 2  # the killed run has at most 2 requests in flight
    # a fresh shared cache, or the killed run would replay the reference run for free
    fresh = {"PROMPTHONE_CACHE_DIR": str(tmp / "cache2"), "PROMPTHONE_RESPONSE_CACHE": str(tmp / "cache2" / "r.sqlite")}
    script = (
        "import runlib; from pathlib import Path; from prompthone.lm import run_sync;"
        "from prompthone.runs.runner import run_optimization; from prompthone.runs.spec import RunSpec;"
        f"s = RunSpec(**{spec_kwargs(url, tmp / 'data', concurrency=concurrency)!r});"
        f"run_sync(run_optimization(s, out_dir=Path({str(tmp / 'killed')!r})))"
    )
    received_before = srv.requests_received
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])  # the code under test, also in the child
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, **fresh, "PYTHONPATH": path})
    try:
        run_dir = run_dir_once(proc, tmp / "killed", lambda d: _paid(d) >= kill_after, timeout=120)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    paid_before = _paid(run_dir)
    assert kill_after <= paid_before < reference_paid
    assert RunStore(run_dir).run_row()["status"] == "running"  # killed, not closed cleanly

    for k, v in fresh.items():
        monkeypatch.setenv(k, v)
    resumed = run_sync(run_optimization(resume=run_dir))
    assert resumed.result.best == reference.result.best
    assert trail(resumed) == trail(reference)
    assert resumed.result.best_score == reference.result.best_score
    assert resumed.final_test.mean == reference.final_test.mean
    # Every answer was bought once across kill and resume: the server saw the reference's requests
    # again, plus at most the requests in flight at the kill, whose answers died with the process.
    assert reference_paid <= srv.requests_received - received_before <= reference_paid + concurrency
    # The store's record: an answer is cached before its row is written, so one cached in the instant
    # before the kill is on record as a cache hit of the resumed run, never bought again.
    assert reference_paid - concurrency <= _paid(run_dir) <= reference_paid
    assert RunStore(run_dir).run_row()["status"] == "completed"
    # its events too: a resume keeps the killed attempt's (MIPRO restores its pool instead of proposing
    # again) and records the ones a replay emits again only once
    assert proposals(run_dir) == proposals(reference.run_dir) and len(proposals(run_dir)) >= 3
    # one study in the run's file: the resumed run continued the killed run's study, not a new one
    (study,) = optuna.get_all_study_summaries(storage=RunStore(run_dir).url)
    assert study.study_name == resumed.result.info["study"] == reference.result.info["study"]
    if moment == "search":
        assert resumed.result.info["resumed"] is True  # the study (pool, trials) was read back, not rebuilt


def test_ctrl_c_stops_the_cli_at_once_and_the_run_resumes_to_the_uninterrupted_result(env, reference, monkeypatch):
    """Ctrl-C (SIGINT) in the middle of the search ends `prompthone optimize` within seconds, with one line
    naming the run folder and the command that continues it, and no traceback; the run is marked
    interrupted (not failed), and resuming it gives the uninterrupted result without buying an answer twice."""
    tmp, _, _ = env
    reference_paid = _paid(reference.run_dir)
    kill_after = _kill_points(reference.run_dir)["search"]
    fresh = {"PROMPTHONE_CACHE_DIR": str(tmp / "cache2"), "PROMPTHONE_RESPONSE_CACHE": str(tmp / "cache2" / "r.sqlite")}
    path = os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")])
    slow = FakeOpenAIServer(latency_ms=60, responder=mipro_math_responder)  # seconds of calls: time to interrupt
    with slow as slow_url:
        kw = spec_kwargs(slow_url, tmp / "data", concurrency=2)
        cmd = [sys.executable, "-m", "prompthone", "optimize", "--task", "gsm8k", "--optimizer", "mipro",
               "--model", kw["model"], "--n-train", "8", "--n-val", "10", "--n-test", "10", "--concurrency", "2",
               "--data-root", kw["data_root"], "--max-tokens", "32", "--out", str(tmp / "cli"),
               *(a for k, v in SETTINGS.items() for a in ("--set", f"{k}={json.dumps(v)}"))]  # fmt: skip
        # a shell that starts a job in the background makes it ignore SIGINT; a terminal's Ctrl-C is not ignored
        proc = subprocess.Popen(cmd, env={**os.environ, **fresh, "PYTHONPATH": path}, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # fmt: skip
        run_dir = run_dir_once(proc, tmp / "cli", lambda d: _paid(d) >= kill_after, timeout=240)
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        out, err = proc.communicate(timeout=60)
        stopped_after = time.monotonic() - sent
        asked = slow.requests_received
        assert proc.returncode == 130, (out, err)
        assert stopped_after < 10  # the calls in flight are cancelled, not waited for
        assert "Traceback" not in out + err
        said = " ".join(err.split())
        assert f"interrupted: every answer the run paid for is kept in {run_dir}" in said
        assert f"continue it with `prompthone optimize --resume {run_dir}`" in said
        assert RunStore(run_dir).run_row()["status"] == "interrupted"
        paid_before = _paid(run_dir)
        assert kill_after <= paid_before < reference_paid

        for k, v in fresh.items():
            monkeypatch.setenv(k, v)
        resumed = run_sync(run_optimization(resume=run_dir))
        asked_in_all = slow.requests_received
    assert resumed.result.best == reference.result.best
    assert trail(resumed) == trail(reference)
    assert resumed.final_test.mean == reference.final_test.mean
    assert RunStore(run_dir).run_row()["status"] == "completed"
    # what was bought before Ctrl-C was kept: across both, the server answered the reference's calls and at
    # most the ones in flight at the interrupt (2), whose answers were cancelled
    assert asked <= paid_before + 2
    assert reference_paid <= asked_in_all <= reference_paid + 2


def test_concurrency_is_one_bound_on_requests_for_all_trials_in_flight(tmp_path, monkeypatch):
    """`--concurrency 2` with four MIPRO trials in flight: the server never holds more than 2 of the
    run's requests at once. Each request stays at the server for its latency (40 ms), so 3 arrivals
    within 40 ms would mean 3 in flight."""
    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp_path / "cache" / "shared.sqlite"))
    arrivals: list[float] = []

    def responder(body: dict) -> str:
        arrivals.append(time.monotonic())
        return mipro_math_responder(body)

    latency = 0.040
    with FakeOpenAIServer(latency_ms=latency * 1000, responder=responder) as url:
        kw = spec_kwargs(url, tmp_path / "data", concurrency=2)
        kw["settings"] = {**SETTINGS, "num_trials": 4, "ground_dataset": False, "ground_program": False}
        out = run_sync(run_optimization(RunSpec(**kw), out_dir=tmp_path / "runs"))
    assert out.result.info["plan"]["parallel_trials"] == 4
    assert len(arrivals) > 20
    most = max(sum(1 for b in arrivals if a <= b < a + latency) for a in arrivals)
    assert most <= 2
