"""`prompthone demo`, the README's first command: a real MIPRO run that leaves a report and exported prompts.

The plumbing is checked against a fake OpenAI-compatible server (over real HTTP, through the same runner as
`prompthone optimize`); `test_demo_runs_end_to_end_on_the_embedded_model` runs it on the real model.
"""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from prompthone.cli.demo_cmd import DEMO_SETTINGS, demo_spec, run_demo
from prompthone.cli.main import app
from prompthone.data import load_trec_mini
from prompthone.lm import run_sync
from prompthone.store import RunStore
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from prompthone.testing.replies import without_reminder, write_reply
from runlib import run_dir_once

GOLD = {ex.inputs["question"]: ex.labels["answer"] for ex in load_trec_mini()}


def few_shot_learner(body: dict) -> str:
    """Like the 0.5B model: answers the question itself zero-shot, classifies right once shown demos.

    Any request that is not a classification (the proposer's) gets a plain instruction back.
    """
    messages = body["messages"]
    m = re.fullmatch(r"Question: (.*)", without_reminder(messages[-1]["content"]).strip(), re.S)
    if m is None or m.group(1) not in GOLD:
        return "Name the kind of answer the question asks for, as one word."
    has_demos = any(msg["role"] == "assistant" for msg in messages)
    answer = GOLD[m.group(1)] if has_demos else "George Washington"
    return write_reply(messages[0]["content"], {"answer": answer})  # in the reply format the prompt asks for


@pytest.fixture
def server(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    srv = FakeOpenAIServer(responder=few_shot_learner)
    with srv as url:
        yield srv, url


def _printed_paths(output: str) -> dict[str, Path]:
    return {
        m[1]: Path(m[2]) for m in re.finditer(r"^(run folder|best prompts|chat messages|report): (\S+)", output, re.M)
    }


def test_demo_command_runs_mipro_and_prints_where_its_files_are(server, tmp_path):
    srv, url = server
    res = CliRunner().invoke(app, ["demo", "--model", f"openai/fake@{url}", "--out", str(tmp_path / "runs")])
    assert res.exit_code == 0, res.output
    paths = _printed_paths(res.stdout)
    assert set(paths) == {"run folder", "best prompts", "chat messages", "report"}, res.stdout
    # the report is the last thing printed: the newcomer's next step
    assert res.stdout.strip().splitlines()[-1].startswith(f"report: {paths['report']}")
    run_dir = paths["run folder"]
    assert run_dir.parent == tmp_path / "runs" and run_dir.name.startswith("mipro-trec-mini-")
    assert paths["report"] == run_dir / "report.html" and paths["best prompts"] == run_dir / "best_prompts.txt"
    assert paths["chat messages"].parent == run_dir
    for name in ("run.sqlite", "summary.json", "best_candidate.json"):
        assert (run_dir / name).is_file(), name

    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["task"] == "trec-mini" and summary["optimizer"] == "mipro"
    assert summary["splits"] == {"train": 20, "val": 20, "test": 40}
    assert summary["settings"] == DEMO_SETTINGS
    # the scores printed are the stored ones; with this fake, demos are what makes answers right
    start, final = summary["start_test"]["score"], summary["final_test"]["score"]
    assert re.search(rf"start test\W+{re.escape(f'{start:.1%}')} ", res.stdout)
    assert re.search(rf"final test\W+{re.escape(f'{final:.1%}')} ", res.stdout)
    assert start == 0.0 and final == 1.0

    con = sqlite3.connect(run_dir / "run.sqlite")
    paid, replayed = (con.execute(f"SELECT count(*) FROM ph_lm_calls WHERE cached = {c}").fetchone()[0] for c in (0, 1))
    assert paid == srv.requests_received
    assert re.search(rf"model calls\W+{paid} paid, {replayed} replayed", res.stdout)

    html = paths["report"].read_text(encoding="utf-8")
    assert "trec-mini" in html and "<script" not in html
    assert "--- assistant ---" in paths["best prompts"].read_text()  # the best prompt carries demos
    messages = json.loads(paths["chat messages"].read_text())
    assert "classify" in json.dumps(messages)

    row = RunStore(run_dir).run_row()
    assert row["status"] == "completed" and row["config"]["model"] == f"openai/fake@{url}"

    # a second demo replays every answer from the response cache: a new run folder, same scores, nothing paid
    again = CliRunner().invoke(app, ["demo", "--model", f"openai/fake@{url}", "--out", str(tmp_path / "runs")])
    assert again.exit_code == 0, again.output
    assert srv.requests_received == paid
    assert re.search(rf"model calls\W+0 paid, {paid + replayed} replayed", again.stdout)
    second = _printed_paths(again.stdout)["run folder"]
    assert (
        second != run_dir and json.loads((second / "summary.json").read_text())["final_test"] == summary["final_test"]
    )


def test_demo_says_clearly_when_the_model_is_unreachable(tmp_path):
    res = CliRunner().invoke(
        app, ["demo", "--model", "openai/m@http://127.0.0.1:9/v1", "--out", str(tmp_path / "runs")]
    )
    assert res.exit_code == 1
    assert "127.0.0.1:9" in res.output and "Traceback" not in res.output


@pytest.mark.model
def test_demo_runs_end_to_end_on_the_embedded_model(tmp_path):
    """The demo's own code path on the real model, shrunk (the full demo is measured, not tested)."""
    spec = demo_spec(
        threads=1,
        n_train=8,
        n_val=6,
        n_test=6,
        settings={
            **DEMO_SETTINGS,
            "num_candidates": 2,
            "num_trials": 2,
            "minibatch_size": 6,
            "proposer_max_tokens": 40,
        },
    )
    console = Console(record=True, width=200)
    outcome, files = run_sync(run_demo(spec, out_dir=tmp_path / "runs", console=console))
    assert files.report.is_file() and files.prompts.is_file() and files.messages.is_file()
    assert outcome.final_test.n == 6 and outcome.final_test.n_errors == 0
    stored = RunStore(files.run_dir).run_row()["result"]
    assert stored["final_test"]["score"] == outcome.final_test.mean
    assert stored["best_candidate"] == outcome.result.best.hash
    assert console.export_text().strip().splitlines()[-1].startswith(f"report: {files.report}")


def test_the_demo_config_in_examples_is_the_demo():
    from prompthone.runs.config import load_config

    spec = load_config(Path(__file__).resolve().parents[1] / "examples" / "trec-mini-mipro.yaml")
    assert spec.to_config() == demo_spec().to_config()


def test_ctrl_c_in_the_demo_names_the_run_and_optimize_resume_finishes_it(tmp_path, monkeypatch):
    """Ctrl-C during the demo: exit 130 with the run folder and the resume command, no traceback; the
    command it prints finishes the run."""
    import os
    import signal
    import subprocess
    import sys

    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAIServer(latency_ms=30, responder=few_shot_learner) as url:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "prompthone",
                "demo",
                "--model",
                f"openai/fake@{url}",
                "--out",
                str(tmp_path / "runs"),
            ],
            env={**os.environ, "PROMPTHONE_CACHE_DIR": str(tmp_path / "cache")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as from a terminal
        )
        run_dir_once(
            proc,
            tmp_path / "runs",
            lambda d: sqlite3.connect(d / "run.sqlite").execute("SELECT count(*) FROM ph_lm_calls").fetchone()[0] >= 20,
            timeout=240,
        )
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, (out, err)
        assert "Traceback" not in out + err
        said = " ".join(err.split())
        (run_dir,) = [p.parent for p in (tmp_path / "runs").glob("*/run.sqlite")]
        assert f"continue it with `prompthone optimize --resume {run_dir}`" in said
        assert RunStore(run_dir).run_row()["status"] == "interrupted"
        res = CliRunner().invoke(app, ["optimize", "--resume", str(run_dir)])
    assert res.exit_code == 0, res.output
    assert RunStore(run_dir).run_row()["status"] == "completed"
    assert json.loads((run_dir / "summary.json").read_text())["final_test"]["score"] == 1.0
