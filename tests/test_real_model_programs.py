"""Programs and evaluation on the real embedded model: one single-stage and one two-stage built-in
task end to end, and exported prompts that reproduce the program's output through the raw openai client."""

from __future__ import annotations

import json

import openai
import pytest

from model_server import llama_server
from prompthone.data import split
from prompthone.evaluate import Evaluator
from prompthone.lm import LM
from prompthone.lm.local.backend import LocalBackend
from prompthone.program import Candidate, run_program
from prompthone.program.portable import render_prompts
from prompthone.tasks import get_task

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def qwen():
    return LocalBackend("qwen2.5-coder-0.5b")


def test_single_stage_task_end_to_end(qwen, tmp_path):
    task = get_task("trec")
    examples = split(task.load(None), train=0, val=0, test=4, seed=1).test
    lm = LM(qwen, cache=tmp_path / "c.sqlite")
    result = Evaluator(task.make_program(None), task.metric(), lm, max_tokens=12).evaluate_sync(None, examples)
    assert result.n == 4 and result.n_errors == 0
    assert result.n_scored + result.n_parse_failures == 4
    assert all(r.lm_calls == 1 and r.prompt_tokens > 50 and r.raw for r in result.records)
    for r in result.records:
        if r.status == "scored":  # the metric judged what the model said, label against answer
            ex = next(e for e in examples if e.id == r.example_id)
            assert (r.score == 1.0) == (r.outputs["answer"].strip().lower() == ex.labels["answer"])
    assert lm.usage.paid_calls == 4


def test_two_stage_task_end_to_end(qwen, tmp_path):
    task = get_task("hotpotqa")
    examples = task.load(None)[:2]
    program = task.make_program(None)
    lm = LM(qwen, cache=tmp_path / "c.sqlite")
    result = Evaluator(program, task.metric(), lm, max_tokens=24).evaluate_sync(None, examples)
    assert result.n_errors == 0
    for ex in examples:
        trace = result.traces[ex.id]
        assert [c.module for c in trace] == ["query", "answer"]
        assert trace[0].inputs == {"question": ex.inputs["question"]}
        # the answer stage saw the passages retrieved for the query the first stage wrote
        query = trace[0].outputs["search_query"] or ex.inputs["question"]
        assert list(trace[1].inputs["context"]) == program.retrieve(query)
    assert lm.usage.paid_calls == 4


def test_exported_messages_reproduce_the_program_through_the_raw_client(qwen):
    task = get_task("trec")
    program = task.make_program(None)
    example = task.load(None)[3]
    with llama_server(qwen.path, alias="q") as base_url:
        lm = LM(f"openai/q@{base_url}", cache=False)
        from prompthone.lm import run_sync

        run = run_sync(run_program(program, example.inputs, lm=lm, temperature=0.0, max_tokens=16))
        assert run.error is None
        messages = render_prompts(program, Candidate.default(program), example.inputs)["classify"]
        assert json.loads(json.dumps(messages)) == run.trace[0].messages  # plain JSON, exactly what was sent
        raw = openai.OpenAI(base_url=base_url, api_key="none").chat.completions.create(
            model="q", messages=messages, temperature=0.0, max_tokens=16
        )
        assert raw.choices[0].message.content == run.trace[0].raw
