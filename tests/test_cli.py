"""The command line as a person uses it: output, usage line, exit codes and messages."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prompthone.cli.main import app
from prompthone.lm.local.catalog import CATALOG
from prompthone.testing.fake_openai_server import FakeOpenAIServer

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


@pytest.fixture(scope="module")
def server():
    srv = FakeOpenAIServer()
    with srv as url:
        yield srv, url


def test_lm_prints_the_completion_and_its_usage(server):
    srv, url = server
    before = srv.requests_received
    res = runner.invoke(app, ["lm", "hello there", "--model", f"openai/m@{url}", "--max-tokens", "20"])
    assert res.exit_code == 0, res.output
    assert "echo: hello there" in res.stdout
    assert re.search(r"\d+ prompt \+ \d+ completion tokens", res.output)
    assert srv.requests_received == before + 1
    again = runner.invoke(app, ["lm", "hello there", "--model", f"openai/m@{url}", "--max-tokens", "20", "--json"])
    data = json.loads(again.stdout)
    assert data["text"] == "echo: hello there" and data["cached"] is True
    assert srv.requests_received == before + 1  # the second call came from the cache


def test_lm_bad_model_string_is_a_clear_error():
    res = runner.invoke(app, ["lm", "hi", "--model", "gpt-4"])
    assert res.exit_code == 1
    assert "unknown model string 'gpt-4'" in res.output and "openai/<model>" in res.output


def test_lm_unreachable_server_says_what_to_do():
    res = runner.invoke(app, ["lm", "hi", "--model", "openai/m@http://127.0.0.1:9/v1"])
    assert res.exit_code == 1
    assert "127.0.0.1:9" in res.output


@pytest.mark.parametrize("args", [["models"], ["models", "list"]])
def test_models_lists_the_catalogue(args):
    res = runner.invoke(app, args, env={"COLUMNS": "300"})
    assert res.exit_code == 0, res.output
    for name, model in CATALOG.items():
        line = next(row for row in res.output.splitlines() if f" {name} " in row)
        assert f"{model.size / 1e6:,.0f} MB" in line
        assert f" {model.start_format or '-'} " in line  # the layout its modules start in


def test_readme_commands_are_what_ci_runs():
    readme = (ROOT / "README.md").read_text()
    ci = (ROOT / ".ci" / "run").read_text()
    commands = re.search(r"```bash\n(.*?)```", readme, re.S).group(1)
    assert re.search(r"^make demo\b", commands, re.M) and re.search(r"^make test\b", commands, re.M)
    assert re.search(r"^make test$", ci, re.M)
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"^test: install-dev\n\t\$\(BIN\)/python -m pytest", makefile, re.M)
    assert re.search(r"^demo: install\n\t\$\(BIN\)/prompthone demo", makefile, re.M)


@pytest.mark.parametrize("module", ["prompthone", "prompthone.cli.main"])
def test_python_dash_m_runs_the_command(module):
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", module, "models"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "qwen2.5-coder-0.5b" in done.stdout


def test_eval_scores_the_start_prompt_and_leaves_its_files(tmp_path):
    from prompthone.tasks import get_task
    from prompthone.testing.task_responder import TaskResponder

    responder = TaskResponder(get_task("trec-mini").load(None))
    with FakeOpenAIServer(responder=responder) as url:
        res = runner.invoke(
            app, ["eval", "--task", "trec-mini", "--model", f"openai/m@{url}", "--n", "6", "--out", str(tmp_path)]
        )
    assert res.exit_code == 0, res.output
    assert "trec-mini" in res.output and "6 examples (seed 0)" in res.output
    # a model the catalog does not know: the module's own (the line may wrap on a narrow terminal)
    assert "prompt format classify json" in " ".join(res.output.split())
    (folder,) = tmp_path.glob("eval-trec-mini-*")
    summary = json.loads((folder / "summary.json").read_text())
    rows = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert summary["task"] == "trec-mini" and summary["n"] == 6 and len(rows) == 6
    assert summary["score"] == sum(r["score"] or 0 for r in rows) / 6
    assert (
        f"{summary['score']:.1%}" in res.output
        and f"6: {summary['n'] - summary['parse_failures']} scored" in res.output
    )
    assert (folder / "prompts.txt").read_text().startswith("=== module:")
