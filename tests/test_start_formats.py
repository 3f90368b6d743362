"""A model's start format: a module that names no format starts in the layout its model reads best.

The embedded catalog names it per model (measured in `benchmarks/formats.py`); a run records it by name so
that a resume starts where it began; a module given a format, or loaded with a candidate, keeps its own.
"""

import json

import pytest
from typer.testing import CliRunner

from prompthone.cli.main import app
from prompthone.lm import LM, run_sync
from prompthone.lm.local.catalog import CATALOG, start_format_of
from prompthone.lm.scripted import ScriptedBackend
from prompthone.optimize import Budget
from prompthone.program import Candidate, ChainOfThought, Predict, Program, Signature, as_program, using
from prompthone.program.params import DEFAULT_FORMAT, MODULE_DEFAULTS, PROMPT_FORMATS, REASONING_FORMAT
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunSpec
from prompthone.store import RunStore
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from prompthone.testing.replies import reply_layout, write_reply

TREC = Signature({"question": ""}, {"label": "one of: human, location, number"}, "Classify the question.")
MODEL_15B = "qwen2.5-coder-1.5b"


class TwoStage(Program):
    def __init__(self) -> None:
        self.classify = Predict(TREC)
        self.explain = ChainOfThought("question -> answer")
        self.fixed = Predict(TREC, format="tags")

    def forward(self, question):
        return self.classify(question=question)


def scripted(name: str, seen: list | None = None, **kw) -> LM:
    def respond(request):
        if seen is not None:
            seen.append(request.messages)
        return write_reply(request.messages[0][1], {"label": "human"})

    return LM(ScriptedBackend(respond, name=name), cache=False, **kw)


def test_the_catalog_names_a_known_format_per_model_and_finds_it_under_every_spelling() -> None:
    assert all(m.start_format in (None, *PROMPT_FORMATS) for m in CATALOG.values())
    assert CATALOG["qwen2.5-coder-0.5b"].start_format == "json" and CATALOG[MODEL_15B].start_format == "labels"
    spellings = [MODEL_15B, "qwen-1.5b", f"local/{MODEL_15B}", "local/qwen-1.5b", f"openai/{MODEL_15B}@http://h:1/v1",
                 f"local//root/.cache/prompthone/models/{MODEL_15B}.gguf", f"/models/{MODEL_15B}.gguf"]  # fmt: skip
    assert [start_format_of(s) for s in spellings] == ["labels"] * len(spellings)
    assert [start_format_of(s) for s in ("gpt-4o-mini", "openai/qwen1.5b@http://h:1/v1", "local/x.gguf")] == [None] * 3


def test_an_lm_takes_its_start_format_from_the_catalog_unless_told_and_an_unknown_one_is_refused() -> None:
    assert scripted(MODEL_15B).start_format == "labels" and scripted("some-server-model").start_format is None
    assert scripted("some-server-model", start_format="tags").start_format == "tags"
    assert scripted(MODEL_15B, start_format="json").start_format == "json"
    module = Predict(TREC)
    with using(scripted("m", start_format="xml")), pytest.raises(ValueError) as refused:
        module(question="Who?")  # refused before anything is sent
    assert "LM(start_format=...)" in str(refused.value) and "['labels', 'recap', 'tags', 'json'], got 'xml'" in str(
        refused.value
    )


def test_only_modules_that_left_their_format_to_the_model_adopt_it_and_none_brings_back_their_default() -> None:
    program = TwoStage()
    program.adopt_start_formats("recap")
    assert {n: m.format for n, m in program.named_modules().items()} == {
        "classify": "recap", "explain": REASONING_FORMAT, "fixed": "tags"}  # fmt: skip
    assert Candidate.default(program)["classify"].format == "recap"  # the start candidate is in it
    program.adopt_start_formats(None)  # a model without a start format: the class default again
    assert program.classify.format == DEFAULT_FORMAT
    program.adopt_start_formats("json", per_module={"classify": "labels"})  # a module on another model
    assert program.classify.format == "labels"


def test_naming_a_format_or_loading_a_candidate_fixes_it() -> None:
    set_by_hand = Predict(TREC)
    set_by_hand.format = "tags"
    set_by_hand.adopt_start_format("labels")
    assert set_by_hand.format == "tags"
    program = as_program(Predict(TREC))
    program.load_candidate(Candidate({"predict": program.predict.params.with_format("recap")}))
    program.adopt_start_formats("labels")
    assert program.predict.format == "recap"
    with pytest.raises(ValueError, match=r"start format .* must be one of"):
        Predict(TREC).adopt_start_format("xml")


def test_an_interactive_call_starts_in_its_models_format() -> None:
    seen: list = []
    module = Predict(TREC)
    with using(scripted(MODEL_15B, seen)):
        assert module(question="Who?").label == "human"
    assert reply_layout(seen[0][0][1])[0] == "labels" and module.format == "labels"
    with using(scripted("some-server-model", seen)):
        module(question="Who?")
    assert reply_layout(seen[1][0][1])[0] == "json"


def test_an_old_runs_config_without_the_key_keeps_its_modules_defaults() -> None:
    old = RunSpec(task="trec-mini", optimizer="mipro", model=f"local/{MODEL_15B}").to_config()
    del old["start_format"]
    spec = RunSpec.from_config(old)
    assert spec.start_format == MODULE_DEFAULTS and spec.task_start_format() is None
    fresh = RunSpec(task="trec-mini", optimizer="mipro", model=f"local/{MODEL_15B}")
    assert fresh.task_start_format() == "labels" and fresh.with_resolved_start_format().start_format == "labels"
    unknown = RunSpec(task="trec-mini", optimizer="mipro", model="openai/m@http://h:1/v1")
    assert unknown.with_resolved_start_format().start_format == MODULE_DEFAULTS


@pytest.fixture
def trec_server(tmp_path, monkeypatch):
    """A fake server that answers every classification in the layout it was asked in; yields (url, bodies)."""
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    bodies: list[dict] = []

    def respond(body: dict) -> str:
        bodies.append(body)
        return write_reply(body["messages"][0]["content"], {"label": "human"})

    with FakeOpenAIServer(responder=respond) as url:
        yield url, bodies


@pytest.mark.parametrize(
    ("served_as", "given", "recorded", "layout"),
    [
        (MODEL_15B, None, "labels", "labels"),  # a server that serves a catalog model under its name
        ("qwen1.5b", None, MODULE_DEFAULTS, "json"),  # a name the catalog does not know: the module's default
        ("qwen1.5b", "labels", "labels", "labels"),  # told
    ],
)
def test_a_run_starts_in_its_task_models_format_and_records_it(
    trec_server, tmp_path, served_as, given, recorded, layout
):
    url, bodies = trec_server
    spec = RunSpec(task="trec-mini", optimizer="labeled-fewshot", model=f"openai/{served_as}@{url}", n_train=4,
                   n_val=4, n_test=4, concurrency=2, max_tokens=16, start_format=given,
                   settings={"k": 2}, budget=Budget(max_lm_calls=40))  # fmt: skip
    out = run_sync(run_optimization(spec, out_dir=tmp_path / "runs"))
    assert RunStore(out.run_dir).run_row()["config"]["start_format"] == recorded
    formats = json.loads((out.run_dir / "summary.json").read_text())["prompt_formats"]
    assert formats["task_model"] == recorded and formats["start"] == {"classify": layout}
    assert reply_layout(bodies[0]["messages"][0]["content"])[0] == layout
    # the resumed run is built from the stored config: the same start, whatever the catalog says by then
    again = run_sync(run_optimization(None, resume=out.run_dir))
    assert again.result.best.hash == out.result.best.hash


def test_the_cli_refuses_an_unknown_start_format_with_the_choices(tmp_path) -> None:
    res = CliRunner().invoke(app, ["eval", "--task", "trec-mini", "--start-format", "xml"], env={"COLUMNS": "400"})
    assert res.exit_code == 2 and "expected one of labels, recap, tags, json, module, got 'xml'" in res.output
    assert "Traceback" not in res.output


def test_a_config_names_its_start_format_and_an_unknown_one_is_refused_by_key(tmp_path) -> None:
    from prompthone.runs.config import ConfigFileError, load_config

    path = tmp_path / "run.yaml"
    path.write_text("task: trec-mini\noptimizer: mipro\nstart_format: tags\n")
    assert load_config(path).start_format == "tags"
    path.write_text("task: trec-mini\noptimizer: mipro\nstart_format: xml\n")
    with pytest.raises(ConfigFileError, match=r"start_format: .*'labels', 'recap', 'tags', 'json' or 'module'"):
        load_config(path)


def test_eval_starts_in_the_format_it_is_told_and_says_so(trec_server, tmp_path) -> None:
    url, bodies = trec_server
    args = ["eval", "--task", "trec-mini", "--model", f"openai/{MODEL_15B}@{url}", "--n", "2", "--out", str(tmp_path)]
    served = CliRunner().invoke(app, args, env={"COLUMNS": "400"})  # a catalog name: its start format
    told = CliRunner().invoke(app, [*args, "--start-format", "tags"], env={"COLUMNS": "400"})
    own = CliRunner().invoke(app, [*args, "--start-format", "module"], env={"COLUMNS": "400"})
    assert [r.exit_code for r in (served, told, own)] == [0, 0, 0], served.output + told.output + own.output
    assert "prompt format classify labels" in served.output and "prompt format classify tags" in told.output
    assert "prompt format classify json" in own.output
    layouts = [reply_layout(b["messages"][0]["content"])[0] for b in bodies]
    assert layouts == ["labels"] * 2 + ["tags"] * 2 + ["json"] * 2
