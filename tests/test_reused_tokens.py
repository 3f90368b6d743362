"""Prompt tokens a backend took from its KV cache: what each backend reports, how `Usage` sums them
and how the run store records them per call (older stores gain the column)."""

from __future__ import annotations

import sqlite3

import pytest

from prompthone.lm import LM, Completion
from prompthone.lm.local.backend import reused_prefix
from prompthone.lm.openai_backend import OpenAIBackend, reused_prompt_tokens
from prompthone.lm.scripted import ScriptedBackend
from prompthone.lm.types import Generation, Request
from prompthone.store import RunStore


def test_the_embedded_models_reuse_is_the_prefix_shared_with_what_the_context_held():
    before = [1, 2, 3, 4, 9, 9]  # the previous prompt and its answer
    assert reused_prefix(before, [1, 2, 3, 5, 6, 7, 8], prompt_tokens=5) == 3
    assert reused_prefix([], [1, 2, 3, 8], prompt_tokens=3) == 0
    assert reused_prefix([7, 2, 3], [1, 2, 3, 8], prompt_tokens=3) == 0
    # the same prompt again: llama.cpp evaluates its last token again to sample from its logits
    assert reused_prefix([1, 2, 3, 8], [1, 2, 3, 9], prompt_tokens=3) == 2


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"usage": {"prompt_tokens": 90, "prompt_tokens_details": {"cached_tokens": 64}}}, 64),  # OpenAI, vLLM
        ({"usage": {"prompt_tokens": 90}, "timings": {"cache_n": 71, "prompt_n": 19}}, 71),  # llama-server
        ({"usage": {"prompt_tokens": 90, "prompt_tokens_details": {"cached_tokens": 0}}}, 0),
        ({"usage": {"prompt_tokens": 90}}, None),  # llama_cpp.server: only its log says
        ({"usage": {"prompt_tokens_details": {"cached_tokens": True}}}, None),
        ({"usage": {"prompt_tokens_details": {"cached_tokens": -3}}}, None),
        ({"usage": {"prompt_tokens_details": None}, "timings": {"cache_n": "7"}}, None),
        ({}, None),
    ],
)
def test_a_servers_reuse_is_read_from_its_usage_or_timings(body, expected):
    assert reused_prompt_tokens(body) == expected
    reply = {"choices": [{"message": {"content": "ok"}, "finish_reason": "stop"}], **body}
    assert OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")._to_generation(reply).reused_prompt_tokens == expected


class ReusingBackend(ScriptedBackend):
    """Says it reused all but the last message's words, except for prompts mentioning "silent"."""

    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        g = await super().generate(request, timeout_s=timeout_s)
        last = len(request.messages[-1][1].split())
        reused = None if "silent" in request.messages[-1][1] else g.prompt_tokens - last
        return Generation(g.text, g.finish_reason, g.prompt_tokens, g.completion_tokens, reused)


async def test_usage_sums_reuse_over_the_paid_calls_that_reported_it(tmp_path):
    lm = LM(ReusingBackend(lambda r: "fine"), cache=tmp_path / "c.sqlite")
    sys_msg = {"role": "system", "content": "one two three four five six"}
    first = await lm.complete([sys_msg, {"role": "user", "content": "a b"}])
    await lm.complete([sys_msg, {"role": "user", "content": "silent c"}])
    again = await lm.complete([sys_msg, {"role": "user", "content": "a b"}])  # from the response cache
    assert first.reused_prompt_tokens == 6 and again.cached and again.reused_prompt_tokens is None
    u = lm.usage
    assert (u.reused_prompt_tokens, u.reuse_reported_prompt_tokens, u.prompt_tokens) == (6, 8, 16)
    assert (lm.usage + lm.usage).reused_prompt_tokens == 12


def completion(reused: int | None, *, cached: bool = False) -> Completion:
    return Completion("x", "stop", 10, 1, 0.1, cached, "scripted/m", "k", reused_prompt_tokens=reused)


def test_the_store_records_reuse_per_call(tmp_path):
    store = RunStore(tmp_path / "run")
    store.record_lm_call("task", completion(7))
    store.record_lm_call("task", completion(None, cached=True))
    assert [c["reused_prompt_tokens"] for c in store.lm_calls()] == [7, None]


def old_store(path) -> None:
    """A run.sqlite written before reuse was recorded: `ph_lm_calls` without the column, one call in it."""
    path.parent.mkdir(parents=True)
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE ph_lm_calls (id INTEGER PRIMARY KEY, ts FLOAT NOT NULL, role VARCHAR(16) NOT NULL, "
            "model VARCHAR(256) NOT NULL, prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL, "
            "cost_usd FLOAT NOT NULL, latency_s FLOAT NOT NULL, cached BOOLEAN NOT NULL, finish_reason VARCHAR(16), "
            "cache_key VARCHAR(64))"
        )
        db.execute("INSERT INTO ph_lm_calls VALUES (1, 1.0, 'task', 'm', 10, 1, 0.0, 0.1, 0, 'stop', 'k')")


def test_an_older_store_reads_without_the_column_and_gains_it_when_written(tmp_path):
    db = tmp_path / "run" / "run.sqlite"
    old_store(db)
    calls = RunStore(tmp_path / "run", read_only=True).lm_calls()  # read-only: nothing is altered
    assert [(c["prompt_tokens"], c["reused_prompt_tokens"]) for c in calls] == [(10, None)]
    with sqlite3.connect(db) as conn:
        assert "reused_prompt_tokens" not in {r[1] for r in conn.execute("PRAGMA table_info(ph_lm_calls)")}
    store = RunStore(tmp_path / "run")  # a resumed run opens it for writing
    store.record_lm_call("task", completion(4))
    assert [c["reused_prompt_tokens"] for c in store.lm_calls()] == [None, 4]
