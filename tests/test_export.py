"""Export: the best program as JSON, YAML and plain messages; loading it back gives the same candidate, which
sends the same messages; the messages work filled in by hand, without prompthone."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
import yaml
from typer.testing import CliRunner

from prompthone.cli.report_cmd import register
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.program import Candidate, ChainOfThought, Predict, Program, PromptParams, run_program
from prompthone.runs.export import (
    ExportError,
    export_program,
    fill_placeholders,
    load_exported,
    messages_document,
    messages_readme,
    read_document,
)
from prompthone.store import RunStore
from prompthone.tasks import get_task
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from test_report_runlib import INJECTION, graded_responder, make_run

QUESTION = "Tom has 12 apples and buys 3 more. How many?"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PROMPTHONE_CACHE_DIR", str(tmp / "cache"))
        mp.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "cache" / "responses.sqlite"))
        with FakeOpenAIServer(latency_ms=2, responder=graded_responder) as url:
            return make_run(url, tmp).run_dir


def stored_best(run_dir: Path) -> Candidate:
    con = sqlite3.connect(run_dir / "run.sqlite")
    best = json.loads(con.execute("SELECT result FROM ph_run").fetchone()[0])["best_candidate"]
    con.close()
    return RunStore(run_dir).candidate(best)


def cli(*args: str):
    app = typer.Typer()
    register(app)
    return CliRunner().invoke(app, list(args))


def sent(program: Program, candidate: Candidate | None, inputs: dict) -> list:
    """The chat messages `program` sends for `inputs` under `candidate`."""
    backend = ScriptedBackend(lambda r: "Reasoning: r\nAnswer: 15")
    from prompthone.lm import run_sync

    run_sync(run_program(program, inputs, lm=LM(backend, cache=False), candidate=candidate))
    return [r.chat for r in backend.requests]


@pytest.mark.parametrize("fmt", ["json", "yaml"])
def test_export_and_load_give_the_runs_best_candidate(run_dir, fmt):
    res = cli("export", str(run_dir), "--format", fmt)
    assert res.exit_code == 0, res.output
    path = run_dir / f"best_program.{fmt}"
    assert str(path) in res.output.replace("\n", "")
    best = stored_best(run_dir)
    doc = json.loads(path.read_text()) if fmt == "json" else yaml.safe_load(path.read_text())
    assert doc["candidate_hash"] == best.hash
    assert doc["modules"]["solve"]["signature"] == {
        "inputs": {"question": ""},
        "outputs": {
            "reasoning": "",
            "answer": "the final numeric answer, a number only",
        },
    }
    assert doc["source"]["run"] == run_dir.name and doc["source"]["test_score"] == 1.0
    program = get_task("gsm8k").make_program(None)
    loaded = load_exported(path, program)
    assert loaded.hash == best.hash
    assert INJECTION in loaded["solve"].instruction and len(loaded["solve"].demos) == 2


def test_a_loaded_export_sends_the_same_messages_as_the_run(run_dir, tmp_path):
    assert cli("export", str(run_dir), "-f", "yaml", "-o", str(tmp_path / "p.yaml")).exit_code == 0
    best = stored_best(run_dir)
    program = get_task("gsm8k").make_program(None)
    loaded = load_exported(tmp_path / "p.yaml", program)
    expected = sent(program, best, {"question": QUESTION})
    assert len(expected) == 1 and len(expected[0]) == 6  # system, two demo turns, the question
    assert sent(program, loaded, {"question": QUESTION}) == expected
    program.load_candidate(loaded)  # or make it the program's own prompts
    assert sent(program, None, {"question": QUESTION}) == expected


def test_messages_work_filled_in_by_hand_without_prompthone(run_dir):
    res = cli("export", run_dir.name, "--runs-dir", str(run_dir.parent), "--format", "messages")
    assert res.exit_code == 0, res.output
    path, readme = run_dir / "best_messages.json", run_dir / "best_messages.README.md"
    assert readme.is_file()
    spec = json.loads(path.read_text())
    module = spec["modules"]["solve"]
    assert module["inputs"] == {"question": "{question}"}
    assert module["outputs"] == {"reasoning": "Reasoning", "answer": "Answer"}
    # what the README says: copy the messages, replace the placeholder in message `fill_message`
    messages = [dict(m) for m in module["messages"]]
    i = module["fill_message"]
    messages[i]["content"] = messages[i]["content"].replace("{question}", QUESTION)
    program = get_task("gsm8k").make_program(None)
    assert [messages] == sent(program, stored_best(run_dir), {"question": QUESTION})
    assert fill_placeholders(module, {"question": QUESTION}) == messages
    text = readme.read_text()
    assert "best_messages.json" in text and "{question}" in text and "`Answer:`" in text
    # a chain-of-thought module follows up a reply without its answer: the export says with what, as sent
    assert module["follow_up"].startswith("Your reply above does not give the answer.")
    assert f"followed up with: {module['follow_up']}" in text
    backend = ScriptedBackend(
        lambda r: "Answer: 15" if r.chat[-1]["content"] == module["follow_up"] else "Reasoning: r"
    )
    from prompthone.lm import run_sync

    run_sync(run_program(program, {"question": QUESTION}, lm=LM(backend, cache=False), candidate=stored_best(run_dir)))
    first, second = (r.chat for r in backend.requests)
    assert second == [
        *messages,
        {"role": "assistant", "content": "Reasoning: r"},
        {"role": "user", "content": module["follow_up"]},
    ]
    assert first == messages
    with pytest.raises(ExportError, match="--format json"):
        load_exported(path)


@pytest.mark.parametrize(
    ("fmt", "says"),
    [("labels", "`Search Query:`, `Answer:`"), ("recap", "`Search Query:`, `Answer:`"),
     ("tags", "`<search_query>`, `<answer>`"), ("json", 'a JSON object with the keys `"search_query"`, `"answer"`')],
)  # fmt: skip
def test_the_messages_readme_names_the_outputs_as_each_format_writes_them(fmt, says):
    module = Predict("question -> search_query, answer", format=fmt)
    readme = messages_readme(messages_document(module), "m.json")
    assert f"prompt format `{fmt}`: the reply gives {says}\n" in readme
    structured = messages_readme(messages_document(Predict("q -> a", format="labels"), structured=True), "m.json")
    assert 'the reply gives a JSON object with the keys `"a"`' in structured  # a response_format asks for JSON
    assert "follow_up" not in messages_document(module)["modules"]["predict"]  # a Predict asks nothing more


class QA(Program):
    def __init__(self) -> None:
        self.answer = ChainOfThought("question -> answer", instruction="Answer.")

    def forward(self, question):
        return self.answer(question=question)


class TwoStage(Program):
    def __init__(self) -> None:
        self.query = Predict("question -> search_query")
        self.answer = Predict("context, question -> answer")

    def forward(self, question):
        q = self.query(question=question).search_query
        return self.answer(context=[q], question=question)


AWKWARD = [
    "First line.\nSecond line with trailing spaces   \n\tIndented with a tab\n",
    "  leading spaces and {question} braces: and # not a comment",
    "yes",
    "1.0",
    "- looks like a list",
    "émoji 🎯 and ünïcode\r\nwith a CRLF",
    "multi\nline\n\n\nwith blank lines and no trailing newline",
]


@pytest.mark.parametrize("text", AWKWARD)
@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_awkward_prompts_survive_the_round_trip_exactly(tmp_path, text, suffix):
    program = QA()
    cand = Candidate.default(program).with_module(
        "answer", PromptParams(text, ({"question": text, "reasoning": "r", "answer": "4"},), "question_end")
    )
    (path,) = export_program(program, cand, tmp_path / f"p{suffix}")
    raw = path.read_text()
    assert "!!python" not in raw and "!!" not in raw
    loaded = load_exported(path, program)
    assert loaded == cand and loaded["answer"].instruction == text and loaded["answer"].position == "question_end"


def test_yaml_writes_multiline_prompts_as_blocks(tmp_path):
    program = QA()
    cand = Candidate.default(program).with_module("answer", PromptParams("Line one.\nLine two."))
    (path,) = export_program(program, cand, tmp_path / "p.yaml")
    assert "instruction: |-\n      Line one.\n      Line two.\n" in path.read_text()


def test_loading_says_what_is_wrong(tmp_path):
    (path,) = export_program(QA(), None, tmp_path / "qa.json")
    with pytest.raises(ExportError, match=r"does not fit TwoStage: missing module\(s\) \['query'\]; the program's"):
        load_exported(path, TwoStage())

    other = QA()
    other.answer = Predict("question -> answer")  # same module name, but no reasoning output
    with pytest.raises(ExportError, match=r"module 'answer' was exported with outputs \['reasoning', 'answer'\]"):
        load_exported(path, other)

    doc = read_document(path)
    del doc["modules"]["answer"]["instruction"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(doc))
    with pytest.raises(ExportError, match=r"module 'answer': prompt params need an 'instruction' key"):
        load_exported(bad)

    doc["version"] = 99
    bad.write_text(json.dumps(doc))
    with pytest.raises(ExportError, match="export version 99"):
        load_exported(bad)

    broken = tmp_path / "broken.yaml"
    broken.write_text("modules: [unclosed")
    with pytest.raises(ExportError, match="is not valid YAML"):
        load_exported(broken)
    with pytest.raises(ExportError, match="cannot read export"):
        load_exported(tmp_path / "missing.yaml")
    pickle_like = tmp_path / "evil.yaml"
    pickle_like.write_text("!!python/object/apply:os.system ['echo hi']\n")
    with pytest.raises(ExportError, match="is not valid YAML"):
        load_exported(pickle_like)


def test_a_pipeline_exports_every_module_and_round_trips(tmp_path):
    program = TwoStage()
    cand = Candidate.default(program).with_module("query", PromptParams("Write a short query."))
    for fmt, name in (("json", "p.json"), ("yaml", "p.yaml"), ("messages", "m.json")):
        paths = export_program(program, cand, tmp_path / name, fmt)
        if fmt != "messages":
            assert load_exported(paths[0], program) == cand
    spec = json.loads((tmp_path / "m.json").read_text())
    assert list(spec["modules"]) == ["query", "answer"]
    assert spec["modules"]["answer"]["inputs"] == {"context": "{context}", "question": "{question}"}
    assert "Write a short query." in spec["modules"]["query"]["messages"][0]["content"]


def test_cli_export_errors_name_the_problem(tmp_path):
    res = cli("export", "nope", "--runs-dir", str(tmp_path))
    assert res.exit_code == 1 and "no run 'nope'" in res.output
    res = cli("export", "nope", "--format", "pickle")
    assert res.exit_code == 2 and "pickle" in res.output
