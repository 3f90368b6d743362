"""Scores already computed, keyed by (program, task model, candidate, example, metric, run options).

Every optimizer in a run shares one, so a configuration scored on a minibatch by one trial is never
paid for again by the next, nor by a full evaluation. Errors are never cached: they are retried.
The table lives in the run's store file, so a damaged one is replaced in place (never the file) and,
failing that, the run goes on with the scores in memory: a lost score is recomputed from the run's
response cache, never bought again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
from pathlib import Path
from typing import Any

from prompthone.evaluate.results import ExampleRecord
from prompthone.lm.cache_table import check_table, is_damage, repair

log = logging.getLogger(__name__)

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
        self._path = None if path is None else Path(path).expanduser()
        self._repaired = False
        if self._path is not None:
            try:
                self._conn = self._connect(self._path)
            except sqlite3.DatabaseError as exc:
                if not is_damage(exc):
                    raise
                self._forget_file(exc)

    def _connect(self, p: Path) -> sqlite3.Connection:
        p.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(p, check_same_thread=False, isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA busy_timeout=30000")
        problem = check_table(conn, "scores", COLUMNS)
        if problem is not None:
            self._repaired = True
            if not repair(conn, p, "scores", SCHEMA, problem):
                conn.close()
                raise sqlite3.DatabaseError(problem)
        conn.executescript(SCHEMA)
        return conn

    def _forget_file(self, exc: BaseException) -> None:
        """Go on with the scores in memory: the run must not fail because its score cache did."""
        log.warning("score cache in %s failed (%s); keeping scores in memory for this process", self._path, exc)
        self._conn = None

    def _failed(self, exc: sqlite3.DatabaseError) -> bool:
        """Replace the table once when it turns out damaged mid-run (True: try again), else forget the file."""
        if self._repaired or not is_damage(exc) or self._conn is None:
            if self._conn is not None:
                self._forget_file(exc)
            return False
        self._repaired = True
        if repair(self._conn, self._path, "scores", SCHEMA, str(exc)):
            return True
        self._conn = None
        return False

    def get(self, key: str) -> ExampleRecord | None:
        for attempt in range(2):
            with self._lock:
                if key in self._mem:
                    return self._mem[key]
                if self._conn is None:
                    return None
                try:
                    row = self._conn.execute("SELECT record FROM scores WHERE key=?", (key,)).fetchone()
                    break
                except sqlite3.DatabaseError as exc:
                    if not self._failed(exc) or attempt:
                        return None
        if row is None:
            return None
        rec = ExampleRecord.from_dict(json.loads(row[0]))
        with self._lock:
            self._mem[key] = rec
        return rec

    def put(self, key: str, candidate: str, metric: str, record: ExampleRecord) -> None:
        if record.status == "error":
            return
        values = (key, candidate, record.example_id, metric, json.dumps(record.to_dict(), default=str))
        with self._lock:
            self._mem[key] = record
            for attempt in range(2):
                if self._conn is None:
                    return
                try:
                    self._conn.execute("INSERT OR REPLACE INTO scores VALUES (?,?,?,?,?)", values)
                    return
                except sqlite3.DatabaseError as exc:
                    if not self._failed(exc) or attempt:
                        return

    def __len__(self) -> int:
        return len(self._mem)
