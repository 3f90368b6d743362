"""A user's own program, data and metric, optimized from a config file; and the errors a user can make."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from prompthone.lm import run_sync
from prompthone.report import write_report
from prompthone.runs.config import ConfigFileError, load_config
from prompthone.runs.runner import run_optimization
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import careful_math_responder

PIPELINE = '''
from prompthone.program import ChainOfThought, Program


class Counter(Program):
    """The user's program: plain Python around one module."""

    def __init__(self):
        super().__init__()
        self.solve = ChainOfThought("question -> count", instruction="Count the apples.")

    def forward(self, question):
        return self.solve(question=question)


def same_number(example, prediction):
    return float(prediction["count"].strip() == str(example.labels["count"]))
'''


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A user's folder: their pipeline module, their data, and a config that names both relatively."""
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    folder = tmp_path / "my_project"
    (folder / "data").mkdir(parents=True)
    module = f"pipeline_{tmp_path.name.replace('-', '_')}"  # a fresh module name per test
    (folder / f"{module}.py").write_text(PIPELINE)
    with open(folder / "data" / "apples.jsonl", "w") as f:
        for i in range(24):
            f.write(json.dumps({"q": f"Tom has {10 + i} apples and eats none. How many?", "n": 10 + i}) + "\n")
    yield folder, module
    sys.modules.pop(module, None)


def count_responder(body: dict) -> str:
    """The test model of runlib, answering the user's output field `count`."""
    return careful_math_responder(body).replace("Answer:", "Count:")


def config(folder: Path, module: str, url: str, **task: str) -> Path:
    task = {"program": f"{module}:Counter", "metric": f"{module}:same_number", **task}
    lines = [f"  {k}: {v}" for k, v in task.items()]
    text = "\n".join(
        [
            "task:",
            *lines,
            "  data: {path: data/apples.jsonl, inputs: {q: question}, labels: {n: count}, label_types: {count: int}}",
            "optimizer: instruction-search",
            f"models: {{task: 'openai/fake@{url}'}}",
            "splits: {train: 4, val: 10, test: 10}",
            "max_tokens: 32",
        ]
    )
    path = folder / "run.yaml"
    path.write_text(text)
    return path


def test_a_users_program_data_and_metric_are_optimized_from_a_config(project, tmp_path, monkeypatch):
    import runlib  # noqa: F401  (registers the instruction-search test optimizer)

    folder, module = project
    monkeypatch.chdir(tmp_path)  # not the config's folder: relative paths are read from the config's folder
    with FakeOpenAIServer(latency_ms=1, responder=count_responder) as url:
        spec = load_config(config(folder, module, url, name="apple-counter"))
        assert Path(spec.task["data"]["path"]) == folder / "data" / "apples.jsonl"
        assert spec.task["path"] == str(folder)
        out = run_sync(run_optimization(spec, out_dir=tmp_path / "runs"))
    assert out.start_test.mean == 0.0 and out.final_test.mean == 1.0  # the user's metric, on the user's data
    assert "carefully" in out.result.best["solve"].instruction
    assert out.run_dir.name.startswith("instruction-search-apple-counter-")
    page = write_report(out.run_dir).read_text()  # the report rebuilds the program from the stored config
    assert "instruction-search on apple-counter" in page
    assert "<del>Count</del>" in page  # the diff against the user's own starting instruction


@pytest.mark.parametrize(
    ("task", "needles"),
    [
        ({"program": "nope_module:Counter"}, ["task.program", "cannot import module 'nope_module'"]),
        ({"program": "{module}:Missing"}, ["task.program", "has no attribute 'Missing'"]),
        ({"program": "{module}:same_number"}, ["task.program", "with no arguments failed", "a Program subclass"]),
        ({"metric": "rouge"}, ["task.metric", "unknown metric 'rouge'", "exact_match"]),
        ({"program": "no_colon"}, ["task.program: expected 'module:attribute'", "got 'no_colon'"]),
    ],
)
def test_user_task_mistakes_name_the_key_before_anything_runs(project, task, needles):
    folder, module = project
    task = {k: v.format(module=module) for k, v in task.items()}
    with pytest.raises(ConfigFileError) as err:
        load_config(config(folder, module, "http://127.0.0.1:9/v1", **task))
    for needle in needles:
        assert needle in str(err.value)


def test_bad_user_data_names_the_file_line_and_field(project):
    folder, module = project
    with open(folder / "data" / "apples.jsonl", "a") as f:
        f.write(json.dumps({"q": "How many?"}) + "\n")  # line 25 has no label
    with pytest.raises(ConfigFileError) as err:
        load_config(config(folder, module, "http://127.0.0.1:9/v1"))
    assert "apples.jsonl" in str(err.value) and "25" in str(err.value) and "'n'" in str(err.value)


def _write_apples(path: Path, start: int, n: int) -> None:
    with open(path, "w") as f:
        for i in range(start, start + n):
            f.write(json.dumps({"q": f"Tom has {i} apples and eats none. How many?", "n": i}) + "\n")


def split_files_config(folder: Path, module: str, data: str, splits: str = "") -> Path:
    text = "\n".join(
        [
            "task:",
            f"  program: {module}:Counter",
            f"  metric: {module}:same_number",
            f"  data: {{{data}, inputs: {{q: question}}, labels: {{n: count}}, label_types: {{count: int}}}}",
            "optimizer: instruction-search",
            "models: {task: 'openai/fake@http://127.0.0.1:9/v1'}",
            *([f"splits: {splits}"] if splits else []),
        ]
    )
    path = folder / "splits.yaml"
    path.write_text(text)
    return path


def _run_splits(spec):
    from prompthone.tasks import get_task
    from prompthone.tasks.splits import task_splits

    task = get_task(spec.task)
    return task_splits(task, n_train=spec.n_train, n_val=spec.n_val, n_test=spec.n_test, seed=spec.seed)


def test_separate_train_val_test_files_are_used_whole(project):
    folder, module = project
    for name, start, n in (("train", 100, 7), ("val", 200, 5), ("test", 300, 9)):
        _write_apples(folder / "data" / f"{name}.jsonl", start, n)
    data = "train: data/train.jsonl, val: data/val.jsonl, test: data/test.jsonl"
    parts = _run_splits(load_config(split_files_config(folder, module, data)))
    assert (len(parts.train), len(parts.val), len(parts.test)) == (7, 5, 9)
    assert sorted(ex.labels["count"] for ex in parts.test) == list(range(300, 309))  # exactly the test file
    assert all(ex.id.startswith("train:") for ex in parts.train)


def test_a_fixed_test_file_beside_a_pool_that_is_split_by_seed(project):
    folder, module = project
    _write_apples(folder / "data" / "test.jsonl", 500, 12)
    data = "path: data/apples.jsonl, test: data/test.jsonl"
    spec = load_config(split_files_config(folder, module, data, "{train: 5, val: 8, test: 6}"))
    parts = _run_splits(spec)
    assert (len(parts.train), len(parts.val), len(parts.test)) == (5, 8, 6)  # test sampled to its size
    assert {ex.labels["count"] for ex in parts.test} <= set(range(500, 512))
    assert all(10 <= ex.labels["count"] < 34 for ex in parts.train + parts.val)  # from the pool file


def test_split_files_mistakes_name_the_key(project):
    folder, module = project
    _write_apples(folder / "data" / "test.jsonl", 500, 3)
    with pytest.raises(ConfigFileError, match=r"task\.data: .*expected `path` .*got test but no train, val"):
        load_config(split_files_config(folder, module, "test: data/test.jsonl"))
    with pytest.raises(ConfigFileError, match=r"splits\.test asks for 6 examples but the test file holds 3"):
        load_config(split_files_config(folder, module, "path: data/apples.jsonl, test: data/test.jsonl", "{test: 6}"))
