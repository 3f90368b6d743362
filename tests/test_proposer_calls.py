"""Issue 16, part 3: every proposer call of every method goes through the one call path
(`optimize.proposers.calls`), so each proposer-role LM call the run store records has its `proposal`
event, matched by the call's response-cache key. Through the real runner, against the fake OpenAI
server answering like a model of some skill (`TaskResponder`)."""

from __future__ import annotations

import sqlite3
from collections import Counter
from pathlib import Path

import pytest

from prompthone.optimize.registry import OPTIMIZERS
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunSpec
from prompthone.store import RunStore
from prompthone.tasks import get_task
from prompthone.testing import FakeOpenAIServer
from prompthone.testing.task_responder import TaskResponder

TASK = "trec-mini"
SMALL_MIPRO = {
    "preset": None,
    "num_candidates": 3,
    "num_trials": 3,
    "minibatch_size": 4,
    "full_eval_every": 2,
    "max_bootstrapped_demos": 1,
    "max_labeled_demos": 1,
    "summary_batches": 1,
    "proposer_max_tokens": 60,
}
SMALL_GRADSUM = {"iterations": 2, "beam_width": 1, "edits_per_prompt": 2, "minibatch_size": 6}
SETTINGS = {
    "mipro": SMALL_MIPRO,
    "mipro-0shot": SMALL_MIPRO,
    "bayesian-bootstrap": SMALL_MIPRO,
    "mipro++": SMALL_MIPRO,
    "labeled-fewshot": {"k": 2},
    "bootstrap-fewshot": {"max_bootstrapped_demos": 1, "max_labeled_demos": 1, "teacher_labeled": 1},
    "bootstrap-random-search": {"num_candidate_sets": 2, "max_bootstrapped_demos": 1, "max_labeled_demos": 1},
    "opro": {"steps": 2, "candidates_per_step": 3, "train_batch": 4},
    "gradsum": SMALL_GRADSUM,
    "gradsum-nosum": SMALL_GRADSUM,
}
#: methods that ask a proposer at all (the others only bootstrap and pick demos)
PROPOSING = {"mipro", "mipro-0shot", "mipro++", "opro", "gradsum", "gradsum-nosum"}
METHODS = [name for name, entry in OPTIMIZERS.items() if isinstance(entry, str) and entry.startswith("prompthone.")]


def test_every_registered_method_is_covered() -> None:
    assert sorted(METHODS) == sorted(SETTINGS)


def _proposer_calls(run_dir: Path) -> Counter[str]:
    con = sqlite3.connect(run_dir / "run.sqlite")
    try:
        rows = con.execute("SELECT cache_key FROM ph_lm_calls WHERE role = 'proposer'").fetchall()
    finally:
        con.close()
    return Counter(key for (key,) in rows)


@pytest.fixture(scope="module")
def server():
    srv = FakeOpenAIServer(responder=TaskResponder(get_task(TASK).load(None)))
    with srv as url:
        yield url


@pytest.mark.parametrize("method", METHODS)
async def test_each_proposer_call_of_a_run_is_in_the_store_and_has_its_event(
    method: str, server: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    spec = RunSpec(task=TASK, optimizer=method, model=f"openai/fake@{server}", settings=SETTINGS[method],
                   n_train=12, n_val=8, n_test=4, concurrency=4, max_tokens=16)  # fmt: skip
    out = await run_optimization(spec, out_dir=tmp_path / "runs")
    calls = _proposer_calls(out.run_dir)
    events = [e["data"] for e in RunStore(out.run_dir).events() if e["kind"] == "proposal"]
    assert Counter(d["cache_key"] for d in events) == calls
    if method in PROPOSING:
        assert sum(calls.values()) > 0
        purposes = {d["purpose"] for d in events}
        if method.startswith("gradsum"):
            assert {"gradsum_gradient", "gradsum_edit"} <= purposes
            assert ("gradsum_summary" in purposes) == (method == "gradsum")
    else:
        assert not calls
