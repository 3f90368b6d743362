"""Issue 8, item 4: the same optimization re-run with a warm cache sends no request and gives the same result.

Not timed (the speed is measured by benchmarks/warm_cache.py). The server is the fake OpenAI server
with `TaskResponder`: deterministic answers that are right or wrong depending on the prompt, so MIPRO
proposes, bootstraps and scores candidates that really differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from prompthone.data.example import Example
from prompthone.optimize.proposers.instructions import clean_instruction
from prompthone.program import Predict, PromptParams, parse_reply, render_messages
from prompthone.program.params import PROMPT_FORMATS
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.tasks import get_task
from prompthone.testing import FakeOpenAIServer
from prompthone.testing.task_responder import TaskResponder

TASK = "sst2"


def spec(base_url: str) -> RunSpec:
    settings = {
        "preset": None,
        "num_candidates": 2,
        "num_trials": 4,
        "val_size": 8,
        "minibatch_size": 4,
        "full_eval_every": 2,
        "max_bootstrapped_demos": 1,
        "max_labeled_demos": 1,
        "summary_batches": 1,
        "proposer_max_tokens": 60,
    }
    return RunSpec(task=TASK, optimizer="mipro", model=f"openai/fake@{base_url}", settings=settings,
                   n_train=8, n_val=8, n_test=6, seed=3, concurrency=4, max_tokens=16)  # fmt: skip


def fingerprint(outcome: RunOutcome) -> dict:
    r = outcome.result
    return {
        "best": r.best.hash,
        "best_score": r.best_score,
        "start_score": r.start_score,
        "trials": [(t.index, t.candidate.hash, t.score, t.n, t.full) for t in r.trials],
        "start_test": outcome.start_test.mean,
        "final_test": outcome.final_test.mean,
    }


async def test_rerun_with_warm_cache_sends_no_request_and_gives_the_same_result(tmp_path: Path) -> None:
    server = FakeOpenAIServer(responder=TaskResponder(get_task(TASK).load(None)))
    with server as base_url:
        first = await run_optimization(spec(base_url), out_dir=tmp_path / "runs")
        paid = server.requests_received
        again = await run_optimization(spec(base_url), out_dir=tmp_path / "runs")
        assert server.requests_received == paid  # not one request more
    assert isinstance(first, RunOutcome) and isinstance(again, RunOutcome)
    assert first.run_dir != again.run_dir  # a new run folder, as a repeated command makes
    assert paid > 20  # the first run really called the server: proposals, bootstrapping, trials, test
    # the optimizer did real work: several candidates, scored differently
    assert len({t.candidate.hash for t in first.result.trials}) > 1
    assert len({t.score for t in first.result.trials}) > 1
    assert fingerprint(again) == fingerprint(first)
    # what the re-run's LMs saw: every call answered from the cache
    for usage in (*again.usage.values(), again.test_usage):
        assert usage["paid_calls"] == 0
    assert sum(u["cache_hits"] for u in again.usage.values()) > 0


def _examples() -> list[Example]:
    return [
        Example(id=f"e{i}", inputs={"sentence": f"review number {i} was {w}"}, labels={"answer": lab})
        for i, (w, lab) in enumerate([("great", "positive"), ("dull", "negative")] * 20)
    ]


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
def test_task_responder_is_deterministic_prompt_dependent_and_well_formed(fmt: str) -> None:
    examples = _examples()
    responder = TaskResponder(examples)
    sig = Predict("sentence -> answer").signature
    predict = PromptParams("Is the sentiment positive or negative?", format=fmt)
    other = PromptParams("Label the review's tone.", format=fmt)

    def replies(p: PromptParams) -> list[str]:
        return [responder({"messages": render_messages(sig, p, ex.inputs)}) for ex in examples]

    def answers(rs: list[str]) -> list[str]:
        parsed = [parse_reply(sig, r, format=fmt) for r in rs]
        assert all(p.how == {"answer": "json" if fmt == "json" else "label"} for p in parsed), rs[0]
        return [p.values["answer"] for p in parsed]  # written as the format asks, so read without a fallback

    first = replies(predict)
    assert first == replies(predict)  # a pure function of the request
    assert set(answers(first)) == {"positive", "negative"}
    accuracy = [
        sum(a == ex.labels["answer"] for a, ex in zip(answers(rs), examples, strict=True)) / len(examples)
        for rs in (first, replies(other))
    ]
    assert all(0 < a < 1 for a in accuracy)  # right on some, wrong on others
    assert first != replies(other)  # and the prompt matters


@pytest.mark.parametrize("seed", range(5))
def test_task_responder_proposals_pass_the_instruction_cleaner(seed: int) -> None:
    responder = TaskResponder(_examples())
    prompt = "Its current instruction is:\nX\n\nWrite a new instruction for this step."
    reply = responder({"messages": [{"role": "user", "content": prompt}], "seed": seed, "temperature": 1.0})
    text, reason = clean_instruction(reply, field_labels=["Sentence", "Answer"])
    assert text is not None, reason


def test_fake_server_process_answers_a_task_and_counts_requests() -> None:
    """`--task` and `GET /_fake/stats`, which benchmarks/warm_cache.py relies on, in the subprocess server."""
    from prompthone.lm import LM
    from prompthone.testing import FakeOpenAIServerProcess

    example = get_task(TASK).load(None)[0]
    program = get_task(TASK).make_program(None)
    messages = render_messages(program.classify.signature, program.classify.params, example.inputs)
    server = FakeOpenAIServerProcess(task=TASK)
    with server as base_url:
        assert server.stats()["requests_received"] == 0
        lm = LM(f"openai/fake@{base_url}", cache=False, max_retries=0)
        text = lm.complete_sync(messages, max_tokens=16).text
        assert server.stats()["requests_received"] == 1  # reading the counter is not counted
    assert program.classify.format == "json" and text in ('{"answer": "positive"}', '{"answer": "negative"}')
