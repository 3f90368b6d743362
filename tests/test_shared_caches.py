"""The response and score caches of a run whose store is on PostgreSQL live in that database, so that every
process working on the run finds what any of them bought: two caches (threads, and a real second process)
on one database, a run's caches on its server (none left in the run folder), a resume that pays nothing
twice (also of a run folder from before, whose caches are in its `cache.sqlite`), and a server that goes
away while the caches are written."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from pg_server import create_database, postgres_instance
from prompthone import sqlurl
from prompthone.evaluate import ScoreCache
from prompthone.evaluate.results import ExampleRecord
from prompthone.lm import ResponseCache, run_sync
from prompthone.lm.types import Generation, Request
from prompthone.runs.runner import run_optimization
from prompthone.sqlurl import StoreUnavailableError
from prompthone.store import CACHE_DB, RunStore
from runlib import fake_gsm8k_env
from runlib import fake_gsm8k_spec as spec

HERE = Path(__file__).resolve().parent


@pytest.fixture(scope="module")
def pg():
    with postgres_instance() as server:
        yield server


@pytest.fixture
def env(tmp_path, monkeypatch):
    with fake_gsm8k_env(tmp_path, monkeypatch, latency_ms=1) as found:
        yield found


def request(i: int | str) -> Request:
    return Request.build([{"role": "user", "content": f"question {i}"}])


def answer(i: int | str) -> Generation:
    return Generation(f"answer {i}", "stop", 10, 3)


def record(i: int | str, score: float = 1.0) -> ExampleRecord:
    return ExampleRecord(example_id=f"ex{i}", status="scored", score=score, outputs={"answer": f"a{i}"})


def rows(url: str, table: str) -> list[tuple]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return [tuple(r) for r in c.execute(text(f"SELECT * FROM {table} ORDER BY key")).all()]
    finally:
        engine.dispose()


def tables(url: str) -> set[str]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            return set(c.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")).scalars())
    finally:
        engine.dispose()


# -- 1. two caches on one database ---------------------------------------------------------------------------
def test_an_answer_put_by_one_response_cache_is_a_hit_for_another_on_the_same_database(pg):
    url = create_database(pg.url_template, "responses_two")
    first, second = ResponseCache(url), ResponseCache(url)
    assert second.get("k1") is None
    first.put("k1", "backend", "model", request(1), answer(1), 0.25)
    assert second.get("k1") == answer(1)
    assert second.get_row("k1") == (answer(1), "backend", "model", json.dumps(request(1).key_fields(), sort_keys=True))
    assert second.stats()["entries"] == 1 and "responses_two" in second.stats()["path"]
    (row,) = rows(url, "responses")
    assert row[0] == "k1" and row[4] == "answer 1" and row[8] == 0.25  # latency kept in double precision
    assert abs(row[9] - time.time()) < 60  # created_at too: a REAL would round it to minutes


def test_a_response_cache_on_a_server_reads_through_to_the_users_cache_and_keeps_a_copy(pg, tmp_path):
    url = create_database(pg.url_template, "responses_fallback")
    shared = ResponseCache(tmp_path / "shared.sqlite")
    shared.put("old", "b", "m", request("old"), answer("old"), 0.1)
    run_cache = ResponseCache(url, fallback=shared, owns_file=False)
    assert run_cache.get("old") == answer("old")
    assert ResponseCache(url).get("old") == answer("old")  # copied into the run's database
    run_cache.put("new", "b", "m", request("new"), answer("new"), 0.1)
    assert shared.get("new") == answer("new") and ResponseCache(url).get("new") == answer("new")


def test_concurrent_puts_of_one_key_from_two_caches_do_not_raise(pg):
    """Two processes may buy the same answer at once: the second insert finds the first's row."""
    url = create_database(pg.url_template, "responses_race")
    caches = [ResponseCache(url), ResponseCache(url)]
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def put(cache: ResponseCache, n: int) -> None:
        start.wait()
        try:
            for i in range(n):
                cache.put(f"k{i}", "b", "m", request(i), answer(i), 0.1)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(caches[t % 2], 30)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert [r[0] for r in rows(url, "responses")] == sorted(f"k{i}" for i in range(30))


WRITER = """
import sys
from prompthone.evaluate import ScoreCache
from prompthone.evaluate.results import ExampleRecord
from prompthone.lm import ResponseCache
from prompthone.lm.types import Generation, Request

url, tag = sys.argv[1], sys.argv[2]
responses, scores = ResponseCache(url), ScoreCache(url)
for i in range(40):
    key = f"k{i}" if i % 2 else f"{tag}{i}"  # odd keys: both processes write them
    req = Request.build([{"role": "user", "content": f"question {key}"}])
    responses.put(key, "b", "m", req, Generation(f"answer {key}", "stop", 10, 3), 0.1)
    scores.put(key, "cand", "em", ExampleRecord(example_id=key, status="scored", score=1.0, outputs={}))
print("done")
"""


def test_a_second_process_writing_the_same_keys_at_once_shares_every_answer_and_score(pg):
    url = create_database(pg.url_template, "two_processes")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(Path(sqlurl.__file__).parents[1]), str(HERE)])}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, url, tag], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]  # fmt: skip
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    responses, scores = ResponseCache(url), ScoreCache(url)
    keys = {f"k{i}" for i in range(1, 40, 2)} | {f"{t}{i}" for t in "ab" for i in range(0, 40, 2)}
    assert {r[0] for r in rows(url, "responses")} == keys == {r[0] for r in rows(url, "scores")}
    for key in keys:
        assert responses.get(key) == Generation(f"answer {key}", "stop", 10, 3)
        assert scores.get(key).example_id == key


# -- 2. the score cache -----------------------------------------------------------------------------------
def test_a_score_put_by_one_score_cache_is_a_hit_for_another_and_races_do_not_raise(pg):
    url = create_database(pg.url_template, "scores_two")
    first, second = ScoreCache(url), ScoreCache(url)
    assert second.get("s1") is None
    first.put("s1", "cand", "em", record(1, 0.5))
    assert second.get("s1") == record(1, 0.5)
    first.put("err", "cand", "em", ExampleRecord(example_id="e", status="error", score=None, outputs={}, error="x"))
    assert second.get("err") is None  # errors are never cached: they are retried
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def put(cache: ScoreCache) -> None:
        start.wait()
        try:
            for i in range(30):
                cache.put(f"r{i}", "cand", "em", record(i))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=put, args=((first, second)[t % 2],)) for t in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert len(rows(url, "scores")) == 31
    assert ScoreCache(url).get("r7") == record(7)


# -- 3. what cannot be cached does not stop a run ------------------------------------------------------------
def test_a_table_of_another_shape_under_the_caches_name_is_left_alone_and_the_run_goes_on(pg, caplog):
    url = create_database(pg.url_template, "other_tables")
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("CREATE TABLE responses (id INTEGER PRIMARY KEY, body TEXT)"))
        c.execute(text("CREATE TABLE scores (id INTEGER PRIMARY KEY, body TEXT)"))
        c.execute(text("INSERT INTO responses VALUES (1, 'not ours')"))
    engine.dispose()
    responses, scores = ResponseCache(url), ScoreCache(url)
    responses.put("k", "b", "m", request(1), answer(1), 0.1)
    assert responses.get("k") is None
    scores.put("s", "cand", "em", record(1))
    assert scores.get("s") == record(1)  # kept in memory for this process
    engine = create_engine(url)
    with engine.connect() as c:  # the other table is as it was
        assert c.execute(text("SELECT id, body FROM responses")).all() == [(1, "not ours")]
    engine.dispose()
    assert "responses" in caplog.text and "continuing without it" in caplog.text
    assert "keeping scores in memory" in caplog.text


def test_an_answer_the_server_cannot_store_is_skipped_and_the_others_are_kept(pg, caplog):
    url = create_database(pg.url_template, "nul_text")
    cache = ResponseCache(url)
    cache.put("nul", "b", "m", request("nul"), Generation("a\x00b", "stop", 1, 1), 0.1)  # TEXT holds no NUL
    cache.put("fine", "b", "m", request("fine"), answer("fine"), 0.1)
    assert cache.get("nul") is None and cache.get("fine") == answer("fine")
    assert "could not store" in caplog.text
    cache.put("later", "b", "m", request("later"), answer("later"), 0.1)  # the cache is still in use
    assert ResponseCache(url).get("later") == answer("later")


# -- 4. the server goes away while the caches are written ---------------------------------------------------
def test_a_server_away_for_a_moment_loses_no_answer_or_score(pg, caplog):
    url = create_database(pg.url_template, "cache_outage")
    responses, scores = ResponseCache(url), ScoreCache(url)
    responses.put("before", "b", "m", request("before"), answer("before"), 0.1)
    seen: dict[str, float] = {}

    def away() -> None:
        pg.stop("fast")
        seen["down"] = time.monotonic()
        time.sleep(2.0)
        pg.start()
        seen["up"] = time.monotonic()

    thread = threading.Thread(target=away, daemon=True)
    thread.start()
    while "down" not in seen:
        time.sleep(0.01)
    for i in range(20):  # written while the server is away and after it is back
        responses.put(f"k{i}", "b", "m", request(i), answer(i), 0.1)
        scores.put(f"k{i}", "cand", "em", record(i))
        time.sleep(0.05)
    thread.join(60)
    assert "up" in seen
    assert "is unreachable" in caplog.text and "retrying" in caplog.text
    again_r, again_s = ResponseCache(url), ScoreCache(url)
    assert all(again_r.get(f"k{i}") == answer(i) for i in range(20)) and again_r.get("before") == answer("before")
    assert all(again_s.get(f"k{i}") == record(i) for i in range(20))


def test_a_server_away_for_too_long_stops_with_the_stores_message(pg, monkeypatch):
    """Not ignored for ever: a run whose caches cannot be written stops (and `--resume` goes on) rather
    than buying every answer again without keeping it."""
    url = create_database(pg.url_template, "cache_long_outage")
    responses, scores = ResponseCache(url), ScoreCache(url)
    monkeypatch.setattr(sqlurl, "RETRY_SECONDS", 1.0)
    pg.stop("fast")
    try:
        with pytest.raises(StoreUnavailableError, match="cache_long_outage is unreachable"):
            responses.put("k", "b", "m", request(1), answer(1), 0.1)
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            scores.get("k")
    finally:
        pg.start()
    responses.put("k", "b", "m", request(1), answer(1), 0.1)  # the same objects work again
    assert ResponseCache(url).get("k") == answer(1)


# -- 5. a run on a PostgreSQL store ------------------------------------------------------------------------
def test_a_run_on_a_server_keeps_its_answers_and_scores_there_and_a_resume_buys_nothing(env, pg, monkeypatch):
    tmp, model, srv = env
    url = create_database(pg.url_template, "run_caches")
    out = run_sync(run_optimization(spec(model, tmp / "data"), out_dir=tmp / "runs", store_url=url))
    paid = srv.requests_received
    assert not (out.run_dir / CACHE_DB).exists()
    assert len(rows(url, "responses")) == paid and paid > 0
    assert len(rows(url, "scores")) > 0
    # another process, with a user's cache of its own (empty): every answer and score is on the server
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "other-user" / "responses.sqlite"))
    again = run_sync(run_optimization(resume=out.run_dir))
    assert srv.requests_received == paid
    assert again.result.best == out.result.best and again.final_test.mean == out.final_test.mean
    assert not (out.run_dir / CACHE_DB).exists()


def test_a_run_folder_from_before_with_its_caches_in_cache_sqlite_resumes_without_buying_again(env, pg, monkeypatch):
    """A PostgreSQL run made before the caches moved to the server kept them in the folder's cache.sqlite:
    resumed, its answers and scores are still found (and copied to the server), so nothing is bought again."""
    tmp, model, srv = env
    url = create_database(pg.url_template, "old_folder")
    out = run_sync(run_optimization(spec(model, tmp / "data"), out_dir=tmp / "runs", store_url=url))
    paid = srv.requests_received
    # make it the folder an older prompthone left: the caches in cache.sqlite, none on the server
    responses, scores = rows(url, "responses"), rows(url, "scores")
    local = sqlite3.connect(out.run_dir / CACHE_DB)
    from prompthone.evaluate.score_cache import SCHEMA as SCORES
    from prompthone.lm.cache import SCHEMA as RESPONSES

    local.executescript(RESPONSES + SCORES)
    local.executemany("INSERT INTO responses VALUES (?,?,?,?,?,?,?,?,?,?)", responses)
    local.executemany("INSERT INTO scores VALUES (?,?,?,?,?)", scores)
    local.commit()
    local.close()
    engine = create_engine(url)
    with engine.begin() as c:
        c.execute(text("DROP TABLE responses"))
        c.execute(text("DROP TABLE scores"))
    engine.dispose()
    RunStore(url).set_status("running")  # killed, as far as the store knows
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "other-user" / "responses.sqlite"))
    again = run_sync(run_optimization(resume=out.run_dir))
    assert srv.requests_received == paid
    assert again.result.best == out.result.best and again.final_test.mean == out.final_test.mean
    assert {"responses", "scores"} <= tables(url)
    assert sorted(rows(url, "responses")) == sorted(responses)  # copied whole, created_at and all
    assert {r[0] for r in rows(url, "scores")} == {r[0] for r in scores}
    # the folder's copy is kept (renamed: it is no longer where the run's caches are)
    assert not (out.run_dir / CACHE_DB).exists()
    kept = sqlite3.connect(out.run_dir / f"{CACHE_DB}.copied")
    assert kept.execute("SELECT count(*) FROM responses").fetchone()[0] == paid
    kept.close()
    # and a second resume does not copy (or need) it again
    monkeypatch.setenv("PROMPTHONE_RESPONSE_CACHE", str(tmp / "third-user" / "responses.sqlite"))
    third = run_sync(run_optimization(resume=out.run_dir))
    assert srv.requests_received == paid and third.result.best == out.result.best


def test_the_response_and_score_caches_on_sqlite_stay_in_the_run_file(env):
    tmp, model, srv = env
    out = run_sync(run_optimization(spec(model, tmp / "data"), out_dir=tmp / "runs"))
    con = sqlite3.connect(out.run_dir / "run.sqlite")
    assert con.execute("SELECT count(*) FROM responses").fetchone()[0] == srv.requests_received
    assert con.execute("SELECT count(*) FROM scores").fetchone()[0] > 0
    con.close()
    assert not (out.run_dir / CACHE_DB).exists()


def test_a_server_answer_is_also_in_the_users_cache_before_the_server_is_asked(pg, tmp_path, monkeypatch):
    """An answer bought while the server is away for good is not lost with it: the user's cache
    (written first) still has it for the resume."""
    url = create_database(pg.url_template, "local_first")
    shared = ResponseCache(tmp_path / "shared.sqlite")
    run_cache = ResponseCache(url, fallback=shared, owns_file=False)
    monkeypatch.setattr(sqlurl, "RETRY_SECONDS", 0.5)
    pg.stop("fast")
    try:
        with pytest.raises(StoreUnavailableError):
            run_cache.put("k", "b", "m", request(1), answer(1), 0.1)
    finally:
        pg.start()
    assert shared.get("k") == answer(1)


def test_on_a_server_without_on_conflict_a_second_insert_of_a_key_keeps_the_first(tmp_path):
    """Any other SQLAlchemy server: the insert that meets a stored key fails, and is taken as done."""
    from prompthone.lm.cache import TABLE
    from prompthone.lm.cache_server import ServerTable

    url = f"sqlite:///{tmp_path / 'other-server.db'}"  # a dialect without the PostgreSQL insert
    first, second = ServerTable(url, TABLE), ServerTable(url, TABLE)
    row = ("k", "b", "m", "{}", "answer", "stop", 1, 2, 0.5, 1.0)
    first.insert(row)
    second.insert((*row[:4], "another answer", *row[5:]))
    second.insert_many([row, ("k2", *row[1:])])
    assert first.get("k") == ("answer", "stop", 1, 2, "b", "m", "{}") and first.get("k2") is not None
    assert first.usable and second.usable
