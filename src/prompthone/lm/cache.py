"""The response cache: a table that makes every paid-for answer replayable.

Keys hash everything that can change an answer (backend identity without secrets, model, messages,
sampling parameters, sample index), so a hit is always the answer the same call would have bought.
The table is in a SQLite file (the user's shared cache, a run's `run.sqlite`: `cache_sqlite`), or in a
run's database on a server, where every process working on the run shares it (`cache_server`).
A damaged cache is rebuilt rather than crashing a run: the cache is an optimization, never the only
copy of anything a run needs. A file of its own (the user's shared cache) is moved aside whole; a cache
that shares its file with a run's store (`owns_file=False`) only ever has its own table replaced
(`prompthone.lm.cache_table`). A server that is away is waited for as the run store waits for it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from prompthone.lm.cache_server import ServerTable
from prompthone.lm.cache_sqlite import SqliteTable
from prompthone.lm.cache_storage import CacheTable, TableSpec
from prompthone.lm.types import Generation, Request
from prompthone.sqlurl import is_server_url

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
TABLE = TableSpec(
    name="responses",
    what="response cache",
    columns=tuple(COLUMNS),
    kinds=(str, str, str, str, str, str, int, int, float, float),
    read=("text", "finish_reason", "prompt_tokens", "completion_tokens", "backend", "model", "request"),
    schema=SCHEMA,
    failed="response cache {where} failed ({exc}); continuing without it for this process",
    pragmas=("synchronous=NORMAL",),
)


def copy_cache_file(path: str | Path, spec: TableSpec, into: CacheTable) -> int:
    """Store every row of the `spec` table of the SQLite file `path` in `into`; how many were read."""
    table = SqliteTable(path, spec, owns_file=False)
    try:
        return table.copy_into(into)
    finally:
        table.close()


def open_table(where: str | Path, spec: TableSpec, *, owns_file: bool = True) -> CacheTable:
    """The table of a cache at `where`: a SQLite file's path, or a database server's SQLAlchemy URL."""
    if isinstance(where, str) and is_server_url(where):
        return ServerTable(where, spec)
    return SqliteTable(where, spec, owns_file=owns_file)


#: `json.dumps(..., sort_keys=True, separators=(",", ":"), ensure_ascii=False)`, built once: keys are
#: made on every call, and `json.dumps` with options builds a new encoder each time
_KEY_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(backend_identity: str, model: str, request: Request) -> str:
    """The hex sha256 of a canonical JSON of everything that can change the answer."""
    payload = {"backend": backend_identity, "model": model, "request": request.key_fields()}
    blob = _KEY_JSON.encode(payload)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class ResponseCache:
    """A process-safe, task-safe key -> Generation store: a SQLite file, or a table on a database server."""

    def __init__(self, path: str | Path, *, fallback: ResponseCache | None = None, owns_file: bool = True) -> None:
        """`path` is a SQLite file, or a server's SQLAlchemy URL (`postgresql+psycopg://...`: a run's
        database, shared by every process on the run). `fallback` is a second cache read on a miss and
        written on every put: a run keeps its own copy of every answer it used (so it resumes from its
        own store) while still sharing the user's cache with other runs. `owns_file=False` says the file
        holds more than this cache (a run's store): then a damaged cache is repaired by replacing its
        table alone, never by moving the file."""
        self.fallback = fallback
        self.owns_file = owns_file
        self._table = open_table(path, TABLE, owns_file=owns_file)
        #: the SQLite file (None when the cache is on a server)
        self.path = self._table.path if isinstance(self._table, SqliteTable) else None

    @property
    def _conn(self) -> sqlite3.Connection | None:
        """The SQLite connection (None on a server, or once the file is no longer used)."""
        return getattr(self._table, "conn", None)

    def get(self, key: str) -> Generation | None:
        row = self.get_row(key)
        if row is not None:
            return row[0]
        hit = self.fallback.get_row(key) if self.fallback is not None else None
        if hit is None:
            return None
        gen, backend, model, request = hit
        self._insert(key, backend, model, request, gen, 0.0)  # keep a copy: the run resumes from its own store
        return gen

    def get_row(self, key: str) -> tuple[Generation, str, str, str] | None:
        """The cached answer with the backend, model and request JSON it was stored under."""
        row = self._table.get(key)
        if row is None:
            return None
        return Generation(*row[:4]), row[4], row[5], row[6]

    def put(self, key: str, backend: str, model: str, request: Request, gen: Generation, latency_s: float) -> None:
        req = json.dumps(request.key_fields(), sort_keys=True, ensure_ascii=False)
        if self.fallback is not None:  # the local copy first: a server away for good must not take the only one
            self.fallback._insert(key, backend, model, req, gen, latency_s)
        self._insert(key, backend, model, req, gen, latency_s)

    def _insert(self, key: str, backend: str, model: str, req: str, gen: Generation, latency_s: float) -> None:
        self._table.insert((key, backend, model, req, gen.text, gen.finish_reason, gen.prompt_tokens,
                            gen.completion_tokens, latency_s, time.time()))  # fmt: skip

    def copy_from(self, path: str | Path) -> int:
        """Keep every answer of an older cache file here too (answers already here are kept); how many.

        A run folder made before a server store held its caches keeps them in its `cache.sqlite`."""
        return copy_cache_file(path, TABLE, self._table)

    def stats(self) -> dict[str, Any]:
        row = self._table.one(f"SELECT count(*), coalesce(sum(length(text)),0) FROM {TABLE.name}")
        n, size = row if row is not None else (0, 0)
        return {"path": self._table.where, "entries": n, "text_bytes": size}

    def close(self) -> None:
        self._table.close()
