"""Scores already computed, keyed by (program, task model, candidate, example, metric, run options).

Every optimizer in a run shares one, so a configuration scored on a minibatch by one trial is never
paid for again by the next, nor by a full evaluation. Errors are never cached: they are retried.
The table lives in the run's store: its SQLite file, where a damaged one is replaced in place (never
the file), or its database on a server, shared by every process working on the run and waited for
while the server is away (as the store is). Failing that, the run goes on with the scores in memory:
a lost score is recomputed from the run's response cache, never bought again.
"""

from __future__ import annotations

import hashlib
import json
import threading
from pathlib import Path
from typing import Any

from prompthone.evaluate.results import ExampleRecord
from prompthone.lm.cache import copy_cache_file, open_table
from prompthone.lm.cache_storage import CacheTable, TableSpec

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    key TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    example_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    record TEXT NOT NULL
);
"""
COLUMNS = ["key", "candidate", "example_id", "metric", "record"]
TABLE = TableSpec(
    name="scores",
    what="score cache",
    columns=tuple(COLUMNS),
    kinds=(str, str, str, str, str),
    read=("record",),
    schema=SCHEMA,
    failed="score cache in {where} failed ({exc}); keeping scores in memory for this process",
)


def score_key(*, program: str, lm: str, candidate: str, example: Any, metric: str, options: dict) -> str:
    """A key that changes whenever the score could: also the example's content, not only its id."""
    payload = {
        "program": program,
        "lm": lm,
        "candidate": candidate,
        "example": example.to_dict(),
        "metric": metric,
        "options": options,
    }
    blob = json.dumps(payload, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ScoreCache:
    """In memory by default; backed by a table when given a path (the run's SQLite store) or a server's
    SQLAlchemy URL (the run's database, shared by every process on the run)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._mem: dict[str, ExampleRecord] = {}
        self._lock = threading.Lock()
        self._table: CacheTable | None = None if path is None else open_table(path, TABLE, owns_file=False)

    def get(self, key: str) -> ExampleRecord | None:
        with self._lock:
            if key in self._mem:
                return self._mem[key]
        row = self._table.get(key) if self._table is not None else None
        if row is None:
            return None
        rec = ExampleRecord.from_dict(json.loads(row[0]))
        with self._lock:
            self._mem[key] = rec
        return rec

    def put(self, key: str, candidate: str, metric: str, record: ExampleRecord) -> None:
        if record.status == "error":
            return
        with self._lock:
            self._mem[key] = record
        if self._table is not None:
            self._table.insert((key, candidate, record.example_id, metric, json.dumps(record.to_dict(), default=str)))

    def copy_from(self, path: str | Path) -> int:
        """Keep every score of an older cache file here too (scores already here are kept); how many.

        A run folder made before a server store held its caches keeps them in its `cache.sqlite`."""
        return 0 if self._table is None else copy_cache_file(path, TABLE, self._table)

    def __len__(self) -> int:
        return len(self._mem)
