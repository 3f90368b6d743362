"""OPRO on the real embedded model, with a budget small enough for about a minute on 2 cores."""

from __future__ import annotations

import pytest

from prompthone.lm import LM
from prompthone.optimize import Budget
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunSpec

pytestmark = pytest.mark.model

MODEL = "local/qwen2.5-coder-0.5b"


def test_local_model_continues_a_prefilled_assistant_message():
    """The "start of the answer" position relies on the backend continuing the last assistant turn."""
    lm = LM(MODEL, cache=False)
    chat = [
        {"role": "user", "content": "Count from 1 to 8, separated by commas."},
        {"role": "assistant", "content": "1, 2, 3,"},
    ]
    c = lm.complete_sync(chat, max_tokens=12)
    assert c.text.strip().startswith("4"), c.text  # a continuation, not a fresh answer from "1"
    assert c.completion_tokens <= 12 and c.prompt_tokens > 10


async def test_opro_end_to_end_on_the_embedded_model(tmp_path):
    spec = RunSpec(
        task="sst2",
        optimizer="opro",
        model=MODEL,
        settings={"steps": 1, "candidates_per_step": 2, "proposer_max_tokens": 64, "n_exemplars": 2},
        n_train=3,
        n_val=3,
        n_test=3,
        max_tokens=8,
        concurrency=2,
        budget=Budget(max_wall_s=600),
    )
    out = await run_optimization(spec, out_dir=tmp_path)
    r = out.result
    assert r.stopped_by == "completed"
    assert r.trials[0].full and r.trials[0].n == 3 and r.start_score == r.trials[0].score
    step = r.info["steps"][0]
    assert step["proposed"] == 2 and step["failed"] == 0
    assert step["new"] + step["duplicates"] + step["unparsed"] == 2
    assert step["new"] >= 1, "the model's replies gave no instruction to score"
    proposed = [h["instruction"] for h in r.info["modules"]["classify"]["history"][1:]]
    assert proposed and all(p.strip() and "<INS>" not in p for p in proposed)
    # every new instruction was scored on the 3 training examples, the best on validation
    assert [t.n for t in r.trials if not t.full] == [3] * (1 + step["new"])
    assert r.best_score >= r.start_score
    assert out.usage["proposer"]["calls"] == 2
    assert out.final_test.n == 3 and out.start_test.n == 3
