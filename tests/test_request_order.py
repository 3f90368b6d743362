"""The order in which an endpoint that serves one request at a time is sent waiting requests
(`prompthone.lm.slots`): related prompts in a row, never starving one, never changing an answer."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest

from prompthone.lm import LM, ConfigError, RequestSlots
from prompthone.lm.scripted import ScriptedBackend
from prompthone.lm.slots import AffineGate, common_prefix_chars, shared_prefix
from prompthone.lm.types import Request
from prompthone.optimize.mipro import MIPRO
from test_mipro_world import make_setup


def chat(system: str, user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def answer(request: Request) -> str:
    return f"{request.messages[0][1][-1]}:{request.messages[-1][1]}"


def head_of(request: Request) -> str:
    return request.messages[0][1]


# --------------------------------------------------------------------------- the prefix measure


def test_common_prefix_chars_agrees_with_a_character_by_character_count():
    rng = random.Random(3)
    for _ in range(300):
        stem = "".join(rng.choice("ab") for _ in range(rng.randrange(0, 40)))
        a = stem + "".join(rng.choice("abc") for _ in range(rng.randrange(0, 9)))
        b = stem + "".join(rng.choice("abc") for _ in range(rng.randrange(0, 9)))
        naive = sum(1 for _ in itertools.takewhile(lambda p: p[0] == p[1], zip(a, b, strict=False)))
        assert common_prefix_chars(a, b) == naive, (a, b)


def test_shared_prefix_counts_whole_messages_then_the_first_that_differs():
    a = (("system", "Classify."), ("user", "Q: one"))
    assert shared_prefix(a, (("system", "Classify."), ("user", "Q: two"))) == len("Classify.") + 1 + len("Q: ")
    assert shared_prefix(a, (("system", "Classify!"), ("user", "Q: one"))) == len("Classify")
    assert shared_prefix(a, (("user", "Classify."),)) == 0  # another role: nothing shared
    assert shared_prefix(a, a) == len("Classify.") + len("Q: one") + 2


# --------------------------------------------------------------------------- one LM, requests waiting


async def send_interleaved(lm: LM, heads: str = "ABC", per_head: int = 3) -> dict[str, str]:
    """Requests of several heads (candidates), arriving interleaved: A1 B1 C1 A2 B2 C2 ..."""
    order = [(h, i) for i in range(1, per_head + 1) for h in heads]
    done = await asyncio.gather(*(lm.complete(chat(f"Instruction {h}", f"x{i}")) for h, i in order))
    return {f"{h}{i}": c.text for (h, i), c in zip(order, done, strict=True)}


def sent(backend: ScriptedBackend) -> list[str]:
    return [f"{head_of(r)[-1]}{r.messages[-1][1][1:]}" for r in backend.requests]


async def test_one_at_a_time_sends_each_candidates_requests_in_a_row():
    tb = ScriptedBackend(answer, delay_s=0.001, max_concurrency=1)
    answers = await send_interleaved(LM(tb, cache=False))
    assert sent(tb) == ["A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"]
    assert tb.peak_inflight == 1
    assert answers == {k: f"{k[0]}:x{k[1]}" for k in answers}


async def test_arrival_order_when_the_endpoint_serves_several_or_when_fifo_is_asked(monkeypatch):
    interleaved = ["A1", "B1", "C1", "A2", "B2", "C2", "A3", "B3", "C3"]
    several = ScriptedBackend(answer, delay_s=0.001, max_concurrency=2)
    a = await send_interleaved(LM(several, cache=False))
    assert sent(several) == interleaved and several.peak_inflight == 2
    monkeypatch.setenv("PROMPTHONE_REQUEST_ORDER", "fifo")
    fifo = ScriptedBackend(answer, delay_s=0.001, max_concurrency=1)
    b = await send_interleaved(LM(fifo, cache=False))
    assert sent(fifo) == interleaved and a == b


async def test_a_server_known_to_serve_one_at_a_time_gets_one_request_at_a_time_in_affine_order():
    server = ScriptedBackend(answer, delay_s=0.001, max_concurrency=8)
    server.one_at_a_time = True
    lm = LM(server, cache=False)
    assert lm.max_concurrency == 8  # what callers plan with (e.g. MIPRO's trials in flight) is unchanged
    await send_interleaved(lm)
    assert server.peak_inflight == 1
    assert sent(server) == ["A1", "A2", "A3", "B1", "B2", "B3", "C1", "C2", "C3"]


async def test_roles_sharing_one_endpoint_share_one_order():
    tb = ScriptedBackend(answer, delay_s=0.001, max_concurrency=1)
    shared = RequestSlots.for_backend(tb, 8)
    assert shared.size == 1 and shared.one_at_a_time
    task, judge = LM(tb, cache=False, slots=shared), LM(tb, cache=False, slots=shared)
    await asyncio.gather(
        *(lm.complete(chat(f"Instruction {h}", f"x{i}")) for i in (1, 2) for h, lm in (("T", task), ("J", judge)))
    )
    assert sent(tb) == ["T1", "T2", "J1", "J2"]


def test_a_bad_request_order_setting_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv("PROMPTHONE_REQUEST_ORDER", "random")
    with pytest.raises(ConfigError, match="PROMPTHONE_REQUEST_ORDER must be 'affine' or 'fifo', got 'random'"):
        LM(ScriptedBackend(answer, max_concurrency=1), cache=False)


# --------------------------------------------------------------------------- the gate itself


async def test_a_stream_of_related_requests_never_starves_another():
    gate = AffineGate(patience=3)
    related = (("system", "A"), ("user", "x"))
    log: list[str] = []
    z_came_after: list[int] = []

    async def one(name: str, messages) -> None:
        if name == "Z":
            z_came_after.append(gate.sent)
        async with gate.hold(messages):
            log.append(name)
            await asyncio.sleep(0)
            if name.startswith("A") and int(name[1:]) < 12:  # each related request brings the next one
                asyncio.get_running_loop().create_task(one(f"A{int(name[1:]) + 2}", related))

    first = asyncio.create_task(one("A0", related))
    await asyncio.sleep(0)
    await asyncio.gather(first, one("A1", related), one("Z", (("system", "Z"),)))
    while len(log) < 14:
        await asyncio.sleep(0.001)
    # related requests go ahead of Z, but only 3 of them (its patience) once Z waits
    assert log.index("Z") == z_came_after[0] + 3
    assert not gate.busy and not gate.waiters


async def test_a_cancelled_waiter_gives_its_turn_to_the_next_one():
    gate = AffineGate()
    ran: list[str] = []

    async def one(name: str) -> None:
        async with gate.hold((("user", name),)):
            ran.append(name)

    holder = gate.hold((("user", "holder"),))
    await holder.__aenter__()
    waiting = [asyncio.create_task(one(n)) for n in ("w1", "w2", "w3")]
    await asyncio.sleep(0)
    assert len(gate.waiters) == 3
    waiting[0].cancel()  # cancelled while waiting
    await asyncio.sleep(0)
    await holder.__aexit__(None, None, None)  # hands the slot to w2 at once...
    waiting[1].cancel()  # ...which is cancelled before it runs: it must pass the slot on to w3
    results = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(results[0], asyncio.CancelledError) and isinstance(results[1], asyncio.CancelledError)
    assert ran == ["w3"] and not gate.busy and not gate.waiters


# --------------------------------------------------------------------------- a whole search


def switches(backend: ScriptedBackend) -> int:
    heads = [r.messages[:-1] for r in backend.requests]
    return sum(a != b for a, b in itertools.pairwise(heads))


def trail(r) -> list[tuple[str, float, bool]]:
    return [(t.candidate.hash, round(t.score, 9), t.full) for t in r.trials]


async def test_trials_in_flight_on_a_one_at_a_time_model_run_candidate_by_candidate_with_the_same_scores(
    monkeypatch,
):
    """Four MIPRO trials in flight on a model that serves one request at a time: each evaluation's
    requests go in a row (one change of prompt head per evaluation at most), the requests are the same
    ones, and every trial's score is what arrival order and a model serving 8 at once give."""
    settings = dict(minibatch_size=20, num_trials=12, parallel_trials=4)
    runs = {}
    for name, order, width in (("affine", "affine", 1), ("fifo", "fifo", 1), ("parallel", "affine", 8)):
        monkeypatch.setenv("PROMPTHONE_REQUEST_ORDER", order)
        # each answer takes 10 ms, long enough for the other trials in flight to queue their requests even on a
        # loaded machine (with 1 ms, a slow scheduler left the gate one waiter to choose from)
        setup, tb, _ = make_setup(delay_s=0.01, task_max_concurrency=width, concurrency=4, cache=False)
        runs[name] = (await MIPRO(**settings).optimize(setup), tb, setup)
    affine, fifo, parallel = (runs[k][0] for k in ("affine", "fifo", "parallel"))
    assert trail(affine) == trail(fifo) == trail(parallel) and affine.best == fifo.best == parallel.best
    a_tb, f_tb = runs["affine"][1], runs["fifo"][1]
    key = runs["affine"][2].task_lm.key_for
    assert sorted(map(key, a_tb.requests)) == sorted(map(key, f_tb.requests))  # the same requests, reordered
    evaluations = len(runs["affine"][2].evaluator.calls)
    assert runs["affine"][2].evaluator.peak == 4  # trials really were in flight together
    assert switches(a_tb) < evaluations and switches(f_tb) > 3 * evaluations


def test_servers_are_named_one_at_a_time_by_the_environment_or_the_option(monkeypatch):
    from prompthone.lm.openai_backend import OpenAIBackend

    url, other = "http://127.0.0.1:8000/v1", "http://10.0.0.2:9000/v1"
    assert not OpenAIBackend("m", base_url=url).one_at_a_time
    assert OpenAIBackend("m", base_url=url, one_at_a_time=True).one_at_a_time
    monkeypatch.setenv("PROMPTHONE_ONE_AT_A_TIME", f"{url}/, http://x:1/v1")
    assert OpenAIBackend("m", base_url=url).one_at_a_time and not OpenAIBackend("m", base_url=other).one_at_a_time
    assert not OpenAIBackend("m", base_url=url, one_at_a_time=False).one_at_a_time
    lm = LM(f"openai/m@{url}", cache=False)
    assert lm.slots.one_at_a_time and lm.max_concurrency == 16
    monkeypatch.setenv("PROMPTHONE_ONE_AT_A_TIME", "1")
    assert OpenAIBackend("m", base_url=other).one_at_a_time
    monkeypatch.setenv("PROMPTHONE_ONE_AT_A_TIME", "127.0.0.1:8000")
    with pytest.raises(ConfigError, match=r"PROMPTHONE_ONE_AT_A_TIME must be 1 .* got '127\.0\.0\.1:8000'"):
        OpenAIBackend("m", base_url=url)
