"""Faults of a run's store and folder (issue 14): each ends in one clear line, no traceback, nothing lost.

A damaged cache table inside `run.sqlite`, a program module gone since the run, two processes on one run,
a store that is empty, garbage, truncated or never recorded, and run folders that cannot be written.
"""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prompthone.cli.main import app
from prompthone.lm import run_sync
from prompthone.optimize.runner import RunSpec, run_optimization
from prompthone.store import RunStore
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import careful_math_responder, write_fake_gsm8k

HERE = Path(__file__).resolve().parent


@pytest.fixture
def env(tmp_path, monkeypatch):
    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    srv = FakeOpenAIServer(latency_ms=2, responder=careful_math_responder)
    with srv as url:
        yield tmp_path, url, srv


def spec(url: str, root: Path, **kw) -> RunSpec:
    return RunSpec(
        task="gsm8k",
        optimizer="instruction-search",
        model=f"openai/fake@{url}",
        n_train=4,
        n_val=10,
        n_test=10,
        data_root=str(root),
        concurrency=4,
        max_tokens=32,
        **kw,
    )


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
