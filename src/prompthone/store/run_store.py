"""`RunStore`: everything a run did, in one database (a SQLite file by default).

The store is written as the run goes (each row committed at once), so a run killed at any moment,
SIGKILL included, leaves everything it paid for on disk; `prompthone optimize --resume` replays the
run from its own response and score caches without paying twice.
"""

from __future__ import annotations

import functools
import json
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

from sqlalchemy import create_engine, delete, event, insert, inspect, select, text, update
from sqlalchemy.engine import Engine

from prompthone.lm.types import Completion
from prompthone.program import Candidate
from prompthone.sqlurl import call_with_retry, is_server_url, safe_url
from prompthone.store import schema
from prompthone.store.chunks import worker_id
from prompthone.store.server import server_engine

RUN_DB = "run.sqlite"


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


#: in a run folder whose store is a database server (not `run.sqlite`): where that store is
STORE_POINTER = "store.json"
#: in such a run folder made before the run's response and score caches moved to its server: those caches
#: (copied to the server, and the file renamed, by the first resume: `prompthone.runs.caches`)
CACHE_DB = "cache.sqlite"


def database_url(path_or_url: str | Path) -> str:
    """A SQLAlchemy URL from a run folder, a .sqlite file, or a URL as is.

    A run folder whose store lives on a database server holds `store.json` naming it, so every command
    that takes a run folder (`show`, `report`, `--resume`, ...) finds the store the same way.
    """
    s = str(path_or_url)
    if "://" in s:
        return s
    p = Path(s)
    if p.is_dir() and (p / STORE_POINTER).is_file():
        return json.loads((p / STORE_POINTER).read_text())["url"]
    if p.is_dir() or not p.suffix:
        p = p / RUN_DB
    return f"sqlite:///{p}"


def is_run_folder(path: Path) -> bool:
    """A folder holding a run: its `run.sqlite`, or `store.json` naming the server that holds it."""
    return (path / RUN_DB).is_file() or (path / STORE_POINTER).is_file()


def point_to_store(run_dir: Path, url: str) -> None:
    """Write `store.json` in `run_dir`, without any password: the driver reads it from the environment
    (PostgreSQL: PGPASSWORD or ~/.pgpass), so the folder can be shared without the secret."""
    safe = safe_url(url)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / STORE_POINTER).write_text(json.dumps({"url": safe}, indent=2) + "\n")


def sqlite_path(url: str) -> Path | None:
    return Path(url.removeprefix("sqlite:///")) if url.startswith("sqlite:///") else None


def _connect_read_only(path: Path) -> sqlite3.Connection:
    """A connection that never writes, even in a read-only folder.

    `mode=ro` still needs the WAL index (`-shm`), which it cannot create in a read-only folder; when
    the folder has no WAL with data in it (a run that ended cleanly) nothing is missed by reading the
    file as immutable instead."""
    uri = f"file:{quote(str(path.resolve()))}"
    conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=30)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
        return conn
    except sqlite3.DatabaseError as exc:
        conn.close()
        wal = Path(f"{path}-wal")
        if "unable to open" not in str(exc) or not path.is_file() or (wal.exists() and wal.stat().st_size):
            raise
    return sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=30)


def _engine(url: str, *, read_only: bool = False) -> Engine:
    if is_server_url(url):
        return server_engine(url)
    path = sqlite_path(url)
    if path is not None and read_only:  # writes nothing, so it also opens a run in a read-only folder
        engine = create_engine("sqlite://", creator=lambda: _connect_read_only(path), future=True)
    else:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, future=True)
    if path is not None:

        @event.listens_for(engine, "connect")
        def _pragmas(conn, _record) -> None:  # WAL: readers never block the writer
            cur = conn.cursor()
            if not read_only:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

    return engine


F = TypeVar("F", bound=Callable[..., Any])


def _retried(method: F) -> F:
    """Retry a store call while its database server is unreachable (see `prompthone.sqlurl`);
    a SQLite file is called once, as before."""

    @functools.wraps(method)
    def call(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        if not is_server_url(self.url):
            return method(self, *args, **kwargs)
        return call_with_retry(lambda: method(self, *args, **kwargs), self.url)

    return call  # type: ignore[return-value]


def _event_key(kind: str, data: Any) -> tuple[str, str]:
    """What makes two events the same one: all but `cached` (a replayed call is served from the cache) and
    `cache_key` (which events of runs begun before proposal events carried it lack)."""
    plain = json.loads(data) if isinstance(data, str) else json.loads(_json(data))
    if isinstance(plain, dict):
        plain.pop("cached", None)
        plain.pop("cache_key", None)
    return kind, json.dumps(plain, sort_keys=True, ensure_ascii=False)


class RunStore:
    """Read and write one run's database."""

    def __init__(self, url: str | Path, *, read_only: bool = False) -> None:
        """`read_only`: read an existing store without writing to it (no tables created; a SQLite file is
        opened read-only, so a run in a read-only folder can still be shown)."""
        self.url = database_url(url)
        #: the run this store object reads and writes (a database holds one run; this guards the others)
        self.run_id: str | None = None
        #: events an interrupted attempt recorded that its resumed replay has not emitted again yet
        self._earlier_events: Counter[tuple[str, str]] = Counter()
        self.engine = _engine(self.url, read_only=read_only)
        if not read_only:
            self._create_tables()

    @_retried
    def _create_tables(self) -> None:
        schema.metadata.create_all(self.engine)
        with self.engine.begin() as c:
            for table, name in schema.ADDED_COLUMNS:
                if name not in self._columns(c, table):
                    column = table.c[name]
                    kind = column.type.compile(dialect=self.engine.dialect)
                    c.execute(text(f"ALTER TABLE {table.name} ADD COLUMN {name} {kind}"))

    @staticmethod
    def _columns(conn: Any, table: Any) -> set[str]:
        """The columns `table` has in this database (an older store lacks the ones added since)."""
        return {col["name"] for col in inspect(conn).get_columns(table.name)}

    @property
    def path(self) -> Path | None:
        """The SQLite file, when the store is one (other caches of the run live beside its tables)."""
        return sqlite_path(self.url)

    # -- the run -----------------------------------------------------------------------------------
    @_retried
    def create_run(self, run_id: str, config: dict[str, Any], manifest: dict[str, Any]) -> None:
        now = time.time()
        with self.engine.begin() as c:
            c.execute(
                insert(schema.run).values(
                    id=run_id,
                    created_at=now,
                    updated_at=now,
                    status="running",
                    config=_json(config),
                    manifest=_json(manifest),
                    result=None,
                )
            )
        self.run_id = run_id

    @_retried
    def run_row(self) -> dict[str, Any]:
        query = select(schema.run)
        if self.run_id is not None:
            query = query.where(schema.run.c.id == self.run_id)
        with self.engine.connect() as c:
            row = c.execute(query.order_by(schema.run.c.created_at)).mappings().first()
        if row is None:
            raise LookupError(f"no run recorded in {safe_url(self.url)}")
        self.run_id = row["id"]
        d = dict(row)
        for key in ("config", "manifest", "result"):
            d[key] = json.loads(d[key]) if d[key] else None
        return d

    def _this_run(self) -> Any:
        """The WHERE clause of this store's own run row (never every row of `ph_run`)."""
        if self.run_id is None:
            self.run_row()
        return schema.run.c.id == self.run_id

    @_retried
    def set_status(self, status: str, result: dict[str, Any] | None = None) -> None:
        values: dict[str, Any] = {"status": status, "updated_at": time.time()}
        if result is not None:
            values["result"] = _json(result)
        with self.engine.begin() as c:
            c.execute(update(schema.run).where(self._this_run()).values(**values))

    @_retried
    def restart(self) -> None:
        """Begin a resumed attempt: forget the trials (the replay records them again, in order) but keep
        the events. An optimizer that restores its state instead of replaying it (MIPRO, from its
        Optuna study) does not emit its earlier events (bootstrap, proposals, ...) again; one that
        replays does, and `record_event` then records each of those once, not twice."""
        with self.engine.begin() as c:
            c.execute(delete(schema.trials))
            c.execute(update(schema.run).where(self._this_run()).values(status="running", updated_at=time.time()))
            rows = c.execute(select(schema.events.c.kind, schema.events.c.data)).all()
        self._earlier_events = Counter(_event_key(kind, data) for kind, data in rows)

    # -- what happens during the run ------------------------------------------------------------------
    @_retried
    def record_candidate(self, candidate: Candidate) -> None:
        with self.engine.begin() as c:
            exists = c.execute(select(schema.candidates.c.hash).where(schema.candidates.c.hash == candidate.hash))
            if exists.first() is None:
                c.execute(
                    insert(schema.candidates).values(
                        hash=candidate.hash, json=candidate.to_json(), first_seen=time.time()
                    )
                )

    @_retried
    def record_trial(
        self, *, idx: int, candidate: Candidate, score: float, n: int, full: bool, best, info, worker: str | None = None
    ) -> None:
        """`worker`: the process that computed the trial's evaluation (default: this one)."""
        self.record_candidate(candidate)
        with self.engine.begin() as c:
            c.execute(
                insert(schema.trials).values(
                    idx=idx,
                    candidate=candidate.hash,
                    score=score,
                    n=n,
                    full=full,
                    best=best,
                    info=_json(info),
                    ts=time.time(),
                    worker=worker or worker_id(),
                )
            )

    @_retried
    def record_event(self, kind: str, data: dict[str, Any]) -> None:
        key = _event_key(kind, data)
        if self._earlier_events[key] > 0:  # recorded by the interrupted attempt this one replays
            self._earlier_events[key] -= 1
            return
        with self.engine.begin() as c:
            c.execute(insert(schema.events).values(ts=time.time(), kind=kind, data=_json(data)))

    @_retried
    def record_lm_call(self, role: str, completion: Completion, cost_usd: float = 0.0) -> None:
        with self.engine.begin() as c:
            c.execute(
                insert(schema.lm_calls).values(
                    ts=time.time(),
                    role=role,
                    model=completion.model,
                    prompt_tokens=completion.prompt_tokens,
                    completion_tokens=completion.completion_tokens,
                    cost_usd=cost_usd,
                    latency_s=completion.latency_s,
                    cached=completion.cached,
                    finish_reason=completion.finish_reason,
                    cache_key=completion.cache_key,
                    reused_prompt_tokens=completion.reused_prompt_tokens,
                    worker=worker_id(),
                )
            )

    # -- reading -------------------------------------------------------------------------------------
    @_retried
    def trials(self) -> list[dict[str, Any]]:
        t = schema.trials
        with self.engine.connect() as c:
            have = self._columns(c, t)  # a store opened read-only may predate some columns: they read as None
            rows = c.execute(select(*(col for col in t.c if col.name in have)).order_by(t.c.idx)).mappings().all()
        return [{**{col.name: r.get(col.name) for col in t.c}, "info": json.loads(r["info"] or "{}")} for r in rows]

    @_retried
    def candidate(self, hash_: str) -> Candidate:
        with self.engine.connect() as c:
            row = c.execute(select(schema.candidates.c.json).where(schema.candidates.c.hash == hash_)).first()
        if row is None:
            raise LookupError(f"candidate {hash_[:12]} is not in {safe_url(self.url)}")
        return Candidate.from_json(row[0])

    @_retried
    def lm_usage(self) -> list[dict[str, Any]]:
        """Per role and model: calls, paid calls, tokens paid and served from cache, cost."""
        t = schema.lm_calls
        with self.engine.connect() as c:
            rows = c.execute(
                select(t.c.role, t.c.model, t.c.prompt_tokens, t.c.completion_tokens, t.c.cached, t.c.cost_usd)
            ).all()
        agg: dict[tuple[str, str], dict[str, Any]] = {}
        for role, model, p, comp, cached, cost in rows:
            a = agg.setdefault(
                (role, model),
                {
                    "role": role,
                    "model": model,
                    "calls": 0,
                    "paid_calls": 0,
                    "prompt_tokens": 0,
                    "completion_tokens": 0,
                    "cached_tokens": 0,
                    "cost_usd": 0.0,
                },
            )
            a["calls"] += 1
            if cached:
                a["cached_tokens"] += p + comp
            else:
                a["paid_calls"] += 1
                a["prompt_tokens"] += p
                a["completion_tokens"] += comp
                a["cost_usd"] += cost
        return list(agg.values())

    @_retried
    def lm_calls(self) -> list[dict[str, Any]]:
        """Every LM call in the order it was made, for charts of spend over time (reports)."""
        t = schema.lm_calls
        with self.engine.connect() as c:
            have = self._columns(c, t)  # a store opened read-only may predate some columns: they read as None
            rows = c.execute(select(*(col for col in t.c if col.name in have)).order_by(t.c.id)).mappings().all()
        return [{col.name: r.get(col.name) for col in t.c} for r in rows]

    @_retried
    def score_records(self, candidate_hash: str) -> list[dict[str, Any]]:
        """The evaluator's cached per-example records of one candidate (the `scores` table), by example id.

        Read only, and empty when the run never scored through a stored cache: the table belongs to
        `prompthone.evaluate.ScoreCache`, not to this schema, so it may be absent.
        """
        with self.engine.connect() as c:
            if not inspect(c).has_table("scores"):
                return []
            rows = c.execute(
                text("SELECT record FROM scores WHERE candidate = :h ORDER BY example_id"), {"h": candidate_hash}
            ).all()
        return [json.loads(r[0]) for r in rows]

    @_retried
    def events(self) -> list[dict[str, Any]]:
        with self.engine.connect() as c:
            rows = c.execute(select(schema.events).order_by(schema.events.c.id)).mappings().all()
        return [{**dict(r), "data": json.loads(r["data"])} for r in rows]

    def close(self) -> None:
        self.engine.dispose()
