"""The embedded model, for real: in-process llama.cpp, and the same file behind llama_cpp.server."""

from __future__ import annotations

import asyncio

import pytest

from model_server import llama_server
from prompthone.lm import LM, LMTimeoutError
from prompthone.lm.local.backend import LocalBackend, load_llama
from prompthone.lm.openai_backend import aiohttp_available

pytestmark = pytest.mark.model

CAPITAL = [{"role": "user", "content": "What is the capital of France? Answer with one word."}]


@pytest.fixture(scope="module")
def local_lm():
    return LocalBackend("qwen2.5-coder-0.5b")


def test_embedded_model_answers_a_trivial_prompt(local_lm, tmp_path):
    lm = LM(local_lm, cache=tmp_path / "c.sqlite")
    c = lm.complete_sync(CAPITAL, max_tokens=8)
    assert "paris" in c.text.lower()
    assert c.prompt_tokens > 5 and 0 < c.completion_tokens <= 8
    assert c.finish_reason in ("stop", "length") and not c.cached
    again = lm.complete_sync(CAPITAL, max_tokens=8)
    assert again.cached and again.text == c.text


def test_model_is_loaded_once_and_threads_are_set(local_lm):
    a = local_lm.loaded()
    b = LocalBackend("qwen2.5-coder-0.5b").loaded()
    assert a is b
    assert local_lm.n_threads >= 1
    assert a.llama.context_params.n_threads == local_lm.n_threads


async def test_calls_are_serialized_without_blocking_the_loop(local_lm):
    lm = LM(local_lm, cache=False, max_concurrency=4)
    ticks = 0

    async def ticker():
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    t = asyncio.create_task(ticker())
    prompts = [[{"role": "user", "content": f"Count to {n}."}] for n in (3, 4, 5)]
    results = await asyncio.gather(*(lm.complete(p, max_tokens=12) for p in prompts))
    t.cancel()
    assert all(r.text for r in results)
    assert ticks > 5  # the loop kept running while the model generated


def test_sampled_answers_differ_by_sample_index_and_replay(local_lm, tmp_path):
    lm = LM(local_lm, cache=False)
    prompt = [{"role": "user", "content": "Write a random word."}]
    a0 = lm.complete_sync(prompt, temperature=1.0, max_tokens=12, sample_index=0).text
    a0_again = lm.complete_sync(prompt, temperature=1.0, max_tokens=12, sample_index=0).text
    others = {lm.complete_sync(prompt, temperature=1.0, max_tokens=12, sample_index=i).text for i in (1, 2, 3)}
    assert a0 == a0_again  # the seed comes from the sample index: reproducible without a cache
    assert others - {a0}  # and different indices explore


def test_runaway_generation_is_stopped_and_reported(local_lm):
    lm = LM(local_lm, cache=False, timeout_s=0.3, max_retries=0)
    with pytest.raises(LMTimeoutError, match="timeout"):
        lm.complete_sync([{"role": "user", "content": "Write a very long story."}], max_tokens=2000)


def test_http_backend_against_a_real_llama_server(local_lm):
    direct = LM(local_lm, cache=False).complete_sync(CAPITAL, max_tokens=8)
    transports = ["httpx", "aiohttp"] if aiohttp_available() else ["httpx"]
    with llama_server(local_lm.path, alias="smol") as base_url:
        for transport in transports:  # both HTTP transports under the SDK, against the same server
            lm = LM(f"openai/smol@{base_url}", cache=False, transport=transport)
            assert lm.backend.transport == transport
            c = lm.complete_sync(CAPITAL, max_tokens=8)
            assert "paris" in c.text.lower()
            assert c.prompt_tokens > 5 and 0 < c.completion_tokens <= 8
            # the same file, greedy, in-process and behind the server: the same answer
            assert c.text == direct.text
            # the server honours max_tokens (sent as such, not as max_completion_tokens)
            capped = lm.complete_sync([{"role": "user", "content": "Write a long story."}], max_tokens=5)
            assert capped.completion_tokens <= 5 and capped.finish_reason == "length"


def test_load_is_shared_across_names(local_lm):
    assert load_llama(local_lm.path, n_ctx=local_lm.n_ctx, n_threads=local_lm.n_threads) is local_lm.loaded()


def test_lean_prompt_cache_server_reloads_prefixes_and_answers_the_same(local_lm, tmp_path, monkeypatch):
    """The benchmarks' server with a prompt cache (`tests/llama_server_main.py`): two modules' prompts
    alternating are reloaded from the cache, not evaluated again, and the replies are the ones without it."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the server's log lands here
    systems = [
        "Answer from these facts. " + " ".join(f"Fact {i}: river {i} flows past town {i * 7}." for i in range(12)),
        "Write a search query. " + " ".join(f"Town {i} has mayor number {i * 3}." for i in range(12)),
    ]
    turns = [[{"role": "system", "content": s}, {"role": "user", "content": f"Question {i}?"}] for i in range(2)
             for s in systems]  # fmt: skip
    direct = [LM(local_lm, cache=False).complete_sync(m, max_tokens=6).text for m in turns]
    with llama_server(local_lm.path, alias="smol", prompt_cache_bytes=1 << 30) as base_url:
        lm = LM(f"openai/smol@{base_url}", cache=False)
        served = [lm.complete_sync(m, max_tokens=6).text for m in turns]
        port = base_url.rsplit(":", 1)[1].split("/")[0]
    assert served == direct
    log = (tmp_path / f"llama_server_{port}.log").read_text()
    # the 3rd and 4th requests start with a prefix the cache holds (the 1st and 2nd system prompts)
    assert log.count("Llama._create_completion: cache hit") >= 2, log[-2000:]
