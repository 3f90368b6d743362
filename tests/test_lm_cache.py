"""The response cache: hits, key sensitivity, concurrency, corruption; through the real LM client."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import sqlite3

import pytest

from prompthone.lm import LM, Request, RequestSlots, ResponseCache, cache_key
from prompthone.lm.errors import LMError, ServerError
from prompthone.lm.scripted import ScriptedBackend

MSG = [{"role": "user", "content": "What is 2+2?"}]


def counting_backend(name: str = "m"):
    calls = []

    def respond(req: Request) -> str:
        calls.append(req)
        return f"answer #{len(calls)} (T={req.temperature}, i={req.sample_index})"

    return ScriptedBackend(respond, name=name), calls


def test_hit_and_miss(tmp_path):
    backend, calls = counting_backend()
    lm = LM(backend, cache=tmp_path / "c.sqlite")
    first = lm.complete_sync(MSG)
    second = lm.complete_sync(MSG)
    assert not first.cached and second.cached
    assert second.text == first.text
    assert len(calls) == 1
    assert lm.usage.calls == 2 and lm.usage.cache_hits == 1 and lm.usage.paid_calls == 1
    assert lm.usage.cached_completion_tokens == first.completion_tokens
    assert lm.usage.completion_tokens == first.completion_tokens


def test_cache_persists_across_lm_objects(tmp_path):
    backend, calls = counting_backend()
    path = tmp_path / "c.sqlite"
    a = LM(backend, cache=path).complete_sync(MSG)
    b = LM(backend, cache=ResponseCache(path)).complete_sync(MSG)
    assert b.cached and b.text == a.text and len(calls) == 1


def test_cache_off_per_call_and_globally(tmp_path, monkeypatch):
    backend, calls = counting_backend()
    lm = LM(backend, cache=tmp_path / "c.sqlite")
    lm.complete_sync(MSG)
    assert not lm.complete_sync(MSG, cache=False).cached
    assert len(calls) == 2
    monkeypatch.setenv("PROMPTHONE_NO_CACHE", "1")
    lm_off = LM(backend, cache=True)
    assert lm_off.cache is None
    assert not lm_off.complete_sync(MSG).cached and not lm_off.complete_sync(MSG).cached


@pytest.mark.parametrize(
    "change",
    [
        {"temperature": 0.7},
        {"max_tokens": 100},
        {"stop": ["\n"]},
        {"top_p": 0.9},
        {"seed": 1},
        {"sample_index": 1},
        {"response_format": {"type": "object"}},
        {"messages": [{"role": "user", "content": "What is 2+3?"}]},
        {"messages": [{"role": "system", "content": "Be brief."}, *MSG]},
    ],
)
def test_every_parameter_changes_the_key(change):
    base = dict(messages=MSG)
    k0 = cache_key("b", "m", Request.build(**base))
    k1 = cache_key("b", "m", Request.build(**{**base, **change}))
    assert k0 != k1


def test_backend_identity_and_model_change_the_key():
    r = Request.build(MSG)
    assert cache_key("b1", "m", r) != cache_key("b2", "m", r)
    assert cache_key("b", "m1", r) != cache_key("b", "m2", r)


def test_samples_at_temperature_are_distinct_and_replay(tmp_path):
    backend, calls = counting_backend()
    lm = LM(backend, cache=tmp_path / "c.sqlite")
    first = [lm.complete_sync(MSG, temperature=1.0, sample_index=i).text for i in range(3)]
    again = [lm.complete_sync(MSG, temperature=1.0, sample_index=i).text for i in range(3)]
    assert len(set(first)) == 3
    assert again == first
    assert len(calls) == 3
    assert len({r.effective_seed() for r in calls}) == 3


async def test_many_concurrent_tasks_share_one_cache(tmp_path):
    backend, calls = counting_backend()
    lm = LM(backend, cache=tmp_path / "c.sqlite", max_concurrency=16)
    prompts = [[{"role": "user", "content": f"q{i % 50}"}] for i in range(200)]
    await asyncio.gather(*(lm.complete(p) for p in prompts[:50]))
    results = await asyncio.gather(*(lm.complete(p) for p in prompts))
    assert len(calls) == 50
    assert all(r.cached for r in results)
    assert lm.cache.stats()["entries"] == 50


def _writer(path: str, worker: int, n: int) -> None:
    backend = ScriptedBackend(lambda req: "x" * 50, name="shared")
    lm = LM(backend, cache=path)
    for i in range(n):
        lm.complete_sync([{"role": "user", "content": f"w{worker}-{i}"}])


def test_many_processes_write_one_file(tmp_path):
    path = str(tmp_path / "c.sqlite")
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 40)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0, 0, 0]
    n = sqlite3.connect(path).execute("SELECT count(*) FROM responses").fetchone()[0]
    assert n == 160


def test_corrupted_file_is_moved_aside_and_rebuilt(tmp_path, caplog):
    path = tmp_path / "c.sqlite"
    path.write_bytes(b"this is not a sqlite database" * 100)
    backend, calls = counting_backend()
    lm = LM(backend, cache=path)
    c = lm.complete_sync(MSG)
    assert c.text.startswith("answer #1")
    assert lm.complete_sync(MSG).cached
    assert len(calls) == 1
    assert any(p.name.startswith("c.sqlite.corrupt-") for p in tmp_path.iterdir())
    assert "unreadable" in caplog.text


def test_cache_failing_mid_run_does_not_crash(tmp_path, caplog):
    backend, calls = counting_backend()
    lm = LM(backend, cache=tmp_path / "c.sqlite")
    lm.complete_sync(MSG)
    lm.cache._conn.close()  # the file vanishes or breaks under a running process
    c = lm.complete_sync([{"role": "user", "content": "another"}])
    assert not c.cached and c.text.startswith("answer #2") and len(calls) == 2
    assert "continuing without it" in caplog.text


def test_errors_are_not_cached_and_retryable_ones_are_retried(tmp_path):
    attempts = []

    def respond(req):
        attempts.append(1)
        return ServerError("boom") if len(attempts) < 3 else "fine"

    lm = LM(ScriptedBackend(respond), cache=tmp_path / "c.sqlite", backoff_base_s=0.001)
    assert lm.complete_sync(MSG).text == "fine"
    assert lm.usage.retries == 2 and len(attempts) == 3

    lm2 = LM(ScriptedBackend(lambda r: LMError("permanent")), cache=tmp_path / "c.sqlite")
    with pytest.raises(LMError, match="permanent"):
        lm2.complete_sync(MSG)
    assert lm2.usage.errors == 1 and lm2.cache.stats()["entries"] == 1  # only the earlier success


def test_bad_messages_name_the_field():
    lm = LM(ScriptedBackend(lambda r: "x"), cache=False)
    with pytest.raises(ValueError, match=r"messages\[0\]\.role"):
        lm.complete_sync([{"role": "robot", "content": "hi"}])
    with pytest.raises(ValueError, match=r"messages\[1\]\.content"):
        lm.complete_sync([{"role": "user", "content": "hi"}, {"role": "user", "content": 3}])
    with pytest.raises(ValueError, match="temperature"):
        lm.complete_sync(MSG, temperature=5)


async def test_identical_calls_in_flight_are_paid_once(tmp_path):
    backend, calls = counting_backend()
    backend.delay_s = 0.05
    lm = LM(backend, cache=tmp_path / "c.sqlite", max_concurrency=8)
    results = await asyncio.gather(*(lm.complete(MSG) for _ in range(10)))
    assert len(calls) == 1
    assert len({r.text for r in results}) == 1
    assert sum(not r.cached for r in results) == 1
    assert lm.usage.paid_calls == 1 and lm.usage.cache_hits == 9


def test_schema_field_order_is_kept_and_keyed():
    schema = {"type": "object", "properties": {"reasoning": {"type": "string"}, "answer": {"type": "string"}}}
    flipped = {"type": "object", "properties": {"answer": {"type": "string"}, "reasoning": {"type": "string"}}}
    r = Request.build(MSG, response_format=schema)
    assert list(r.schema["properties"]) == ["reasoning", "answer"]
    assert cache_key("b", "m", r) != cache_key("b", "m", Request.build(MSG, response_format=flipped))


def test_a_run_cache_reads_through_to_the_shared_cache_and_keeps_a_copy(tmp_path):
    shared = ResponseCache(tmp_path / "shared.sqlite")
    backend, calls = counting_backend()
    LM(backend, cache=shared).complete_sync(MSG)  # paid earlier, by another run
    run_cache = ResponseCache(tmp_path / "run.sqlite", fallback=shared)
    lm = LM(backend, cache=run_cache)
    assert lm.complete_sync(MSG).cached and len(calls) == 1
    assert ResponseCache(tmp_path / "run.sqlite").get(lm.key_for(Request.build(MSG))) is not None
    new = [{"role": "user", "content": "new question"}]
    lm.complete_sync(new)  # paid now: written to both
    assert shared.get(lm.key_for(Request.build(new))) is not None and len(calls) == 2


async def test_lms_sharing_request_slots_stay_under_one_bound_together():
    """Two roles on one endpoint: each LM alone would allow 3 in flight; shared, the two together do."""
    server = ScriptedBackend(lambda r: "ok", delay_s=0.005)  # one endpoint that both roles send to
    shared = RequestSlots(3)
    task, judge = LM(server, cache=False, slots=shared), LM(server, cache=False, slots=shared)
    msgs = [[{"role": "user", "content": f"q{i}"}] for i in range(12)]
    await asyncio.gather(*(lm.complete(m) for m in msgs for lm in (task, judge)))
    assert server.peak_inflight == 3 and task.max_concurrency == judge.max_concurrency == 3

    server.peak_inflight = 0
    apart = [LM(server, cache=False, max_concurrency=3) for _ in range(2)]
    await asyncio.gather(*(lm.complete(m) for m in msgs for lm in apart))
    assert server.peak_inflight == 6  # without sharing, each LM fills its own bound
    with pytest.raises(ValueError, match="not both"):
        LM(server, cache=False, slots=shared, max_concurrency=2)
