"""Faults of a run's store and folder (issue 14): each ends in one clear line, no traceback, nothing lost.

A damaged cache table inside `run.sqlite`, a program module gone since the run, two processes on one run,
a store that is empty, garbage, truncated or never recorded, and run folders that cannot be written.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prompthone.cli.main import app
from prompthone.lm import run_sync
from prompthone.runs.runner import run_optimization
from prompthone.store import RunStore
from prompthone.store.lock import RunLock, RunLockedError
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import careful_math_responder, fake_gsm8k_env, write_fake_gsm8k
from runlib import fake_gsm8k_spec as spec

HERE = Path(__file__).resolve().parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    with fake_gsm8k_env(tmp_path, monkeypatch, latency_ms=2) as found:
        yield found


def cli(*args: str):
    return CliRunner().invoke(app, [str(a) for a in args], env={"COLUMNS": "400"})


def one_line_error(res) -> str:
    """The command failed with exactly one line of output and no traceback; that line."""
    assert res.exit_code != 0, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output
    assert lines[0].startswith("error: ")
    return lines[0]


def paid(run_dir: Path) -> int:
    con = sqlite3.connect(run_dir / "run.sqlite")
    try:
        return con.execute("SELECT count(*) FROM ph_lm_calls WHERE cached = 0").fetchone()[0]
    finally:
        con.close()


def damage_tables(db: Path, *tables: str) -> None:
    """Overwrite every page of `tables` and their indexes with garbage, as a disk fault would."""
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    marks = ",".join("?" * len(tables))
    names = [r[0] for r in con.execute(f"SELECT name FROM sqlite_master WHERE tbl_name IN ({marks})", tables)]
    pages = [
        r[0] for r in con.execute(f"SELECT pageno FROM dbstat WHERE name IN ({','.join('?' * len(names))})", names)
    ]
    size = con.execute("PRAGMA page_size").fetchone()[0]
    con.close()
    assert pages
    rng = random.Random(0)
    with open(db, "r+b") as f:
        for page in pages:
            f.seek((page - 1) * size)
            f.write(rng.randbytes(size))


# -- 1. a damaged cache table inside run.sqlite ---------------------------------------------------------
@pytest.mark.parametrize("tables", [("responses",), ("responses", "scores")])
def test_a_damaged_cache_table_is_replaced_in_place_and_the_run_resumes(env, tables, caplog):
    tmp, url, srv = env
    first = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "runs"))
    run_dir, db = first.run_dir, first.run_dir / "run.sqlite"
    bought, inode, trials = srv.requests_received, db.stat().st_ino, len(first.result.trials)
    damage_tables(db, *tables)
    with sqlite3.connect(db) as con, pytest.raises(sqlite3.DatabaseError, match="malformed"):
        con.execute("SELECT count(*) FROM responses").fetchone()

    res = cli("optimize", "--resume", run_dir)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in run_dir.iterdir() if "corrupt" in p.name) == []  # the store was never moved
    assert db.stat().st_ino == inode
    assert srv.requests_received == bought  # the user's cache still had every answer: nothing bought twice
    store = RunStore(run_dir)
    assert store.run_row()["status"] == "completed" and len(store.trials()) == trials
    store.close()
    assert any("set it aside" in r.getMessage() and "responses" in r.getMessage() for r in caplog.records)
    con = sqlite3.connect(db)
    for table in tables:
        assert con.execute(f"PRAGMA quick_check({table})").fetchone()[0] == "ok"
    if "scores" in tables:  # scores were computed again, so the run's own copy of every answer is back
        assert con.execute("SELECT count(*) FROM responses").fetchone()[0] == bought
    con.close()
    shown = cli("show", run_dir)
    assert shown.exit_code == 0 and run_dir.name in shown.output, shown.output


# -- 2. read commands never import the user's program ----------------------------------------------------
PIPELINE = """
from prompthone.program import ChainOfThought, Program


class Counter(Program):
    def __init__(self):
        self.solve = ChainOfThought("question -> count", instruction="Count the apples.")

    def forward(self, question):
        return self.solve(question=question)


def same_number(example, prediction):
    return float(prediction["count"].strip() == str(example.labels["count"]))
"""


@pytest.mark.parametrize("fate", ["deleted", "raises on import"])
def test_show_report_export_and_runs_read_the_store_without_importing_the_program(tmp_path, monkeypatch, fate):
    import json

    from prompthone.runs.config import load_config
    from prompthone.runs.export import messages_document, program_document

    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "project"
    (folder / "data").mkdir(parents=True)
    module = f"counter_{abs(hash(tmp_path)) % 10**8}"
    (folder / f"{module}.py").write_text(PIPELINE)
    with open(folder / "data" / "apples.jsonl", "w") as f:
        for i in range(24):
            f.write(json.dumps({"q": f"Tom has {10 + i} apples. How many?", "n": 10 + i}) + "\n")
    (folder / "run.yaml").write_text(
        "\n".join(
            [
                "task:",
                f"  program: {module}:Counter",
                f"  metric: {module}:same_number",
                "  data: {path: data/apples.jsonl, inputs: {q: question}, labels: {n: count}, "
                "label_types: {count: int}}",
                "optimizer: instruction-search",
                "models: {task: 'openai/fake@URL'}",
                "splits: {train: 4, val: 10, test: 10}",
                "max_tokens: 32",
            ]
        )
    )

    def count_responder(body: dict) -> str:
        return careful_math_responder(body).replace("Answer:", "Count:")

    with FakeOpenAIServer(latency_ms=1, responder=count_responder) as url:
        (folder / "run.yaml").write_text((folder / "run.yaml").read_text().replace("URL", url))
        out = run_sync(run_optimization(load_config(folder / "run.yaml"), out_dir=tmp_path / "runs"))
    program = sys.modules[module].Counter()
    want_json = program_document(program, out.result.best)
    want_messages = messages_document(program, out.result.best)

    # the program is gone (or would blow up) afterwards; nothing may import it again
    sys.modules.pop(module)
    shutil.rmtree(folder / "__pycache__", ignore_errors=True)
    if fate == "deleted":
        (folder / f"{module}.py").unlink()
    else:
        (folder / f"{module}.py").write_text("raise RuntimeError('the program module was imported')\n")

    shown = cli("show", out.run_dir)
    assert shown.exit_code == 0, shown.output
    assert "note:" not in shown.output and "carefully" in shown.output and "count" in shown.output
    report = cli("report", out.run_dir)
    assert report.exit_code == 0, report.output
    page = (out.run_dir / "report.html").read_text()
    assert "question -&gt; reasoning, count" in page and "ChainOfThought" in page  # signature and kind, from the store
    for fmt, want in (("json", want_json), ("messages", want_messages)):
        res = cli("export", out.run_dir, "--format", fmt, "--out", tmp_path / f"best.{fmt}.json")
        assert res.exit_code == 0, res.output
        got = json.loads((tmp_path / f"best.{fmt}.json").read_text())
        got.pop("source")
        assert got == want, fmt  # exactly what the program itself exports
    yaml_res = cli("export", out.run_dir, "--format", "yaml")
    assert yaml_res.exit_code == 0 and (out.run_dir / "best_program.yaml").is_file(), yaml_res.output
    listed = cli("runs", "--out", tmp_path / "runs")
    assert listed.exit_code == 0 and out.run_dir.name in listed.output, listed.output
    assert module not in sys.modules


# -- 3. two processes on one run --------------------------------------------------------------------------
def test_a_live_holder_refuses_a_second_lock_and_a_dead_or_silent_one_is_taken_over(tmp_path):
    store = RunStore(tmp_path / "run")
    first = RunLock(store, where="run X")
    first.acquire()
    with pytest.raises(RunLockedError) as err:
        RunLock(store, where="run X").acquire()
    assert f"process {os.getpid()} on host {socket.gethostname()}" in str(err.value)
    assert "run X is in use" in str(err.value) and "\n" not in str(err.value)
    first.release()

    def hold(**row) -> None:
        with store.engine.begin() as c:
            c.exec_driver_sql("DELETE FROM ph_lock")
            now = time.time()
            base = {"id": 1, "token": "t", "pid": os.getpid(), "host": socket.gethostname(), "proc_start": None,
                    "started_at": now, "heartbeat_at": now, "command": "x"}  # fmt: skip
            base.update(row)
            cols = ", ".join(base)
            c.exec_driver_sql(
                f"INSERT INTO ph_lock ({cols}) VALUES ({', '.join('?' * len(base))})", tuple(base.values())
            )

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        for taken_over in (
            {"pid": gone.pid},  # a killed process on this host
            {"pid": alive.pid, "proc_start": "1"},  # a live pid, but of a process started later: the pid was reused
            {"host": "elsewhere", "heartbeat_at": time.time() - 3600},  # another host that stopped beating
            {},  # this process, with a lock it no longer holds (its release could not reach the store)
        ):
            hold(**taken_over)
            lock = RunLock(store)
            lock.acquire()
            lock.release()
        for held in ({"pid": alive.pid}, {"host": "elsewhere"}):  # alive, or beating on another host
            hold(**held)
            with pytest.raises(RunLockedError, match=f"process {held.get('pid', os.getpid())} on host"):
                RunLock(store).acquire()
    finally:
        alive.kill()
        alive.wait()
    store.close()


def test_a_second_process_on_a_running_run_is_refused_and_a_killed_ones_lock_is_taken_over(tmp_path):
    """Real processes: B resumes while A runs (refused, naming A, paying nothing); A is killed; C takes over."""
    write_fake_gsm8k(tmp_path / "data")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]),
           "COLUMNS": "400", "PROMPTHONE_CACHE_DIR": str(tmp_path / "cache")}  # fmt: skip
    main = "import sys, runlib; from prompthone.cli.main import app; sys.argv[0] = 'prompthone'; app()"
    srv = FakeOpenAIServer(latency_ms=150, responder=careful_math_responder)
    with srv as url:
        args = ["optimize", "--task", "gsm8k", "--optimizer", "instruction-search", "--model", f"openai/fake@{url}"]
        args += ["--n-train", "4", "--n-val", "10", "--n-test", "10", "--data-root", str(tmp_path / "data")]
        args += ["--max-tokens", "32", "--concurrency", "1", "--out", str(tmp_path / "runs")]
        a = subprocess.Popen([sys.executable, "-c", main, *args], env=env, stdout=subprocess.DEVNULL)
        try:
            deadline, run_dir = time.monotonic() + 240, None
            while time.monotonic() < deadline and run_dir is None:
                assert a.poll() is None, "the run ended before a second process could try it"
                found = list((tmp_path / "runs").glob("*/run.sqlite"))
                try:
                    if found and paid(found[0].parent) >= 3:
                        run_dir = found[0].parent
                except sqlite3.OperationalError:
                    pass  # the store is being created
                time.sleep(0.05)
            assert run_dir is not None
            b = subprocess.run([sys.executable, "-c", main, "optimize", "--resume", str(run_dir)], env=env,
                               capture_output=True, text=True, timeout=120)  # fmt: skip
            assert a.poll() is None, "A ended while B tried: the refusal was not tested against a live run"
            assert b.returncode == 1 and "Traceback" not in b.stderr, b.stderr
            lines = b.stderr.strip().splitlines()
            assert len(lines) == 1 and f"process {a.pid} on host {socket.gethostname()}" in lines[0], b.stderr
            assert "in use" in lines[0]
            a.send_signal(signal.SIGKILL)
            a.wait(10)
        finally:
            if a.poll() is None:
                a.kill()
                a.wait(10)
        con = sqlite3.connect(run_dir / "run.sqlite")
        assert con.execute("SELECT pid FROM ph_lock").fetchone() == (a.pid,)  # the dead process's lock is left
        con.close()
        c = subprocess.run([sys.executable, "-c", main, "optimize", "--resume", str(run_dir)], env=env,
                           capture_output=True, text=True, timeout=300)  # fmt: skip
        assert c.returncode == 0, c.stdout + c.stderr
        # every request the server answered is on record as paid, bar at most the one A had in flight when
        # killed: B bought nothing, and C bought only what A had not
        assert 0 <= srv.requests_received - paid(run_dir) <= 1
    store = RunStore(run_dir)
    assert store.run_row()["status"] == "completed"
    store.close()
    con = sqlite3.connect(run_dir / "run.sqlite")
    assert con.execute("SELECT count(*) FROM ph_lock").fetchone()[0] == 0  # released at the end
    con.close()


# -- 4. a broken run.sqlite -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("finished")
    write_fake_gsm8k(tmp / "data")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTHONE_CACHE_DIR", str(tmp / "cache"))
        mp.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "cache" / "responses.sqlite"))
        with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as url:
            out = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "runs"))
    con = sqlite3.connect(out.run_dir / "run.sqlite")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return out.run_dir


def copy_run(run_dir: Path, dest: Path) -> Path:
    """The run folder as a person would copy it after the run ended: the store in one file."""
    dest.mkdir(parents=True)
    for p in run_dir.iterdir():
        if not p.name.endswith(("-wal", "-shm")):
            shutil.copy(p, dest / p.name)
    return dest


def _truncate(db: Path) -> None:
    db.write_bytes(db.read_bytes()[: db.stat().st_size // 2])


def _unrecorded(db: Path) -> None:
    db.unlink()
    RunStore(db.parent).close()  # the tables a run makes first, and no run in them


BREAKAGES = {
    "empty": (lambda db: db.write_bytes(b""), "is empty"),
    "garbage": (lambda db: db.write_bytes(random.Random(1).randbytes(20000)), "is not a SQLite database"),
    "truncated": (_truncate, "is damaged"),
    "killed before it recorded itself": (_unrecorded, "holds no recorded run"),
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_broken_run_store_gives_one_clear_line_everywhere_and_runs_lists_the_others(finished_run, tmp_path, breakage):
    runs = tmp_path / "runs"
    good = copy_run(finished_run, runs / "a-good-run")
    bad = copy_run(finished_run, runs / "b-broken-run")
    db = bad / "run.sqlite"
    breaks, says = BREAKAGES[breakage]
    breaks(db)
    before = db.read_bytes()
    for args in (["show", bad], ["report", bad], ["export", bad], ["optimize", "--resume", bad]):
        line = one_line_error(cli(*args))
        assert str(db) in line and says in line, (args, line)
    assert db.read_bytes() == before  # reading (and refusing to resume) changed nothing
    listed = cli("runs", "--out", runs)
    assert listed.exit_code == 0, listed.output
    good_row = next(line for line in listed.output.splitlines() if good.name in line)
    assert "completed" in good_row and "1.000" in good_row
    bad_rows = [line for line in listed.output.splitlines() if bad.name in line]
    assert "broken" in bad_rows[0] and any(says in line for line in bad_rows[1:]), listed.output


# -- 5. run folders that cannot be written ----------------------------------------------------------------
@pytest.fixture
def immutable():
    """`chattr +i` paths (even root cannot write in them), undone afterwards."""
    done: list[Path] = []

    def make(*paths: Path) -> None:
        for p in paths:
            subprocess.run(["chattr", "+i", str(p)], check=True)
            done.append(p)

    yield make
    for p in reversed(done):
        subprocess.run(["chattr", "-i", str(p)], check=False)


def test_out_that_cannot_hold_run_folders_fails_before_anything_is_spent(env, immutable):
    tmp, url, srv = env
    base = ["optimize", "--task", "gsm8k", "--optimizer", "mipro", "--model", f"openai/fake@{url}"]
    base += ["--n-train", "4", "--n-val", "10", "--n-test", "10", "--data-root", tmp / "data"]
    a_file = tmp / "not-a-folder"
    a_file.write_text("x")
    locked = tmp / "locked"
    locked.mkdir()
    immutable(locked)
    for out, says in (
        (a_file, "is a file, not a folder"),
        (a_file / "runs", "is a file, not a folder"),
        (locked, "cannot create a run folder there (Operation not permitted)"),
        (locked / "runs", "cannot create a run folder there (Operation not permitted)"),
    ):
        line = one_line_error(cli(*base, "--out", out))
        assert f"--out {out}" in line and says in line, line
    assert srv.requests_received == 0 and list(locked.iterdir()) == []


def test_show_report_and_export_read_a_read_only_run_folder(finished_run, tmp_path, immutable):
    run_dir = copy_run(finished_run, tmp_path / "runs" / "shared-run")
    names = sorted(p.name for p in run_dir.iterdir())
    immutable(*run_dir.iterdir(), run_dir)
    with pytest.raises(OSError):
        (run_dir / "probe").write_text("x")  # really read-only, for root too
    shown = cli("show", run_dir)
    assert shown.exit_code == 0 and "completed" in shown.output and "carefully" in shown.output, shown.output
    line = one_line_error(cli("report", run_dir))
    assert f"{run_dir / 'report.html'}" in line and "give --out" in line
    report = cli("report", run_dir, "--out", tmp_path / "report.html")
    assert report.exit_code == 0 and "carefully" in (tmp_path / "report.html").read_text(), report.output
    exported = cli("export", run_dir, "--out", tmp_path / "best.json")
    assert exported.exit_code == 0 and (tmp_path / "best.json").is_file(), exported.output
    listed = cli("runs", "--out", run_dir.parent)
    assert listed.exit_code == 0 and "completed" in listed.output, listed.output
    assert sorted(p.name for p in run_dir.iterdir()) == names
