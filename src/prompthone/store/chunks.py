"""The work queue of a run on a database server (`ph_chunks`): pieces of evaluations any process may compute.

A run's leader (the process holding its lock) hands each evaluation's unscored examples to the queue in
chunks; the leader and every worker claim chunks, compute them and write the records back. The queue is
a table of the run's own database, so nothing else has to run: PostgreSQL's row locks (`FOR UPDATE SKIP
LOCKED`) let many claimers take different chunks at once, and a claim is a lease that its holder renews
(`heartbeat`) while it computes, so the chunk of a killed process goes back to the others when the lease
runs out (at once, when the dead process was on this host: `reap`). Only the first completion of a chunk
counts (`complete` changes nothing once it is done), so no chunk is counted twice.

Chunk ids are a hash of the candidate and the examples' score keys: the same piece of work has the same
id in any process, so a new leader replaying a run finds the chunks its predecessor published (and
their results) instead of publishing them again.

Times are the database server's clock, so claimers on hosts whose clocks disagree still agree on leases.
Every call is retried while the server is away (`prompthone.sqlurl.call_with_retry`). Only server stores
have the table: a SQLite run is one process.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import BigInteger, Column, Float, Identity, Integer, MetaData, String, Table, Text, literal_column, text
from sqlalchemy.engine import Engine

from prompthone.sqlurl import call_with_retry

T = TypeVar("T")

#: seconds a claim holds a chunk without a heartbeat (the claimer renews it every third of that)
LEASE_S = 30.0

metadata = MetaData()

chunks = Table(
    "ph_chunks",
    metadata,
    Column("id", String(64), primary_key=True),  # hash of candidate + score keys (`chunk_id`)
    Column("seq", BigInteger, Identity(), nullable=False),  # publication order: claimed first come, first served
    Column("created", Float, nullable=False),
    Column("status", String(16), nullable=False),  # pending | claimed | done | failed
    Column("candidate", Text, nullable=False),  # Candidate.to_json()
    Column("example_ids", Text, nullable=False),  # JSON list
    Column("keys", Text, nullable=False),  # JSON list: each example's score key, as the publisher computed it
    Column("options", Text, nullable=False),  # JSON: what the evaluator is (metric, LM options), for people
    Column("claimed_by", String(300)),  # "host:pid"
    Column("lease_until", Float),
    Column("attempts", Integer, nullable=False),  # claims so far (a reclaimed chunk has more than one)
    Column("done_by", String(300)),
    Column("done_at", Float),
    Column("records", Text),  # JSON list of ExampleRecord dicts, in example order (errors included)
    Column("error", Text),  # JSON: why the chunk failed (a permanent LM error: every example would fail)
)

_NOW = "EXTRACT(EPOCH FROM clock_timestamp())::double precision"


def worker_id(pid: int | None = None) -> str:
    """This process as the store records it: "host:pid"."""
    return f"{socket.gethostname()}:{os.getpid() if pid is None else pid}"


def chunk_id(candidate_hash: str, keys: Sequence[str]) -> str:
    return hashlib.sha256(json.dumps([candidate_hash, list(keys)]).encode()).hexdigest()


@dataclass(frozen=True)
class ChunkSpec:
    """A piece of work as the leader publishes it."""

    id: str
    candidate: str  # JSON
    example_ids: list[str]
    keys: list[str]
    options: dict[str, Any]


@dataclass(frozen=True)
class Claimed:
    """A chunk this process claimed: compute it, then `complete`, `fail` or `release` it."""

    id: str
    candidate: str
    example_ids: list[str]
    keys: list[str]
    attempts: int


@dataclass(frozen=True)
class Finished:
    """A chunk someone finished: its records, or the error that failed it."""

    id: str
    status: str  # done | failed
    records: list[dict[str, Any]] | None
    error: dict[str, Any] | None
    done_by: str | None


class ChunkQueue:
    """The `ph_chunks` table of one run's server store."""

    def __init__(self, engine: Engine, url: str, *, lease_s: float = LEASE_S) -> None:
        self.engine, self.url, self.lease_s = engine, url, lease_s
        self._call(lambda: metadata.create_all(engine))

    def _call(self, fn: Callable[[], T]) -> T:
        return call_with_retry(fn, self.url)

    def publish(self, specs: Sequence[ChunkSpec], *, again: Sequence[str] = ()) -> None:
        """Add chunks; one already there is kept (a replaying leader reuses it and its result), unless it
        failed (its error may be fixed by now) or is named in `again` (its result was already used: an
        evaluation asked for the same examples again, so errors in it are tried again, as locally)."""
        from sqlalchemy.dialects.postgresql import insert

        rows = [
            {"id": s.id, "created": literal_column(_NOW), "status": "pending", "candidate": s.candidate,
             "example_ids": json.dumps(s.example_ids), "keys": json.dumps(s.keys),
             "options": json.dumps(s.options, sort_keys=True, default=str), "attempts": 0}
            for s in specs
        ]  # fmt: skip
        if not rows:
            return
        reset = {"status": "pending", "claimed_by": None, "lease_until": None, "done_by": None, "done_at": None,
                 "records": None, "error": None}  # fmt: skip

        def run() -> None:
            with self.engine.begin() as c:
                for row in rows:
                    stmt = insert(chunks).values(**row)
                    c.execute(stmt.on_conflict_do_update(index_elements=[chunks.c.id], set_=reset,
                                                         where=chunks.c.status == "failed"))  # fmt: skip
                if again:
                    c.execute(
                        chunks.update()
                        .where(chunks.c.id.in_(list(again)), chunks.c.status.in_(("done", "failed")))
                        .values(**reset)
                    )

        self._call(run)

    def claim(self, worker: str, *, min_age_s: float = 0.0) -> Claimed | None:
        """The oldest chunk nobody works on (pending for at least `min_age_s`, or whose lease ran out),
        now leased to `worker`; None when there is none."""
        sql = text(f"""
            UPDATE ph_chunks SET status = 'claimed', claimed_by = :worker, lease_until = {_NOW} + :lease,
                   attempts = attempts + 1
            WHERE id = (
                SELECT id FROM ph_chunks
                WHERE (status = 'pending' AND created <= {_NOW} - :min_age)
                   OR (status = 'claimed' AND lease_until < {_NOW})
                ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
            RETURNING id, candidate, example_ids, keys, attempts""")

        def run() -> Any:
            with self.engine.begin() as c:
                return c.execute(sql, {"worker": worker, "lease": self.lease_s, "min_age": min_age_s}).first()

        row = self._call(run)
        if row is None:
            return None
        return Claimed(row[0], row[1], json.loads(row[2]), json.loads(row[3]), row[4])

    def heartbeat(self, ids: Sequence[str], worker: str) -> set[str]:
        """Renew `worker`'s leases on `ids`; returns the ones still its own (a chunk withdrawn by the leader,
        or finished by another process, is not: its computing can stop)."""
        if not ids:
            return set()
        sql = text(f"""UPDATE ph_chunks SET lease_until = {_NOW} + :lease
                       WHERE id = ANY(:ids) AND status = 'claimed' AND claimed_by = :worker RETURNING id""")

        def run() -> set[str]:
            with self.engine.begin() as c:
                return set(c.execute(sql, {"ids": list(ids), "worker": worker, "lease": self.lease_s}).scalars())

        return self._call(run)

    def complete(self, chunk: str, worker: str, records: list[dict[str, Any]]) -> bool:
        """Store a chunk's records; True if this was its first completion (the one that counts)."""
        sql = text(f"""UPDATE ph_chunks SET status = 'done', records = :records, done_by = :worker,
                              done_at = {_NOW}, lease_until = NULL, error = NULL
                       WHERE id = :id AND status <> 'done'""")
        return self._write(sql, {"id": chunk, "worker": worker, "records": json.dumps(records, default=str)}) == 1

    def fail(self, chunk: str, worker: str, error: dict[str, Any]) -> bool:
        """Mark a chunk failed (an error every example would share); True if it was not finished yet."""
        sql = text(f"""UPDATE ph_chunks SET status = 'failed', error = :error, done_by = :worker,
                              done_at = {_NOW}, lease_until = NULL
                       WHERE id = :id AND status NOT IN ('done', 'failed')""")
        return self._write(sql, {"id": chunk, "worker": worker, "error": json.dumps(error, default=str)}) == 1

    def release(self, chunk: str, worker: str) -> None:
        """Give a claimed chunk back unfinished, for another process to compute."""
        sql = text("""UPDATE ph_chunks SET status = 'pending', claimed_by = NULL, lease_until = NULL
                      WHERE id = :id AND status = 'claimed' AND claimed_by = :worker""")
        self._write(sql, {"id": chunk, "worker": worker})

    def withdraw(self, ids: Sequence[str]) -> None:
        """Take back the unfinished chunks among `ids` (the evaluation that wanted them stopped): whoever
        computes one stops at its next heartbeat, so no call is paid for a result nobody reads."""
        if ids:
            sql = text("DELETE FROM ph_chunks WHERE id = ANY(:ids) AND status IN ('pending', 'claimed')")
            self._write(sql, {"ids": list(ids)})

    def finished(self, ids: Sequence[str]) -> list[Finished]:
        """The chunks among `ids` that are done or failed."""
        if not ids:
            return []
        sql = text("""SELECT id, status, records, error, done_by FROM ph_chunks
                      WHERE id = ANY(:ids) AND status IN ('done', 'failed')""")

        def run() -> list[Any]:
            with self.engine.connect() as c:
                return list(c.execute(sql, {"ids": list(ids)}).all())

        return [
            Finished(r[0], r[1], json.loads(r[2]) if r[2] else None, json.loads(r[3]) if r[3] else None, r[4])
            for r in self._call(run)
        ]

    def claimed(self, ids: Sequence[str] | None = None) -> int:
        """How many chunks (among `ids`, or all) some process is computing now."""
        where = "status = 'claimed'" + (" AND id = ANY(:ids)" if ids is not None else "")

        def run() -> int:
            with self.engine.connect() as c:
                return int(
                    c.execute(
                        text(f"SELECT count(*) FROM ph_chunks WHERE {where}"), {"ids": list(ids or [])}
                    ).scalar_one()
                )

        return self._call(run)

    def reap(self, alive: Callable[[int], bool]) -> int:
        """Give back the chunks claimed by processes of this host that are gone (`alive(pid)` is False),
        without waiting for their leases to run out; returns how many."""
        host = socket.gethostname()

        def run() -> list[Any]:
            with self.engine.connect() as c:
                sql = text("SELECT DISTINCT claimed_by FROM ph_chunks WHERE status = 'claimed' AND claimed_by LIKE :h")
                return list(c.execute(sql, {"h": f"{host}:%"}).scalars())

        gone = []
        for who in self._call(run):
            pid = who.rsplit(":", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and not alive(int(pid)):
                gone.append(who)
        n = 0
        for who in gone:
            sql = text("""UPDATE ph_chunks SET status = 'pending', claimed_by = NULL, lease_until = NULL
                          WHERE status = 'claimed' AND claimed_by = :who""")
            n += self._write(sql, {"who": who})
        return n

    def counts(self) -> dict[str, int]:
        """Chunks by status (for progress lines)."""

        def run() -> dict[str, int]:
            with self.engine.connect() as c:
                return dict(c.execute(text("SELECT status, count(*) FROM ph_chunks GROUP BY status")).all())

        return self._call(run)

    def _write(self, sql: Any, params: dict[str, Any]) -> int:
        def run() -> int:
            with self.engine.begin() as c:
                return c.execute(sql, params).rowcount

        return self._call(run)
