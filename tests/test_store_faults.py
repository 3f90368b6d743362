"""Faults of a run's store and folder (issue 14): each ends in one clear line, no traceback, nothing lost.

A damaged cache table inside `run.sqlite`, a program module gone since the run, two processes on one run,
a store that is empty, garbage, truncated or never recorded, and run folders that cannot be written.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
import sys
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

    from prompthone.config import load_config
    from prompthone.exporting import messages_document, program_document

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
