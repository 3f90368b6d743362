"""A run store on a real PostgreSQL server, faults included: a password in the URL, a database that
already holds a run, a server that goes away mid-run, a wrong port, database or password, an unreachable
store among the runs listed, and the events a resume must keep (on SQLite too)."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, make_url, text
from typer.testing import CliRunner

from pg_server import create_database, postgres_instance
from prompthone import sqlurl
from prompthone.cli.main import app
from prompthone.lm import run_sync
from prompthone.report import write_report
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunSpec
from prompthone.sqlurl import StoreUnavailableError, safe_url
from prompthone.store import RunStore, point_to_store
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import careful_math_responder, mipro_math_responder, write_fake_gsm8k

PASSWORD = "Pw-9f2c7e1b"  # the role's real password: a run with it in the URL connects with it

#: MIPRO, small but with every phase: bootstrap, grounding, proposals, minibatch trials, full evaluations
MIPRO = {"num_candidates": 3, "num_trials": 8, "minibatch_size": 5, "full_eval_every": 3, "summary_batches": 1,
         "max_bootstrapped_demos": 2, "max_labeled_demos": 2, "teacher_labeled": 1}  # fmt: skip


@pytest.fixture(scope="module")
def pg():
    with postgres_instance(role_password=PASSWORD) as server:
        yield server


class Requests:
    """The fake model server's responder, counting requests and firing `hook` once at request `at`."""

    def __init__(self, responder, at: int | None = None, hook=None) -> None:
        self.responder, self.at, self.hook, self.n = responder, at, hook, 0

    def __call__(self, body: dict) -> str:
        self.n += 1
        if self.n == self.at and self.hook is not None:
            self.hook()
        return self.responder(body)


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Messages on one line each, whatever the terminal: they are read back whole. Through COLUMNS, which
    the CLI's consoles read at each print: setting their `width` would be undone by setting it to the
    width of that moment, fixing it for every later test (a narrow `runs` table in test_store_faults)."""
    monkeypatch.setenv("COLUMNS", "1000")


@pytest.fixture
def data(tmp_path, monkeypatch):
    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp_path / "cache" / "shared.sqlite"))
    return tmp_path


def spec(url: str, root: Path, optimizer: str = "mipro") -> RunSpec:
    return RunSpec(task="gsm8k", optimizer=optimizer, model=f"openai/fake@{url}",
                   settings=MIPRO if optimizer == "mipro" else {}, n_train=8, n_val=10, n_test=10,
                   data_root=str(root / "data"), concurrency=4, max_tokens=32)  # fmt: skip


def cli_args(url: str, root: Path, store: str, optimizer: str = "instruction-search") -> list[str]:
    args = ["optimize", "--task", "gsm8k", "--optimizer", optimizer, "--model", f"openai/fake@{url}"]
    args += ["--n-train", "8", "--n-val", "10", "--n-test", "10", "--data-root", str(root / "data")]
    args += ["--max-tokens", "32", "--out", str(root / "runs"), "--store", store]
    if optimizer == "mipro":
        for k, v in MIPRO.items():
            args += ["--set", f"{k}={v}"]
    return args


def database_text(url: str) -> str:
    """Every value of every table in the database, as one text (to search for what must not be there)."""
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            tables = c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars().all()
            rows = [str(r) for t in tables for r in c.execute(text(f'SELECT * FROM "{t}"')).all()]
    finally:
        engine.dispose()
    return "\n".join(rows)


def error_message(output: str) -> str:
    """The one `error:` message the command ended with (the terminal may wrap it), after no traceback."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    assert "Traceback" not in output, output
    starts = [i for i, line in enumerate(lines) if line.startswith("error:")]
    assert len(starts) == 1, output
    return " ".join(lines[starts[0] :])


# -- 1. a password in the URL ------------------------------------------------------------------------------
def test_a_password_in_the_store_url_reaches_no_event_config_report_or_log(data, pg, caplog, monkeypatch):
    """MIPRO's plan event used to carry the storage URL as given, password and all, into the store and
    from there into the shareable report."""
    caplog.set_level(logging.DEBUG)
    create_database(pg.url_template, "secret", owner=pg.PASSWORD_ROLE)
    url = pg.password_url("secret", PASSWORD)
    with FakeOpenAIServer(latency_ms=1, responder=mipro_math_responder) as model:
        out = run_sync(run_optimization(spec(model, data), out_dir=data / "runs", store_url=url))
    store = RunStore(url)
    plan = next(e["data"] for e in store.events() if e["data"].get("stage") == "plan")
    assert plan["storage"] == safe_url(url) and plan["storage"].startswith("postgresql+psycopg://alice@")
    assert PASSWORD not in database_text(url)  # events, config, result, Optuna's study: all of it
    # the folder keeps no password: without one from the environment, one line says where to give it
    monkeypatch.delenv("PGPASSWORD", raising=False)
    refused = CliRunner().invoke(app, ["report", str(out.run_dir)])
    assert refused.exit_code == 1 and "PGPASSWORD" in error_message(refused.output)
    monkeypatch.setenv("PGPASSWORD", PASSWORD)
    report = write_report(out.run_dir).read_text()
    assert "alice@" in report and PASSWORD not in report  # the URL is shown, without its password
    for f in out.run_dir.iterdir():
        if f.suffix in (".json", ".txt", ".html"):
            assert PASSWORD not in f.read_text(), f
    assert PASSWORD not in caplog.text


def test_a_url_setting_is_recorded_without_its_password():
    run = RunSpec(task="gsm8k", optimizer="mipro", settings={"storage": f"postgresql://bob:{PASSWORD}@db/x", "k": 1})
    assert run.to_config()["settings"] == {"storage": "postgresql://bob@db/x", "k": 1}
    shown = safe_url(f"postgresql+psycopg://bob:{PASSWORD}@h:5/d?host=/s")
    assert make_url(shown) == make_url("postgresql+psycopg://bob@h:5/d?host=/s") and PASSWORD not in shown
    assert safe_url("runs/x/optuna.sqlite") == "runs/x/optuna.sqlite"


# -- 2. one run per database --------------------------------------------------------------------------------
def test_set_status_and_restart_touch_only_their_own_run(pg):
    """A database an older prompthone let two runs into: ending one run leaves the other as it was."""
    url = create_database(pg.url_template, "tworuns")
    first, second = RunStore(url), RunStore(url)
    first.create_run("first", {"task": "a"}, {})
    first.set_status("completed", {"final_test": {"score": 0.5}})
    second.create_run("second", {"task": "b"}, {})
    second.set_status("failed", {"error": "boom"})
    second.restart()
    engine = create_engine(url)
    with engine.connect() as c:
        rows = {r.id: (r.status, r.result) for r in c.execute(text("SELECT id, status, result FROM ph_run")).all()}
    engine.dispose()
    assert rows == {"first": ("completed", json.dumps({"final_test": {"score": 0.5}})),
                    "second": ("running", json.dumps({"error": "boom"}))}  # fmt: skip


def test_a_new_run_is_refused_a_database_that_already_holds_one(data, pg):
    url = create_database(pg.url_template, "taken")
    with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as model:
        first = CliRunner().invoke(app, cli_args(model, data, url))
        assert first.exit_code == 0, first.output
        (run_dir,) = list((data / "runs").iterdir())
        before = RunStore(url).run_row()
        second = CliRunner().invoke(app, cli_args(model, data, url))
    assert second.exit_code == 1
    line = error_message(second.output)
    assert "/taken" in line and "not empty" in line and "--resume" in line
    assert list((data / "runs").iterdir()) == [run_dir]  # no second folder
    after = RunStore(url).run_row()
    assert after == before and after["status"] == "completed"


# -- 3. the server goes away for a while --------------------------------------------------------------------
def outage(pg, seconds: float, events: dict) -> threading.Thread:
    def run() -> None:
        pg.stop("fast")
        events["down"] = time.monotonic()
        if seconds is not None:
            time.sleep(seconds)
            pg.start()
            events["up"] = time.monotonic()

    return threading.Thread(target=run, daemon=True)


def test_a_server_away_for_seconds_pauses_the_run_which_then_completes(data, pg, caplog):
    """Stopped for 3 s in the middle of MIPRO's search: store writes and Optuna's calls wait for it."""
    url = create_database(pg.url_template, "outage")
    seen: dict[str, float] = {}
    thread = None

    def stop() -> None:
        nonlocal thread
        thread = outage(pg, 3.0, seen)
        thread.start()

    with FakeOpenAIServer(latency_ms=5, responder=Requests(mipro_math_responder, at=60, hook=stop)) as model:
        out = run_sync(run_optimization(spec(model, data), out_dir=data / "runs", store_url=url))
        finished = time.monotonic()
    thread.join(30)
    assert "down" in seen and "up" in seen and seen["up"] < finished  # the outage happened during the run
    assert "is unreachable" in caplog.text and "retrying" in caplog.text  # and the run waited for it
    row = RunStore(url).run_row()
    assert row["status"] == "completed" and row["result"]["best_candidate"] == out.result.best.hash
    assert len(RunStore(url).trials()) == len(out.result.trials)
    assert out.final_test.mean > out.start_test.mean


def test_a_server_away_too_long_stops_the_run_with_one_line_and_resume_finishes_it(data, pg, monkeypatch):
    url = create_database(pg.url_template, "longoutage")
    monkeypatch.setattr(sqlurl, "RETRY_SECONDS", 1.0)
    seen: dict[str, float] = {}
    stays_down = Requests(mipro_math_responder, at=60, hook=lambda: outage(pg, None, seen).start())
    with FakeOpenAIServer(latency_ms=5, responder=stays_down) as model:
        res = CliRunner().invoke(app, cli_args(model, data, url, optimizer="mipro"))
        assert "down" in seen
        assert res.exit_code == 1
        line = error_message(res.output)
        assert "unreachable" in line and "--resume" in line and "longoutage" in line
        (run_dir,) = list((data / "runs").iterdir())
        pg.start()
        again = CliRunner().invoke(app, ["optimize", "--resume", str(run_dir)])
    assert again.exit_code == 0, again.output
    assert RunStore(run_dir).run_row()["status"] == "completed"


# -- 4. a wrong port, database or password ------------------------------------------------------------------
@pytest.mark.parametrize("wrong", ["port", "database", "password"])
def test_a_store_that_cannot_be_reached_is_one_line_before_any_folder_is_made(data, pg, wrong):
    create_database(pg.url_template, f"right_{wrong}", owner=pg.PASSWORD_ROLE)
    url = {
        "port": pg.password_url(f"right_{wrong}", PASSWORD).replace(f"port={pg.port}", f"port={pg.port + 1}"),
        "database": pg.password_url("no_such_db", PASSWORD),
        "password": pg.password_url(f"right_{wrong}", "not-the-pw"),
    }[wrong]
    res = CliRunner().invoke(app, cli_args("http://127.0.0.1:9/v1", data, url))
    assert res.exit_code == 1
    line = error_message(res.output)
    assert "cannot connect to the run store" in line and f"{pg.sock}:" in line
    assert PASSWORD not in line and "not-the-pw" not in line
    assert not (data / "runs").exists()


def test_a_store_url_that_is_not_a_url_is_one_line(data):
    res = CliRunner().invoke(app, cli_args("http://127.0.0.1:9/v1", data, f"postgresql://u:{PASSWORD}@h:notaport/d"))
    assert res.exit_code == 1
    assert "--store" in error_message(res.output) and PASSWORD not in res.output
    assert not (data / "runs").exists()


# -- 5. runs lists what it can reach ------------------------------------------------------------------------
def test_runs_lists_the_runs_it_can_reach_and_marks_the_one_it_cannot(data, pg):
    with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as model:
        out = run_sync(run_optimization(spec(model, data, "instruction-search"), out_dir=data / "runs"))
    gone = data / "runs" / "instruction-search-gsm8k-gone"
    point_to_store(gone, pg.url_template.format(db="dropped_since"))
    t0 = time.monotonic()
    res = CliRunner().invoke(app, ["runs", "--out", str(data / "runs")])
    assert res.exit_code == 0, res.output
    assert time.monotonic() - t0 < 10  # reported, not waited for
    assert "Traceback" not in res.output
    assert out.run_dir.name[:20] in res.output and "1.000" in res.output
    assert "unreachable" in res.output and "dropped_since" in res.output


def test_show_of_a_run_whose_server_is_unreachable_is_one_line(data, pg, monkeypatch):
    monkeypatch.setattr(sqlurl, "RETRY_SECONDS", 0.5)
    gone = data / "runs" / "gone"
    point_to_store(gone, pg.url_template.format(db="dropped_too"))
    res = CliRunner().invoke(app, ["show", str(gone)])
    assert res.exit_code == 1
    assert "dropped_too" in error_message(res.output)
    with pytest.raises(StoreUnavailableError, match="dropped_too"):
        RunStore(gone)


# -- 6. events survive a resume -----------------------------------------------------------------------------
@pytest.mark.parametrize("optimizer", ["mipro", "instruction-search"])
@pytest.mark.parametrize("where", ["sqlite", "postgresql"])
def test_a_resume_keeps_every_event_of_the_run(data, pg, where, optimizer):
    """MIPRO restores its pool from its study instead of proposing again, so a resume that deleted the
    events lost the proposals (27 events -> 3); an optimizer that replays must not record them twice."""
    url = create_database(pg.url_template, f"events_{optimizer.replace('-', '_')}") if where == "postgresql" else None
    with FakeOpenAIServer(latency_ms=1, responder=mipro_math_responder) as model:
        out = run_sync(run_optimization(spec(model, data, optimizer), out_dir=data / "runs", store_url=url))
        before = RunStore(out.run_dir).events()
        resumed = run_sync(run_optimization(resume=out.run_dir))
    after = RunStore(out.run_dir).events()
    assert resumed.result.best == out.result.best
    assert after[: len(before)] == before
    added = [(e["kind"], e["data"]) for e in after[len(before) :]]
    if optimizer == "mipro":
        assert sum(e["kind"] == "proposal" for e in before) >= 3
        assert added == [("step", {**next(e["data"] for e in before if e["data"].get("stage") == "plan"),
                                   "resumed": True})]  # fmt: skip
    else:
        assert added == []


def test_a_trial_finished_by_the_attempt_whose_connection_dropped_is_not_finished_twice():
    """The commit reached the server but its reply did not: the retry finds the trial finished, which
    is the outcome asked for, not an error."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState
    from sqlalchemy.exc import OperationalError

    from prompthone.optimize.mipro.search import RetryingStorage

    class Inner:
        calls = 0

        def set_trial_state_values(self, trial_id, state, values=None):
            self.calls += 1
            if self.calls == 1:
                raise OperationalError("COMMIT", {}, Exception("server closed the connection unexpectedly"))
            raise UpdateFinishedTrialError(f"trial {trial_id} is already finished")

        def set_trial_user_attr(self, trial_id, key, value):
            raise UpdateFinishedTrialError(f"trial {trial_id} is already finished")

    storage = RetryingStorage(Inner(), "postgresql+psycopg://u@h/db")
    assert storage.set_trial_state_values(7, TrialState.COMPLETE, [0.5]) is True
    with pytest.raises(UpdateFinishedTrialError):  # no connection dropped: a real mistake, raised
        storage.set_trial_user_attr(7, "k", 1)
