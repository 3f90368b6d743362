"""`import prompthone as ph`: the everyday names, `ph.optimize` as a whole run from Python, and the README's
Python examples executed as written."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

import prompthone as ph
from prompthone.cli.main import app
from prompthone.testing.fake_openai_server import FakeOpenAIServer
from runlib import careful_math_responder

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_everyday_names_are_on_the_package():
    from prompthone.data import Example
    from prompthone.evaluate import Evaluator
    from prompthone.lm import LM
    from prompthone.metrics import ExactMatch, NumericMatch, TokenF1
    from prompthone.program import ChainOfThought, Predict, Program, Signature

    expected = {"Program": Program, "Predict": Predict, "ChainOfThought": ChainOfThought, "Signature": Signature,
                "Example": Example, "LM": LM, "Evaluator": Evaluator, "ExactMatch": ExactMatch,
                "NumericMatch": NumericMatch, "TokenF1": TokenF1}  # fmt: skip
    for name, obj in expected.items():
        assert getattr(ph, name) is obj, name
    assert callable(ph.optimize) and set(expected) <= set(dir(ph))
    with pytest.raises(AttributeError, match="no attribute 'Optimise'"):
        ph.Optimise  # noqa: B018


def test_ph_optimize_stays_the_function_whatever_is_imported_later():
    code = (
        "import prompthone as ph, prompthone.optimize.registry, prompthone.optimize.mipro; "
        "from prompthone.optimize import Budget; import sys; pkg = sys.modules['prompthone.optimize']; "
        "print(ph.optimize.__module__, pkg.__name__, Budget.__name__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["prompthone.runs.python_api", "prompthone.optimize", "Budget"]


class Counter(ph.Program):
    def __init__(self):
        super().__init__()
        self.solve = ph.ChainOfThought("question -> answer", instruction="Count the apples.")

    def forward(self, question):
        return self.solve(question=question)


def apples(start: int, n: int) -> list:
    return [
        ph.Example(
            id=f"a{i}", inputs={"question": f"Tom has {i} apples and eats none. How many?"}, labels={"answer": i}
        )
        for i in range(start, start + n)
    ]


def optimize_counter(url: str, tmp_path: Path, **kw):
    import runlib  # noqa: F401  (registers the instruction-search test optimizer)

    return ph.optimize(
        Counter(),
        trainset=apples(10, 4),
        valset=apples(20, 8),
        testset=apples(40, 6),
        metric=ph.NumericMatch(),
        method="instruction-search",
        model=f"openai/fake@{url}",
        out_dir=tmp_path / "runs",
        max_tokens=32,
        **kw,
    )


def test_optimize_from_python_is_a_whole_run_that_resumes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = FakeOpenAIServer(latency_ms=1, responder=careful_math_responder)
    with server as url:
        program, run = optimize_counter(url, tmp_path)
        paid = run.outcome.usage["task"]["calls"] - run.outcome.usage["task"]["cache_hits"]
        assert paid > 0
        assert run.outcome.start_test.mean == 0.0 and run.outcome.final_test.mean == 1.0  # held-out test, both ends
        assert run.outcome.start_test.n == 6 and run.result.start_score == 0.0 and run.result.best_score == 1.0
        assert "carefully" in program.solve.params.instruction  # the returned program carries the best prompt
        assert "carefully" not in Counter().solve.params.instruction
        for name in ("run.sqlite", "summary.json", "best_prompts.txt", "report.html", "best_messages.json"):
            assert (run.run_dir / name).is_file(), name
        summary = json.loads((run.run_dir / "summary.json").read_text())
        assert summary["final_test"]["n"] == 6 and summary["metric"] == ph.NumericMatch().name

        # the same call with resume= replays the run from its own file: nothing is bought again
        before = server.requests_received
        again = optimize_counter(url, tmp_path, resume=run.run_dir)
        assert server.requests_received == before
        assert again.best == run.best and again.run_dir == run.run_dir

    # the CLI reads the run like any other; resuming it needs the Python objects, and says so
    shown = CliRunner().invoke(app, ["show", str(run.run_dir)])
    assert shown.exit_code == 0, shown.output
    assert "counter" in shown.output
    resumed = CliRunner().invoke(app, ["optimize", "--resume", str(run.run_dir)])
    said = " ".join(resumed.output.split())
    assert resumed.exit_code != 0 and "were given in Python" in said and "resume=RUN_FOLDER" in said
    assert "Traceback" not in resumed.output


def test_resuming_with_a_different_program_is_refused(tmp_path):
    with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as url:
        _, run = optimize_counter(url, tmp_path)

        class Other(Counter):
            def __init__(self):
                super().__init__()
                self.solve = ph.ChainOfThought("question -> answer", instruction="Count the pears.")

        with pytest.raises(ValueError, match="prompts differ from the ones this run started from"):
            ph.optimize(Other(), trainset=apples(10, 4), valset=apples(20, 8), metric=ph.NumericMatch(),
                        method="instruction-search", model=f"openai/fake@{url}", resume=run.run_dir)  # fmt: skip


def test_without_a_valset_a_seeded_fifth_of_the_trainset_trains(tmp_path):
    import runlib  # noqa: F401

    with FakeOpenAIServer(latency_ms=1, responder=careful_math_responder) as url:
        _, run = ph.optimize(Counter(), trainset=apples(10, 20), metric=ph.NumericMatch(), method="instruction-search",
                             model=f"openai/fake@{url}", out_dir=tmp_path / "runs", max_tokens=32)  # fmt: skip
    manifest = _manifest(run.run_dir)
    assert (manifest["data"]["train"]["n"], manifest["data"]["val"]["n"], manifest["data"]["test"]["n"]) == (4, 16, 0)
    assert "start_test" not in json.loads((run.run_dir / "summary.json").read_text())


def _manifest(run_dir: Path) -> dict:
    from prompthone.store import RunStore

    store = RunStore(run_dir)
    try:
        return store.run_row()["manifest"]
    finally:
        store.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "mipr"}, "method: unknown optimizer 'mipr'"),
        ({"method": "mipro", "num_trails": 3}, "num_trails"),
        ({"trainset": [{"question": "q"}]}, r"trainset\[0\]: expected a prompthone Example"),
    ],
)
def test_python_mistakes_are_named_before_any_run_folder(tmp_path, kwargs, message):
    args = {"trainset": apples(0, 3), "metric": ph.NumericMatch(), "out_dir": tmp_path / "runs", **kwargs}
    with pytest.raises((ValueError, TypeError), match=message):
        ph.optimize(Counter(), **args)
    assert not (tmp_path / "runs").exists()


def readme_python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_the_readme_has_python_examples():
    blocks = readme_python_blocks()
    assert len(blocks) >= 2 and any("ph.optimize(" in b for b in blocks)


@pytest.mark.model
def test_the_readmes_python_examples_run_as_written(tmp_path):
    """Each block runs in a fresh interpreter, in an empty folder, on the embedded model (answers are cached
    per test, so this is what a user's first run computes)."""
    for i, block in enumerate(readme_python_blocks()):
        script = tmp_path / f"readme_{i}.py"
        script.write_text(block)
        done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True)
        assert done.returncode == 0, f"README python block {i} failed:\n{block}\n{done.stderr[-3000:]}"
