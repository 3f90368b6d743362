"""Faults a user can cause from the command line: each ends with one clear line naming the flag, key or
file, a non-zero exit, no traceback, and no run folder left behind when nothing ran."""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from prompthone.cli.main import app
from prompthone.store import RunStore, is_run_folder
from prompthone.testing.fake_openai_server import FakeOpenAIServer, Fault
from runlib import careful_math_responder, mipro_math_responder, write_fake_gsm8k

runner = CliRunner()


def optimize(tmp: Path, *args: str) -> list[str]:
    """`prompthone optimize --task gsm8k` on the fake data under `tmp`, runs into `tmp/runs`, plus `args`."""
    return ["optimize", "--task", "gsm8k", "--data-root", str(tmp / "data"), "--out", str(tmp / "runs"), *args]


def run_folders(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*")) if out.exists() else []


def one_clear_error(res, *needles: str, code: int = 1) -> str:
    """The failure a person should see: the exit code, no traceback, one `error:` line with the needles."""
    text = res.output
    assert res.exit_code == code, text
    assert "Traceback" not in text, text
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # a clean exit, not an uncaught error
    for needle in needles:
        assert needle in text, f"{needle!r} not in {text!r}"
    return text


@pytest.fixture
def data(tmp_path, monkeypatch):
    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    return tmp_path


def write_config(path: Path, **keys: object) -> Path:
    path.write_text("\n".join(f"{k}: {json.dumps(v)}" for k, v in keys.items()) + "\n")
    return path


# -- 1. a refused key for a helper model stops the run at once ------------------------------------------------

JUDGE = {
    "task_description": "Solve a word problem.",
    "criteria": "1 if it matches the reference.",
    "reference_field": "answer",
    "output_fields": ["answer"],
}


@pytest.mark.parametrize(
    ("role", "optimizer", "extra"),
    [
        ("teacher", "bootstrap-fewshot", {}),
        ("teacher", "mipro", {"settings": {"num_candidates": 2, "num_trials": 2, "minibatch_size": 4}}),
        ("proposer", "opro", {"settings": {"steps": 2, "candidates_per_step": 2}}),
        ("proposer", "mipro", {"settings": {"num_candidates": 2, "num_trials": 2, "minibatch_size": 4}}),
        ("judge", "bootstrap-fewshot", {"judge": JUDGE}),
    ],
)
def test_a_refused_key_for_a_helper_model_stops_the_run_at_once(data, role, optimizer, extra):
    """Bootstrapping, proposers and the judge tolerate wrong answers and unreadable replies, never a 401:
    it would fail every call alike, and the run would end 'completed' having learnt nothing."""
    tmp = data
    good, refusing = FakeOpenAIServer(responder=mipro_math_responder), FakeOpenAIServer()
    with good as url, refusing as bad_url:
        refusing.inject(Fault.unauthorized(), times=None)
        models = {"task": f"openai/fake@{url}", role: f"openai/{role}@{bad_url}"}
        cfg = write_config(
            tmp / "run.yaml",
            task="gsm8k",
            optimizer=optimizer,
            data_root=str(tmp / "data"),
            models=models,
            splits={"train": 8, "val": 6, "test": 6},
            max_tokens=32,
            concurrency=2,
            max_errors=100,  # per-example errors are tolerated: a refused key still is not one
            **extra,
        )
        res = runner.invoke(app, ["optimize", str(cfg), "--out", str(tmp / "runs")])
        refused = refusing.requests_received
    text = one_clear_error(res, f"{role} model", "refused the API key", "OPENAI_API_KEY")
    assert refused <= 2  # at once: no more than the calls already in flight
    (folder,) = run_folders(tmp / "runs")
    row = RunStore(folder).run_row()
    assert row["status"] == "failed" and "AuthenticationError" in row["result"]["error"]
    assert not (folder / "summary.json").exists()
    assert text.count("error:") == 1


def test_a_refused_task_model_key_stops_the_run_even_when_errors_are_tolerated(data):
    tmp = data
    refusing = FakeOpenAIServer()
    with refusing as bad_url:
        refusing.inject(Fault.unauthorized(), times=None)
        cfg = write_config(
            tmp / "run.yaml",
            task="gsm8k",
            optimizer="bootstrap-fewshot",
            data_root=str(tmp / "data"),
            models={"task": f"openai/fake@{bad_url}"},
            splits={"train": 4, "val": 4, "test": 6},
            concurrency=2,
            max_errors=100,
        )
        res = runner.invoke(app, ["optimize", str(cfg), "--out", str(tmp / "runs")])
        assert refusing.requests_received <= 2
    one_clear_error(res, "task model", "refused the API key")


def test_a_wrong_answer_from_the_teacher_is_still_tolerated(data):
    """The other side: a teacher that answers wrongly or unreadably leaves bootstrapping with fewer demos."""
    tmp = data
    with (
        FakeOpenAIServer(responder=careful_math_responder) as url,
        FakeOpenAIServer(responder=lambda body: "I cannot read this.") as teacher_url,
    ):
        cfg = write_config(
            tmp / "run.yaml",
            task="gsm8k",
            optimizer="bootstrap-fewshot",
            data_root=str(tmp / "data"),
            models={"task": f"openai/fake@{url}", "teacher": f"openai/teacher@{teacher_url}"},
            splits={"train": 4, "val": 4, "test": 4},
            max_tokens=32,
        )
        res = runner.invoke(app, ["optimize", str(cfg), "--out", str(tmp / "runs")])
    assert res.exit_code == 0, res.output
    (folder,) = run_folders(tmp / "runs")
    assert RunStore(folder).run_row()["status"] == "completed"


# -- 2. flags validated like config keys --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--max-calls", "0"], "--max-calls"),
        (["--max-calls", "-3"], "--max-calls"),
        (["--max-minutes", "0"], "--max-minutes"),
        (["--max-minutes", "-1.5"], "--max-minutes"),
        (["--n-test", "0"], "--n-test"),
        (["--n-train", "-1"], "--n-train"),
        (["--n-val", "0"], "--n-val"),
        (["--max-tokens", "0"], "--max-tokens"),
        (["--concurrency", "0"], "--concurrency"),
        (["--timeout", "0"], "--timeout"),
        (["--timeout", "-2"], "--timeout"),
    ],
)
def test_optimize_numeric_flags_are_checked_before_anything_runs(data, args, flag):
    tmp = data
    res = runner.invoke(app, optimize(tmp, *args))
    one_clear_error(res, flag, code=2)
    assert run_folders(tmp / "runs") == []


@pytest.mark.parametrize(
    "args",
    [
        ["eval", "--task", "gsm8k", "--n", "0"],
        ["eval", "--task", "gsm8k", "--max-tokens", "-1"],
        ["eval", "--task", "gsm8k", "--timeout", "0"],
        ["lm", "hi", "--max-tokens", "0"],
        ["lm", "hi", "--timeout", "-1"],
        ["demo", "--max-minutes", "0"],
        ["demo", "--threads", "0"],
    ],
)
def test_eval_and_lm_numeric_flags_are_checked(data, args):
    res = runner.invoke(app, [*args, "--model", "openai/m@http://127.0.0.1:9/v1"])
    one_clear_error(res, args[-2], code=2)


@pytest.mark.parametrize(
    ("setting", "needles"),
    [
        ("num_trials=abc", ["--set num_trials", "'abc'", "integer"]),
        ("num_trials=0", ["--set", "num_trials", "must be an integer >= 1"]),
        ("no_such_knob=1", ["--set", "no_such_knob"]),
        ("proposal_temperature=hot", ["--set proposal_temperature", "'hot'", "number"]),
        ("num_trials", ["--set expects KEY=VALUE", "'num_trials'"]),
    ],
)
def test_a_bad_set_value_names_the_key_before_any_folder_is_made(data, setting, needles):
    tmp = data
    res = runner.invoke(
        app,
        optimize(tmp, "--set", setting, "--model", "openai/m@http://127.0.0.1:9/v1"),
    )
    one_clear_error(res, *needles)
    assert run_folders(tmp / "runs") == []


def test_a_bad_setting_in_a_config_names_the_key(data):
    tmp = data
    cfg = write_config(tmp / "run.yaml", task="gsm8k", optimizer="mipro", settings={"num_trials": "abc"})
    res = runner.invoke(app, ["optimize", str(cfg), "--dry-run"])
    one_clear_error(res, "settings.num_trials", "'abc'", "integer")


def test_splits_larger_than_the_data_name_the_flags_and_the_task(data):
    tmp = data
    res = runner.invoke(
        app,
        optimize(
            tmp, "--n-train", "10", "--n-val", "10", "--n-test", "100", "--model", "openai/m@http://127.0.0.1:9/v1"
        ),
    )
    one_clear_error(res, "gsm8k", "40 examples", "120", "--n-train", "--n-val", "--n-test")
    assert run_folders(tmp / "runs") == []


# -- a user's program and data --------------------------------------------------------------------------

PIPELINE = """
from prompthone.program import Predict, Program


class Counter(Program):
    def __init__(self):
        super().__init__()
        self.solve = Predict("question -> count", instruction="Count the apples.")

    def forward(self, question):
        return self.solve(question=question)
"""


@pytest.fixture
def project(tmp_path, monkeypatch):
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    module = f"faults_{tmp_path.name.replace('-', '_')}"
    (tmp_path / f"{module}.py").write_text(PIPELINE)
    with open(tmp_path / "apples.jsonl", "w") as f:
        for i in range(24):
            f.write(json.dumps({"q": f"Tom has {10 + i} apples. How many?", "n": 10 + i}) + "\n")
    yield tmp_path, module
    sys.modules.pop(module, None)


def user_config(folder: Path, module: str, *, inputs: dict, splits: dict) -> Path:
    return write_config(
        folder / "run.yaml",
        task={
            "program": f"{module}:Counter",
            "data": {"path": "apples.jsonl", "inputs": inputs, "labels": {"n": "count"}},
        },
        optimizer="bootstrap-fewshot",
        models={"task": "openai/m@http://127.0.0.1:9/v1"},
        splits=splits,
    )


def test_user_splits_larger_than_the_file_name_the_file_and_the_keys(project):
    folder, module = project
    cfg = user_config(folder, module, inputs={"q": "question"}, splits={"train": 10, "val": 10, "test": 10})
    res = runner.invoke(app, ["optimize", str(cfg), "--dry-run", "--out", str(folder / "runs")])
    one_clear_error(res, "apples.jsonl", "24 examples", "30", "splits.train", "splits.test")
    assert run_folders(folder / "runs") == []


@pytest.mark.parametrize("dry_run", [True, False])
def test_an_input_mapping_the_program_cannot_take_is_caught_before_any_folder(project, dry_run):
    folder, module = project
    cfg = user_config(folder, module, inputs={"q": "text"}, splits={"train": 4, "val": 4, "test": 4})
    res = runner.invoke(app, ["optimize", str(cfg), "--out", str(folder / "runs"), *(["--dry-run"] * dry_run)])
    one_clear_error(res, "task.data.inputs", "'text'", "question")
    assert run_folders(folder / "runs") == []


def test_a_missing_gguf_file_leaves_no_run_folder(data):
    tmp = data
    res = runner.invoke(
        app,
        optimize(tmp, "--model", f"local/{tmp}/nope.gguf", "--n-train", "4", "--n-val", "4", "--n-test", "4"),
    )
    one_clear_error(res, "GGUF file not found", "nope.gguf")
    assert not any(is_run_folder(p) for p in run_folders(tmp / "runs"))
    assert run_folders(tmp / "runs") == []


# -- 3. timeout, retry wording, key masking, terminal safety ------------------------------------------------


def test_lm_timeout_flag_bounds_a_hung_server_and_the_last_message_does_not_promise_a_retry():
    server = FakeOpenAIServer()
    with server as url:
        server.inject(Fault.hang(), times=None)
        t0 = time.monotonic()
        res = runner.invoke(app, ["lm", "hi", "--model", f"openai/m@{url}", "--timeout", "0.2", "--no-cache"])
        took = time.monotonic() - t0
    text = one_clear_error(res, "within 0.2s", "--timeout")
    assert "retried" not in text and "will retry" not in text
    assert took < 20


def test_optimize_timeout_reaches_every_role_and_is_stored(data):
    from prompthone.runs.roles import role_lms
    from prompthone.runs.spec import RunSpec

    tmp = data
    server = FakeOpenAIServer(responder=careful_math_responder)
    with server as url:
        res = runner.invoke(
            app,
            [
                *optimize(tmp, "--model", f"openai/fake@{url}", "--optimizer", "bootstrap-fewshot"),
                *("--timeout", "7.5", "--n-train", "4", "--n-val", "4", "--n-test", "4"),
            ],
        )
    assert res.exit_code == 0, res.output
    (folder,) = run_folders(tmp / "runs")
    spec = RunSpec.from_config(RunStore(folder).run_row()["config"])
    assert spec.timeout_s == 7.5
    assert {lm.timeout_s for lm in role_lms(spec, False).values()} == {7.5}


def test_config_timeout_key_is_read_and_checked(data):
    from prompthone.runs.config import ConfigFileError, load_config

    tmp = data
    spec = load_config(write_config(tmp / "ok.yaml", task="gsm8k", optimizer="mipro", timeout_s=300))
    assert spec.timeout_s == 300
    with pytest.raises(ConfigFileError, match=r"timeout_s: .*greater than 0"):
        load_config(write_config(tmp / "bad.yaml", task="gsm8k", optimizer="mipro", timeout_s=0))


def test_lm_strips_terminal_control_sequences_from_model_text():
    evil = "\x1b]0;pwned\x07\x1b[2J\x1b[31mred\x1b[0m\x9b1m and\x08\x00 bell\x07\r\ttab\nnext line"
    with FakeOpenAIServer(responder=lambda body: evil) as url:
        res = runner.invoke(app, ["lm", "hi", "--model", f"openai/m@{url}"])
    assert res.exit_code == 0, res.output
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", res.stdout), repr(res.stdout)
    assert re.search(r"red and bell\s+tab\nnext line", res.stdout), repr(res.stdout)  # rich expands tabs
