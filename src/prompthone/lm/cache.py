"""The response cache: a SQLite file that makes every paid-for answer replayable.

Keys hash everything that can change an answer (backend identity without secrets, model, messages,
sampling parameters, sample index), so a hit is always the answer the same call would have bought.
WAL mode and a busy timeout let many processes and tasks write to one file at once. A damaged cache is
rebuilt rather than crashing a run: the cache is an optimization, never the only copy of anything a run
needs. A file of its own (the user's shared cache) is moved aside whole; a cache that shares its file
with a run's store (`owns_file=False`) only ever has its own table replaced (`prompthone.lm.cache_table`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

from prompthone.lm.cache_table import check_table, is_damage, repair
from prompthone.lm.types import Generation, Request

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    backend TEXT NOT NULL,
    model TEXT NOT NULL,
    request TEXT NOT NULL,
    text TEXT NOT NULL,
    finish_reason TEXT NOT NULL,
    prompt_tokens INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    created_at REAL NOT NULL
);
"""
#: the columns of `responses`, in order (a table of another shape is a damaged cache)
COLUMNS = [
    "key",
    "backend",
    "model",
    "request",
    "text",
    "finish_reason",
    "prompt_tokens",
    "completion_tokens",
    "latency_s",
    "created_at",
]


#: `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, built once: keys are
#: made on every call, and `json.dumps` with options builds a new encoder each time
_KEY_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(backend_identity: str, model: str, request: Request) -> str:
    """The hex sha256 of a canonical JSON of everything that can change the answer."""
    payload = {"backend": backend_identity, "model": model, "request": request.key_fields()}
    blob = _KEY_JSON.encode(payload)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A process-safe, task-safe key -> Generation store in one SQLite file."""

    def __init__(self, path: str | Path, *, fallback: ResponseCache | None = None, owns_file: bool = True) -> None:
        """`fallback` is a second cache read on a miss and written on every put: a run keeps its own
        copy of every answer it used (so it resumes from its own file) while still sharing the user's
        cache with other runs. `owns_file=False` says the file holds more than this cache (a run's
        store): then a damaged cache is repaired by replacing its table alone, never by moving the file."""
        self.path = Path(path).expanduser()
        self.fallback = fallback
        self.owns_file = owns_file
        self._lock = threading.Lock()
        self._broken = False
        self._repaired = False
        self._conn: sqlite3.Connection | None = self._open()

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=30000")
        if not self.owns_file:
            problem = check_table(conn, "responses", COLUMNS)
            if problem is not None:
                self._repaired = True
                if not repair(conn, self.path, "responses", SCHEMA, problem):
                    self._broken = True
                    return conn
        conn.executescript(SCHEMA)
        conn.execute("SELECT count(*) FROM responses LIMIT 1").fetchone()
        return conn

    def _open(self) -> sqlite3.Connection | None:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            if not self.owns_file:  # the file is a run's store: it is never moved, whatever the cache's state
                self._disable(exc)
                return None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning(
                "response cache %s is unreadable (%s); moved it to %s and started a new one",
                self.path,
                exc,
                aside,
            )
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    p.replace(Path(str(aside) + suffix))
            return self._connect()

    def get(self, key: str) -> Generation | None:
        row = self.get_row(key)
        if row is not None:
            return row[0]
        hit = self.fallback.get_row(key) if self.fallback is not None else None
        if hit is None:
            return None
        gen, backend, model, request = hit
        self._insert(key, backend, model, request, gen, 0.0)  # keep a copy: the run resumes from its own file
        return gen

    def get_row(self, key: str) -> tuple[Generation, str, str, str] | None:
        """The cached answer with the backend, model and request JSON it was stored under."""
        if self._broken or self._conn is None:
            return None
        try:
            with self._lock:
                row = self._conn.execute(
                    "SELECT text, finish_reason, prompt_tokens, completion_tokens, backend, model, request "
                    "FROM responses WHERE key=?",
                    (key,),
                ).fetchone()
        except sqlite3.DatabaseError as exc:
            self._failed(exc)
            return None
        if row is None:
            return None
        return Generation(*row[:4]), row[4], row[5], row[6]

    def put(self, key: str, backend: str, model: str, request: Request, gen: Generation, latency_s: float) -> None:
        req = json.dumps(request.key_fields(), sort_keys=True, ensure_ascii=False)
        self._insert(key, backend, model, req, gen, latency_s)
        if self.fallback is not None:
            self.fallback._insert(key, backend, model, req, gen, latency_s)

    def _insert(self, key: str, backend: str, model: str, req: str, gen: Generation, latency_s: float) -> None:
        if self._broken or self._conn is None:
            return
        row = (key, backend, model, req, gen.text, gen.finish_reason, gen.prompt_tokens, gen.completion_tokens)
        for attempt in range(2):  # again once after an in-place repair
            try:
                with self._lock:
                    self._conn.execute("INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?)",
                                       (*row, latency_s, time.time()))  # fmt: skip
                return
            except sqlite3.DatabaseError as exc:
                if not self._failed(exc) or attempt:
                    return

    def _failed(self, exc: sqlite3.DatabaseError) -> bool:
        """Repair a cache table found damaged mid-run (True: the caller may try again), else stop using it.

        Only a cache that shares its file with a run's store is repaired in place, and only once per
        process; anything else keeps the run going without this cache rather than crash it."""
        if self.owns_file or self._repaired or not is_damage(exc) or self._conn is None:
            self._disable(exc)
            return False
        self._repaired = True
        with self._lock:
            ok = repair(self._conn, self.path, "responses", SCHEMA, str(exc))
        if not ok:
            self._broken = True
        return ok

    def _disable(self, exc: Exception) -> None:
        """Keep the run going without a cache rather than crash it mid-way."""
        if not self._broken:
            log.warning("response cache %s failed (%s); continuing without it for this process", self.path, exc)
        self._broken = True

    def stats(self) -> dict[str, Any]:
        if self._conn is None:
            return {"path": str(self.path), "entries": 0, "text_bytes": 0}
        with self._lock:
            n, size = self._conn.execute("SELECT count(*), coalesce(sum(length(text)),0) FROM responses").fetchone()
        return {"path": str(self.path), "entries": n, "text_bytes": size}

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
