"""Workers on one run (issue 17): real processes (`prompthone optimize` as the leader, `prompthone worker`),
a real PostgreSQL server and the latency-simulating model server in its own process, answering trec-mini
with some skill. Processes are killed with SIGKILL and the database is stopped mid-run; each time the run
must complete with every trial recorded once and no answer bought twice (beyond the requests a killed
process had in flight)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

import prompthone
from pg_server import create_database, postgres_instance
from prompthone.cli.main import app
from prompthone.data.example import Example
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import ExactMatch
from prompthone.program import Candidate, Predict, Program
from prompthone.runs.spec import RunSpec
from prompthone.runs.splits import splits_for
from prompthone.runs.worker import Worker
from prompthone.store import RunStore
from prompthone.store.chunks import ChunkQueue, ChunkSpec, chunk_id
from prompthone.store.lock import RunLock
from prompthone.tasks import get_task
from prompthone.testing.fake_openai_server import FakeOpenAIServer, FakeOpenAIServerProcess, Fault

#: MIPRO, small: a few trials on minibatches, several in flight, every phase (bootstrap, proposals, full evals)
MIPRO = {"num_candidates": 4, "num_trials": 10, "minibatch_size": 5, "full_eval_every": 4, "summary_batches": 1,
         "max_bootstrapped_demos": 2, "max_labeled_demos": 2, "teacher_labeled": 1, "parallel_trials": 4}  # fmt: skip
#: requests one process may have in flight to the model server (the run's --concurrency)
CONCURRENCY = 4
SRC = str(Path(prompthone.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def pg():
    with postgres_instance() as server:
        yield server


@pytest.fixture
def model():
    server = FakeOpenAIServerProcess(latency_ms=60, task="trec-mini")
    server.start()
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def wide_terminal(monkeypatch):
    """Messages on one line each (see test_store_server.wide_terminal for why through COLUMNS)."""
    monkeypatch.setenv("COLUMNS", "1000")


def env(tmp: Path) -> dict[str, str]:
    """The subprocesses' environment: this checkout's package, this test's caches."""
    return dict(os.environ, PYTHONPATH=SRC, PROMPTHONE_CACHE_DIR=str(tmp / "cache"),
                PROMPTHONE_RESPONSE_CACHE=str(tmp / "cache" / "shared.sqlite"), COLUMNS="200")  # fmt: skip


def optimize_args(model_url: str, tmp: Path, store: str, *extra: str) -> list[str]:
    args = [sys.executable, "-m", "prompthone", "optimize", "--task", "trec-mini", "--optimizer", "mipro",
            "--model", f"openai/fake@{model_url}", "--n-train", "12", "--n-val", "10", "--n-test", "10",
            "--max-tokens", "32", "--concurrency", str(CONCURRENCY), "--out", str(tmp / "runs"),
            "--store", store]  # fmt: skip
    for k, v in MIPRO.items():
        args += ["--set", f"{k}={v}"]
    return [*args, *extra]


class Procs:
    """The test's processes, each writing to its own log; all stopped at the end, whatever happened."""

    def __init__(self, tmp: Path) -> None:
        self.tmp, self.procs = tmp, {}
        (tmp / "logs").mkdir(parents=True, exist_ok=True)

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        with (self.tmp / "logs" / f"{name}.log").open("w") as log:
            p = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env(self.tmp))
        self.procs[name] = p
        return p

    def worker(self, name: str, run: Path | str) -> subprocess.Popen:
        return self.start(name, [sys.executable, "-m", "prompthone", "worker", str(run)])

    def log(self, name: str) -> str:
        return (self.tmp / "logs" / f"{name}.log").read_text()

    def wait(self, name: str, timeout: float = 90) -> int:
        try:
            return self.procs[name].wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"{name} still runs after {timeout} s; its log:\n{self.log(name)[-3000:]}") from None

    def stop_all(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.fixture
def procs(tmp_path):
    p = Procs(tmp_path)
    yield p
    p.stop_all()


def wait_for(what: str, check, timeout: float = 60, every: float = 0.01):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def query(url: str, sql: str, **params) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(sql), params).all()]
    except Exception:
        return []  # not there yet (tables are made by the leader), or the server is away
    finally:
        engine.dispose()


def run_folder(tmp: Path) -> Path:
    return wait_for("the run folder", lambda: next((tmp / "runs").glob("*/store.json"), None), timeout=30).parent


def running(url: str) -> bool:
    return bool(query(url, "SELECT 1 FROM ph_run WHERE status = 'running'"))


def trials(url: str) -> list[tuple]:
    return query(url, 'SELECT idx, candidate, score, n, "full", worker FROM ph_trials ORDER BY idx')


def check_one_result(url: str) -> list[tuple]:
    """The finished run's record: completed, trials numbered 0..n-1 with no gap, every chunk done."""
    assert query(url, "SELECT status FROM ph_run") == [("completed",)]
    rows = trials(url)
    assert [r[0] for r in rows] == list(range(len(rows))) and len(rows) >= 8
    chunks = query(url, "SELECT status, done_by FROM ph_chunks")
    assert chunks and all(status == "done" and by for status, by in chunks), chunks
    return rows


def check_every_call_counted(run: Path, url: str) -> dict:
    """The summary counts every LM call the run's processes made, whoever made it, once."""
    summary = json.loads((run / "summary.json").read_text())
    counted = sum(u["calls"] for u in summary["usage_by_role"].values()) + summary["usage_test_scoring"]["calls"]
    assert counted == query(url, "SELECT count(*) FROM ph_lm_calls")[0][0]
    return summary


def paid_twice(model: FakeOpenAIServerProcess) -> int:
    stats = model.stats()
    return stats["requests_received"] - stats["distinct_requests"]


def me(pid: int) -> str:
    return f"{socket.gethostname()}:{pid}"


# -- 1. three workers, one killed mid-chunk ------------------------------------------------------------------
def test_three_workers_and_one_killed_mid_chunk_leave_one_complete_run(pg, model, procs, tmp_path):
    url = create_database(pg.url_template, "three")
    leader = procs.start("leader", optimize_args(model.base_url, tmp_path, url))
    run = run_folder(tmp_path)
    workers = {f"w{k}": procs.worker(f"w{k}", run) for k in range(3)}
    pids = {me(p.pid): name for name, p in workers.items()}

    def a_worker_mid_chunk():
        rows = query(url, "SELECT id, claimed_by FROM ph_chunks WHERE status = 'claimed'")
        return next(((cid, by) for cid, by in rows if by in pids), None)

    chunk, victim = wait_for("a worker computing a chunk", a_worker_mid_chunk)
    workers[pids[victim]].send_signal(signal.SIGKILL)
    workers[pids[victim]].wait()

    assert procs.wait("leader") == 0, procs.log("leader")
    for name in workers:
        if name != pids[victim]:
            assert procs.wait(name) == 0, procs.log(name)
            assert "leaves: the run is completed" in procs.log(name)
    rows = check_one_result(url)
    check_every_call_counted(run, url)
    # the killed worker's chunk was done by another process, once
    [(attempts, done_by)] = query(url, "SELECT attempts, done_by FROM ph_chunks WHERE id = :c", c=chunk)
    assert attempts >= 2 and done_by != victim
    # every request the model server saw was distinct, but for the ones the killed worker had in flight
    assert 0 <= paid_twice(model) <= CONCURRENCY
    # trials and calls name the processes that computed them: this run spread over several
    by = {r[5] for r in rows}
    assert me(leader.pid) in by and len(by) >= 2 and by <= {me(leader.pid), *pids}
    callers = {w for (w,) in query(url, "SELECT DISTINCT worker FROM ph_lm_calls")}
    assert me(leader.pid) in callers and callers & set(pids)

    # the report renders, with a lane per process that computed trials
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(tmp_path / "report.html")])
    assert result.exit_code == 0, result.output
    html = (tmp_path / "report.html").read_text()
    assert 'id="workers-chart"' in html
    for worker in by:
        assert worker in html
    shown = CliRunner().invoke(app, ["show", str(run)])
    assert shown.exit_code == 0 and "completed" in shown.output, shown.output
    exported = CliRunner().invoke(app, ["export", str(run), "--format", "json", "--out", str(tmp_path / "best.json")])
    assert exported.exit_code == 0 and json.loads((tmp_path / "best.json").read_text()), exported.output
    compared = CliRunner().invoke(app, ["compare", str(run), str(run)])
    assert compared.exit_code == 0, compared.output


# -- 2. the leader killed --------------------------------------------------------------------------------------
def test_the_leader_killed_a_worker_takes_the_run_over_and_pays_nothing_twice(pg, model, procs, tmp_path):
    url = create_database(pg.url_template, "leaderless")
    leader = procs.start("leader", optimize_args(model.base_url, tmp_path, url))
    run = run_folder(tmp_path)
    for k in range(2):
        procs.worker(f"w{k}", run)
    wait_for("the search to be under way", lambda: len(trials(url)) >= 3)
    leader.send_signal(signal.SIGKILL)
    leader.wait()

    assert procs.wait("w0") == 0 and procs.wait("w1") == 0, procs.log("w0") + procs.log("w1")
    logs = procs.log("w0") + procs.log("w1")
    assert logs.count("resumes the run") == 1, logs
    check_one_result(url)
    assert json.loads((run / "summary.json").read_text())["stopped_by"] == "completed"
    assert 0 <= paid_twice(model) <= CONCURRENCY


# -- 3. one worker or three: the same run ------------------------------------------------------------------------
def test_one_worker_and_three_workers_on_a_warm_cache_give_the_same_trials(pg, model, procs, tmp_path):
    one, three = create_database(pg.url_template, "one"), create_database(pg.url_template, "three_warm")
    first = procs.start("one", optimize_args(model.base_url, tmp_path / "a", one, "--workers", "1"))
    assert procs.wait("one") == 0, procs.log("one")
    bought = model.stats()["requests_received"]
    procs.start("three", optimize_args(model.base_url, tmp_path / "b", three, "--workers", "3"))
    assert procs.wait("three") == 0, procs.log("three")
    assert model.stats()["requests_received"] == bought  # warm: every answer came from the shared cache

    a, b = check_one_result(one), check_one_result(three)
    assert [r[1:5] for r in a] == [r[1:5] for r in b]  # same candidates, scores, sizes, in the same order
    [run_a], [run_b] = (list((tmp_path / x / "runs").glob("*/store.json")) for x in ("a", "b"))
    usage_a, usage_b = (
        check_every_call_counted(r.parent, u)["usage_by_role"] for r, u in ((run_a, one), (run_b, three))
    )
    assert {r: u["calls"] for r, u in usage_a.items()} == {r: u["calls"] for r, u in usage_b.items()}
    assert sum(u["paid_calls"] for u in usage_b.values()) == 0
    logs = sorted((tmp_path / "b" / "runs").glob("*/workers/worker-*.log"))
    assert len(logs) == 3 and all("leaves: the run is completed" in p.read_text() for p in logs)
    assert first.returncode == 0


# -- 3b. the budget holds for the run, not per process -----------------------------------------------------------
def test_a_call_budget_holds_over_the_leader_and_its_workers_and_stops_the_search(pg, model, procs, tmp_path):
    url = create_database(pg.url_template, "budget")
    leader = procs.start("leader", optimize_args(model.base_url, tmp_path, url, "--max-calls", "40", "--workers", "2"))
    assert procs.wait("leader") == 0, procs.log("leader")
    run = run_folder(tmp_path)
    summary = check_every_call_counted(run, url)
    assert summary["stopped_by"] == "lm_calls"
    assert sum(u["paid_calls"] for u in summary["usage_by_role"].values()) == 40  # all processes together
    assert leader.returncode == 0 and query(url, "SELECT status FROM ph_run") == [("completed",)]


# -- 4. the database away for a few seconds ----------------------------------------------------------------------
def test_postgres_stopped_for_seconds_mid_run_and_the_run_completes(pg, model, procs, tmp_path):
    url = create_database(pg.url_template, "outage")
    procs.start("leader", optimize_args(model.base_url, tmp_path, url))
    run = run_folder(tmp_path)
    procs.worker("w0", run)
    wait_for("the search to be under way", lambda: len(trials(url)) >= 2)
    pg.stop()
    time.sleep(3)
    pg.start()
    assert procs.wait("leader") == 0, procs.log("leader")
    assert procs.wait("w0") == 0, procs.log("w0")
    check_one_result(url)


# -- 5. the evaluator's dispatch hook ------------------------------------------------------------------------------
class QA(Program):
    def __init__(self) -> None:
        self.answer = Predict("question -> answer", instruction="Answer the question.")

    def forward(self, question: str) -> dict:
        return {"answer": self.answer(question=question).answer}


def numbered(lo: int, hi: int) -> list[Example]:
    return [Example(id=f"q{i}", inputs={"question": f"what is {i}?"}, labels={"answer": str(i)}) for i in range(lo, hi)]


def half_right(req) -> str:
    n = int(re.findall(r"what is (\d+)\?", req.messages[-1][1])[-1])
    return f"Answer: {n if n % 2 == 0 else n + 1}"


class Recorder:
    """A dispatch that scores what it is handed with a local evaluator, noting every example id it got."""

    def __init__(self, local: Evaluator) -> None:
        self.local, self.sent = local, []

    async def evaluate(self, evaluator, candidate, examples, keys, advance):
        assert keys == evaluator.score_keys(candidate, examples)
        self.sent += [ex.id for ex in examples]
        await asyncio.sleep(0.05)  # long enough for a twin evaluation to start meanwhile
        records = (await self.local.evaluate(candidate, examples)).records
        for _ in records:
            advance()
        return records


def test_a_dispatching_evaluator_hands_over_only_what_its_cache_and_its_twins_do_not_hold():
    lm = LM(ScriptedBackend(half_right), cache=False)
    plain = Evaluator(QA(), ExactMatch(), lm, score_cache=ScoreCache())
    local = Evaluator(QA(), ExactMatch(), lm, score_cache=ScoreCache())
    dispatch = Recorder(local)
    remote = Evaluator(QA(), ExactMatch(), lm, score_cache=ScoreCache(), dispatch=dispatch)
    cand = Candidate.default(QA())

    async def go():
        await remote.evaluate(cand, numbered(0, 4))
        return await asyncio.gather(remote.evaluate(cand, numbered(0, 10)), remote.evaluate(cand, numbered(6, 12)))

    first, second = asyncio.run(go())
    assert sorted(dispatch.sent, key=lambda i: int(i[1:])) == [f"q{i}" for i in range(12)]  # each example once
    expected = plain.evaluate_sync(cand, numbered(0, 12))
    assert [r.score for r in first.records + second.records] == [
        r.score for r in expected.records[0:10] + expected.records[6:12]
    ]
    assert first.mean == plain.evaluate_sync(cand, numbered(0, 10)).mean


def _small_run(url: str, model_url: str) -> tuple[RunSpec, RunStore]:
    """A MIPRO run on trec-mini created in the database at `url` (not started): what a worker joins."""
    spec = RunSpec(task="trec-mini", optimizer="mipro", model=f"openai/fake@{model_url}", n_train=12, n_val=10,
                   n_test=10, max_tokens=32)  # fmt: skip
    store = RunStore(url)
    store.create_run("r", spec.to_config(), {})
    return spec, store


# -- 6. a worker that cannot reach the model server ---------------------------------------------------------------
def test_a_worker_that_cannot_reach_the_model_server_gives_its_chunk_back_says_so_and_leaves(pg, tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    url = create_database(pg.url_template, "unreachable")
    server = FakeOpenAIServer(latency_ms=1)
    with server as model_url:
        spec, store = _small_run(url, model_url)
        lock = RunLock(store)
        lock.acquire()  # the leader is alive (this process): the worker must not take the run over
        try:
            worker = Worker(url, out_dir=tmp_path / "runs")
            for lm in worker.lms.values():  # give up quickly
                lm.backoff_base_s = lm.backoff_max_s = 0.01
            examples = splits_for(spec, get_task("trec-mini")).val[:3]
            cand = Candidate.default(worker.compute.program)
            keys = worker.compute.score_keys(cand, examples)
            queue = ChunkQueue(store.engine, url)
            spec_chunk = ChunkSpec(chunk_id(cand.hash, keys), cand.to_json(), [e.id for e in examples], keys, {})
            queue.publish([spec_chunk])
            server.inject(Fault.disconnect(), times=None)
            report = asyncio.run(worker.run())
        finally:
            lock.release()
    assert report.code == 1 and "cannot reach the model server" in report.why and report.chunks == 0
    assert query(url, "SELECT status, attempts, claimed_by FROM ph_chunks") == [("pending", 1, None)]
    [event] = [e["data"] for e in store.events() if e["kind"] == "worker"]
    assert event["worker"] == worker.me and "cannot reach the model server" in event["left"]


def test_a_worker_leaves_a_run_its_user_interrupted_instead_of_taking_it_over(pg, tmp_path, monkeypatch):
    """Ctrl-C on the leader marks the run interrupted: a worker that finds its lock free leaves, as after
    completed or failed, rather than resuming what the user stopped."""
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    url = create_database(pg.url_template, "interrupted")
    server = FakeOpenAIServer(latency_ms=1)
    with server as model_url:
        _, store = _small_run(url, model_url)
        store.set_status("interrupted", {"error": "stopped by the user (Ctrl-C)"})
        report = asyncio.run(Worker(url, out_dir=tmp_path / "runs").run())
        asked = server.requests_received
    assert report.why == "the run is interrupted" and report.chunks == 0 and asked == 0
    assert store.run_row()["status"] == "interrupted"


# -- 7. what cannot be joined ------------------------------------------------------------------------------------
def one_error_line(output: str) -> str:
    assert "Traceback" not in output, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:"), output
    return lines[0]


def test_a_worker_on_a_sqlite_run_exits_2_with_one_line(tmp_path):
    folder = tmp_path / "runs" / "local-run"
    RunStore(folder).create_run("local-run", {"task": "trec-mini", "optimizer": "mipro"}, {})
    for target in (str(folder), f"sqlite:///{folder / 'run.sqlite'}"):
        result = CliRunner().invoke(app, ["worker", target])
        assert result.exit_code == 2
        line = one_error_line(result.output)
        assert "SQLite run" in line and "single-process" in line and "--store postgresql+psycopg://" in line


def test_workers_with_a_sqlite_store_are_refused_before_any_run_folder(tmp_path):
    out = tmp_path / "runs"
    result = CliRunner().invoke(app, ["optimize", "--task", "trec-mini", "--workers", "2", "--out", str(out)])
    assert result.exit_code == 1
    line = one_error_line(result.output)
    assert "--workers" in line and "--store postgresql+psycopg://" in line
    assert not out.exists() or not any(out.iterdir())


def test_a_run_of_a_task_given_in_python_cannot_be_joined(pg):
    url = create_database(pg.url_template, "python_task")
    task = {"name": "my-program", "program": "mod:Prog", "metric": "m", "source": "python"}
    RunStore(url).create_run("py", {"task": task, "optimizer": "mipro"}, {})
    result = CliRunner().invoke(app, ["worker", url])
    assert result.exit_code == 2
    assert "task given in Python" in one_error_line(result.output)


# -- 6. credentials --------------------------------------------------------------------------------------------
def test_a_password_in_the_store_url_reaches_the_workers_and_is_written_nowhere(pg, model, procs, tmp_path):
    create_database(pg.url_template, "secret", owner=pg.PASSWORD_ROLE)
    password = "right-pw"  # the password role's (tests/pg_server.py)
    url = pg.password_url("secret", password)
    args = optimize_args(model.base_url, tmp_path, url, "--workers", "1")
    procs.start("leader", args)
    assert procs.wait("leader") == 0, procs.log("leader")
    run = run_folder(tmp_path)
    # reading the run needs the password again, from the environment: the folder keeps none
    report = subprocess.run([sys.executable, "-m", "prompthone", "report", str(run)],
                            env={**env(tmp_path), "PGPASSWORD": password}, capture_output=True, text=True)  # fmt: skip
    assert report.returncode == 0, report.stdout + report.stderr
    [log] = list(run.glob("workers/worker-*.log"))
    assert re.search(r"chunk \w+: \d+ examples", log.read_text()), log.read_text()  # it joined and computed
    files = [p for p in run.rglob("*") if p.is_file()]
    assert any(p.suffix == ".html" for p in files) and (run / "store.json").is_file()
    for p in [*files, tmp_path / "logs" / "leader.log"]:
        assert password.encode() not in p.read_bytes(), p
    engine = create_engine(url)
    with engine.connect() as c:
        tables = [r[0] for r in c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))]
        for table in tables:
            for row in c.execute(text(f'SELECT * FROM "{table}"')):
                assert password not in " ".join(str(v) for v in row), table
    engine.dispose()
