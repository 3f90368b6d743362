"""Scores already computed, keyed by (program, task model, candidate, example, metric, run options).

Every optimizer in a run shares one, so a configuration scored on a minibatch by one trial is never
paid for again by the next, nor by a full evaluation. Errors are never cached: they are retried.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path
from typing import Any

from prompthone.evaluate.results import ExampleRecord

SCHEMA = """
CREATE TABLE IF NOT EXISTS scores (
    key TEXT PRIMARY KEY,
    candidate TEXT NOT NULL,
    example_id TEXT NOT NULL,
    metric TEXT NOT NULL,
    record TEXT NOT NULL
);
"""


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
    """In memory by default; backed by a SQLite file when given a path (the run's store)."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._mem: dict[str, ExampleRecord] = {}
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        if path is not None:
            p = Path(path).expanduser()
            p.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(p, check_same_thread=False, isolation_level=None, timeout=30)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA busy_timeout=30000")
            self._conn.executescript(SCHEMA)

    def get(self, key: str) -> ExampleRecord | None:
        with self._lock:
            if key in self._mem:
                return self._mem[key]
            if self._conn is None:
                return None
            row = self._conn.execute("SELECT record FROM scores WHERE key=?", (key,)).fetchone()
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
            if self._conn is not None:
                self._conn.execute(
                    "INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?)",
                    (key, candidate, record.example_id, metric, json.dumps(record.to_dict(), default=str)),
                )

    def __len__(self) -> int:
        return len(self._mem)
