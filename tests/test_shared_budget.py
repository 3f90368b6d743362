"""A run's budget held by its PostgreSQL store (`SharedBudget`, `ph_budget`): several processes spending one
budget stop together at its limit, a resumed run keeps counting, and a whole run on a server store stops at
exactly `max_lm_calls` paid calls in its search (a SQLite run still checks between trials, as before)."""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from pg_server import create_database, postgres_instance
from prompthone.lm import LM, BudgetExhausted, run_sync
from prompthone.lm.scripted import ScriptedBackend
from prompthone.optimize import Budget
from prompthone.runs.runner import run_optimization
from prompthone.runs.shared_budget import SharedBudget
from prompthone.store import RunStore
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import fake_gsm8k_env, mipro_math_responder
from runlib import fake_gsm8k_spec as gsm8k_spec

HERE = Path(__file__).resolve().parent
_names = itertools.count()


@pytest.fixture(scope="module")
def pg():
    with postgres_instance() as server:
        yield server


@pytest.fixture
def url(pg) -> str:
    return create_database(pg.url_template, f"budget_{os.getpid()}_{next(_names)}")


def five_words(req) -> str:
    return "one two three four five"


def spend(url: str, calls: int, *, concurrency: int = 4, delay_s: float = 0.005, prices=None, ready=None) -> dict:
    """One process's share: its own store engine and LM (behind the run's budget), `calls` paid calls
    of ten tokens each (a five-word prompt, a five-word reply); what was answered and what refused.
    `ready` is called once everything is set up, just before the first call."""
    store = RunStore(url)
    backend = ScriptedBackend(five_words, name="m", delay_s=delay_s)
    lm = LM(backend, cache=False, max_concurrency=concurrency)
    SharedBudget.join(store, Budget(prices=prices or {})).attach({"task": lm, "proposer": lm})
    if ready is not None:
        ready()

    async def all_calls() -> list:
        asks = [lm.complete([{"role": "user", "content": f"w{i} x y z v"}]) for i in range(calls)]
        return await asyncio.gather(*asks, return_exceptions=True)

    try:
        results = asyncio.run(all_calls())
    finally:
        store.close()
    errors = [r for r in results if isinstance(r, BaseException)]
    assert all(isinstance(e, BudgetExhausted) for e in errors), errors
    return {"answered": len(results) - len(errors), "sent": len(backend.requests),
            "limits": sorted({e.limit for e in errors})}  # fmt: skip


def in_threads(url: str, n: int, calls: int, **kw) -> list[dict]:
    out: list[dict] = [{} for _ in range(n)]

    def one(i: int) -> None:
        out[i] = spend(url, calls, **kw)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def leader(url: str, **limits) -> SharedBudget:
    budget = SharedBudget.open(RunStore(url), Budget(**limits))
    budget.begin()
    return budget


# -- processes sharing one budget ---------------------------------------------------------------------------
def test_two_processes_with_their_own_engines_reserve_exactly_max_lm_calls_together(url):
    budget = leader(url, max_lm_calls=37)
    shares = in_threads(url, 2, 40)
    assert sum(s["answered"] for s in shares) == sum(s["sent"] for s in shares) == 37
    assert all(s["limits"] == ["lm_calls"] for s in shares)  # each asked more than the budget: both stopped
    assert budget.spent()["lm_calls"] == 37
    with pytest.raises(BudgetExhausted, match=r"37 of 37 paid LM calls \(counted over every process"):
        budget.check()


SUBPROCESS = textwrap.dedent(
    """
    import json, sys
    from test_shared_budget import spend

    def ready():  # say so, then wait for the start signal
        print("ready", flush=True)
        sys.stdin.readline()

    print(json.dumps(spend(sys.argv[1], int(sys.argv[2]), ready=ready)))
    """
)


def test_real_processes_and_this_one_reserve_exactly_max_lm_calls_together(url):
    budget = leader(url, max_lm_calls=90)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE.parent / "src"), str(HERE)])}
    procs = [subprocess.Popen([sys.executable, "-c", SUBPROCESS, url, "100"], env=env, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True) for _ in range(2)]  # fmt: skip

    def start_together() -> None:
        for p in procs:
            assert p.stdout.readline().strip() == "ready"
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()

    here = spend(url, 100, ready=start_together)  # each process asks more than the whole budget
    shares = [here]
    for p in procs:
        out, _ = p.communicate(timeout=120)
        assert p.returncode == 0
        shares.append(json.loads(out))
    assert sum(s["answered"] for s in shares) == sum(s["sent"] for s in shares) == 90
    assert all(s["answered"] > 0 and s["limits"] == ["lm_calls"] for s in shares), shares
    assert budget.spent()["lm_calls"] == 90


@pytest.mark.parametrize(
    ("limit", "limits", "prices"),
    [("tokens", {"max_tokens": 395}, None), ("cost", {"max_cost_usd": 39.5}, {"scripted/m": (1e5, 1e5)})],
)
def test_token_and_cost_limits_stop_every_process_within_its_call_in_flight(url, limit, limits, prices):
    """Ten tokens a call (a dollar at these prices): the limit is crossed at 40 calls; each process may
    have one more call in flight by then, whose tokens were not counted yet when it was let through."""
    budget = leader(url, **limits, prices=prices or {})
    shares = in_threads(url, 2, 60, concurrency=1, prices=prices)
    answered = sum(s["answered"] for s in shares)
    assert 40 <= answered <= 39 + 2
    assert all(s["limits"] == [limit] for s in shares)
    spent = budget.spent()
    assert spent["lm_calls"] == answered and spent["tokens"] == 10 * answered
    assert spent["cost_usd"] == pytest.approx(answered if prices else 0.0)


def test_wall_time_counts_from_the_search_s_start_in_every_process(url):
    budget = leader(url, max_wall_s=1.0)
    assert spend(url, 3)["answered"] == 3
    time.sleep(1.1)
    assert spend(url, 3) == {"answered": 0, "sent": 0, "limits": ["wall_time"]}
    with pytest.raises(BudgetExhausted) as exc:
        budget.check()
    assert exc.value.limit == "wall_time"


def test_calls_are_neither_gated_nor_counted_outside_the_search(url):
    budget = SharedBudget.open(RunStore(url), Budget(max_lm_calls=2))
    assert spend(url, 5)["answered"] == 5  # before begin(): scoring the start on test
    budget.begin()
    assert spend(url, 5)["answered"] == 2
    budget.end()
    assert spend(url, 5)["answered"] == 5  # after end(): scoring the result on test
    assert budget.spent()["lm_calls"] == 2


def test_a_resumed_run_keeps_the_counters_and_the_first_start(url):
    first = leader(url, max_lm_calls=10, max_wall_s=3600.0)
    assert spend(url, 4)["answered"] == 4
    started = first.row.read().started_at
    time.sleep(0.05)
    # the process was killed; a new leader (the resume) opens the same run's budget
    again = SharedBudget.open(RunStore(url), Budget(max_lm_calls=10, max_wall_s=3600.0))
    assert again.spent()["lm_calls"] == 4
    assert spend(url, 3)["answered"] == 3  # off while the resumed run scores its start on test
    again.begin()
    assert again.row.read().started_at == started and again.spent()["wall_s"] >= 0.05
    assert spend(url, 10)["answered"] == 6
    assert again.spent()["lm_calls"] == 10


# -- whole runs -----------------------------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path, monkeypatch):
    with fake_gsm8k_env(tmp_path, monkeypatch, latency_ms=2) as found:
        yield found


def search_calls(run_dir: Path) -> list[dict]:
    """The paid calls a run made during its search: recorded between its `start` and `end` events."""
    store = RunStore(run_dir)
    events = store.events()
    start = next(e["ts"] for e in events if e["kind"] == "start")
    end = next(e["ts"] for e in events if e["kind"] == "end")
    return [c for c in store.lm_calls() if not c["cached"] and start <= c["ts"] <= end]


@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_a_run_stopped_by_max_lm_calls_overshoots_by_a_trial_only_on_sqlite(env, url, where):
    """The search scores the start on validation (10 calls), then minibatches of 4 calls, checking the
    budget between them: with a limit of 12, a SQLite run sees 10 < 12 and scores a whole minibatch
    (14 calls); a run on a server store is refused its 13th call, inside that minibatch."""
    tmp, model, _ = env
    spec = gsm8k_spec(model, tmp / "data", budget=Budget(max_lm_calls=12))
    out = run_sync(run_optimization(spec, out_dir=tmp / "runs", store_url=url if where == "postgresql" else None))
    assert out.result.stopped_by == "lm_calls"
    paid = search_calls(out.run_dir)
    assert len(paid) == (12 if where == "postgresql" else 14)
    assert out.final_test.n == 10 and out.final_test.n_errors == 0  # the test split is scored whole, unbounded
    assert RunStore(out.run_dir).run_row()["status"] == "completed"


MIPRO = {"num_candidates": 3, "num_trials": 8, "minibatch_size": 5, "full_eval_every": 3, "summary_batches": 1,
         "max_bootstrapped_demos": 2, "max_labeled_demos": 2, "teacher_labeled": 1}  # fmt: skip


@pytest.mark.parametrize("limit", [6, 25, 45])
def test_a_mipro_run_on_a_server_store_pays_at_most_max_lm_calls_in_its_search(tmp_path, monkeypatch, url, limit):
    """Bootstrapping (teacher), proposals (proposer) and trials (task) all reserve their calls; wherever the
    limit falls, the run stops cleanly: no trial failed, no example errored, the study left resumable."""
    from runlib import write_fake_gsm8k

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer(latency_ms=1, responder=mipro_math_responder) as model:
        spec = replace(gsm8k_spec(model, tmp_path / "data", budget=Budget(max_lm_calls=limit)),
                       optimizer="mipro", settings=MIPRO, n_train=8)  # fmt: skip
        out = run_sync(run_optimization(spec, out_dir=tmp_path / "runs", store_url=url))
    assert out.result.stopped_by == "lm_calls"
    paid = search_calls(out.run_dir)
    assert len(paid) == limit
    kinds = [e["kind"] for e in RunStore(out.run_dir).events()]
    assert "trial_failed" not in kinds and "full_eval_failed" not in kinds
    assert all(e["data"].get("errors", 0) == 0 for e in RunStore(out.run_dir).events() if e["kind"] == "bootstrap")
    assert out.final_test.n_errors == 0


def test_a_resumed_run_on_a_server_store_spends_only_what_its_budget_has_left(tmp_path, monkeypatch, url):
    """The first attempt spent the whole budget; the resume replays the search from its caches, is refused
    the first call it would pay for, and stops at the same limit, having bought nothing."""
    from runlib import write_fake_gsm8k

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    server = FakeOpenAIServer(latency_ms=1, responder=mipro_math_responder)
    with server as model:
        spec = replace(gsm8k_spec(model, tmp_path / "data", budget=Budget(max_lm_calls=25)),
                       optimizer="mipro", settings=MIPRO, n_train=8)  # fmt: skip
        first = run_sync(run_optimization(spec, out_dir=tmp_path / "runs", store_url=url))
        bought = server.requests_received
        again = run_sync(run_optimization(resume=first.run_dir))
        assert server.requests_received == bought
    assert first.result.stopped_by == again.result.stopped_by == "lm_calls"
    assert again.result.best == first.result.best
    assert SharedBudget.join(RunStore(url), Budget()).spent()["lm_calls"] == 25


def test_reservations_wait_for_a_server_away_for_a_moment_and_the_count_stays_exact(pg, url):
    """The server stops for two seconds while a process spends: its reservations are retried (as the
    store's writes are) and the run's count neither loses nor invents calls beyond a dropped commit."""
    budget = leader(url, max_lm_calls=30)

    def outage() -> None:
        time.sleep(0.1)
        pg.stop("fast")
        time.sleep(2.0)
        pg.start()

    away = threading.Thread(target=outage)
    t0 = time.monotonic()
    away.start()
    share = spend(url, 40, concurrency=1, delay_s=0.02)  # 0.8 s of calls, if the server stayed
    away.join()
    assert time.monotonic() - t0 > 2.0  # it waited for the server
    assert share["limits"] == ["lm_calls"]
    assert budget.spent()["lm_calls"] == 30
    assert 29 <= share["answered"] == share["sent"] <= 30  # a reservation whose commit's answer was lost counts
