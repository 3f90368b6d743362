"""`prompthone show RUN` and `prompthone compare RUN RUN` print what the store holds, and print prompts as text."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from prompthone.cli.report_cmd import register, show_run
from prompthone.program import PromptParams
from prompthone.report import load_run
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from test_report_runlib import INJECTION, INSTRUCTIONS, graded_responder, make_run


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, Path]:
    """Two runs in one folder: A tries every instruction, B only three of them (so it picks another)."""
    tmp = tmp_path_factory.mktemp("show")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTHONE_CACHE_DIR", str(tmp / "cache"))
        mp.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "cache" / "responses.sqlite"))
        with FakeOpenAIServer(latency_ms=2, responder=graded_responder) as url:
            a = make_run(url, tmp)
            b = make_run(url, tmp, only=[0, 1, 3])
    assert INJECTION in a.result.best["solve"].instruction
    assert b.result.best["solve"].instruction == INSTRUCTIONS[3]
    return a.run_dir, b.run_dir


def cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "220"})


def facts(run_dir: Path) -> dict:
    """Numbers read with sqlite3 alone, to check the printed ones against."""
    con = sqlite3.connect(run_dir / "run.sqlite")
    result = json.loads(con.execute("SELECT result FROM ph_run").fetchone()[0])
    out = {
        "result": result,
        "trials": con.execute("SELECT count(*) FROM ph_trials").fetchone()[0],
        "paid": dict(con.execute("SELECT role, count(*) FROM ph_lm_calls WHERE cached = 0 GROUP BY role").fetchall()),
        "prompt_tokens": con.execute("SELECT sum(prompt_tokens) FROM ph_lm_calls WHERE cached = 0").fetchone()[0],
    }
    con.close()
    return out


def line_with(output: str, start: str, has: str = "") -> str:
    rows = [line for line in output.splitlines() if line.strip("│┃ ").startswith(start) and has in line]
    assert rows, f"no line starting with {start!r} in:\n{output}"
    return rows[0]


def test_show_prints_config_scores_usage_and_prompts(runs):
    a, _ = runs
    f = facts(a)
    res = cli("show", str(a))
    assert res.exit_code == 0, res.output
    out = res.output
    r = f["result"]
    assert a.name in out and "completed" in out and "report-search on gsm8k" in out
    lo, hi = r["final_test"]["ci95"]
    assert f"{r['final_test']['score']:.3f} (95% CI {lo:.3f}–{hi:.3f})" in line_with(out, "best")
    assert f"{r['start_test']['score']:.3f} (95% CI" in line_with(out, "start")
    assert f"{f['trials']} trials" in out
    assert f"{f['paid']['task']:,}" in line_with(out, "task ", has="$")
    assert f"{f['paid']['proposer']:,}" in line_with(out, "proposer ", has="$")
    assert INJECTION in out  # printed as the text it is
    assert "[-the math word problem-]{+it carefully and check each step+}" in out
    assert "2 demo(s)" in out


def test_show_prints_console_markup_in_prompts_verbatim(runs):
    data = load_run(runs[0])
    data.best = data.best.with_module("solve", PromptParams("[bold red]Shout[/] and [link=http://x]click[/link]"))
    console = Console(record=True, width=200, color_system=None)
    show_run(data, console)
    text = console.export_text()
    assert "[bold red]Shout[/] and [link=http://x]click[/link]" in text


def test_compare_puts_two_runs_side_by_side(runs):
    a, b = runs
    fa, fb = facts(a), facts(b)
    res = cli("compare", str(a), str(b))
    assert res.exit_code == 0, res.output
    out = res.output
    assert f"A: {a.name}" in out and f"B: {b.name}" in out
    trials = line_with(out, "trials")
    assert f"{fa['trials']}" in trials and f"{fb['trials']}" in trials and f"{fb['trials'] - fa['trials']:+,}" in trials
    final = line_with(out, "final test")
    sa, sb = fa["result"]["final_test"]["score"], fb["result"]["final_test"]["score"]
    assert f"{sa:.3f} (95% CI" in final and f"{sb:.3f} (95% CI" in final and f"{sb - sa:+.3f}" in final
    tokens = line_with(out, "prompt tokens")
    assert f"{fa['prompt_tokens']:,}" in tokens and f"{fb['prompt_tokens'] - fa['prompt_tokens']:+,}" in tokens
    assert "wall time" in out
    # A's instruction -> B's, word by word
    assert "instruction (A → B)" in out
    assert "[-Solve-]{+Read the problem carefully, then solve+} it [-carefully and check each-]{+step by+} step." in out


def test_show_and_compare_name_runs_they_cannot_find(runs):
    a, _ = runs
    res = cli("show", "report-search", "--runs-dir", str(a.parent))
    assert res.exit_code == 1 and "matches 2 runs" in res.output and "give the full name" in res.output
    res = cli("compare", str(a), "missing-run", "--runs-dir", str(a.parent))
    assert res.exit_code == 1 and "no run 'missing-run'" in res.output
