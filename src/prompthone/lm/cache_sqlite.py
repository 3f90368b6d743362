"""A cache table in a SQLite file: the user's response cache, a run's `run.sqlite`, an older run folder's
`cache.sqlite`.

WAL mode and a busy timeout let many processes and tasks write to one file at once. A damaged table is
never allowed to crash a run: a file of its own (`owns_file`, the user's shared cache) is moved aside
whole and started again; a table that shares its file with a run's store is repaired by replacing that
table alone (`prompthone.lm.cache_table`), once per process; anything else and the table is no longer
used by this process (a warning says so, and what the run does instead).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

from prompthone.lm.cache_storage import CacheTable, Row, TableSpec
from prompthone.lm.cache_table import check_table, is_damage, repair

log = logging.getLogger(__name__)

#: rows read at a time when a table is copied into another
COPY_BATCH = 500


class SqliteTable:
    """One cache table in a SQLite file, safe to share between threads."""

    def __init__(self, path: str | Path, spec: TableSpec, *, owns_file: bool = True) -> None:
        """`owns_file=False`: the file holds more than this table (a run's store), so it is never moved."""
        self.path = Path(path).expanduser()
        self.where = str(self.path)
        self.spec = spec
        self.owns_file = owns_file
        self._lock = threading.Lock()
        self._repaired = False
        self._select = f"SELECT {', '.join(spec.read)} FROM {spec.name} WHERE {spec.columns[0]}=?"
        marks = ",".join("?" * len(spec.columns))
        self._replace = f"INSERT OR REPLACE INTO {spec.name} VALUES ({marks})"
        self._keep = f"INSERT OR IGNORE INTO {spec.name} VALUES ({marks})"
        #: None once this process stops using the table (see `_disable`)
        self.conn: sqlite3.Connection | None = self._open()

    def _connect(self) -> sqlite3.Connection | None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        for pragma in self.spec.pragmas:
            conn.execute(f"PRAGMA {pragma}")
        conn.execute("PRAGMA busy_timeout=30000")
        if not self.owns_file:
            problem = check_table(conn, self.spec.name, list(self.spec.columns))
            if problem is not None:
                self._repaired = True
                if not repair(conn, self.path, self.spec.name, self.spec.schema, problem):
                    conn.close()
                    return None
        conn.executescript(self.spec.schema)
        conn.execute(f"SELECT count(*) FROM {self.spec.name} LIMIT 1").fetchone()
        return conn

    def _open(self) -> sqlite3.Connection | None:
        try:
            return self._connect()
        except sqlite3.DatabaseError as exc:
            if not is_damage(exc):
                raise
            if not self.owns_file:  # the file is a run's store: it is never moved, whatever the cache's state
                self._warn(exc)
                return None
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.warning("%s %s is unreadable (%s); moved it to %s and started a new one",
                        self.spec.what, self.path, exc, aside)  # fmt: skip
            for suffix in ("", "-wal", "-shm"):
                p = Path(str(self.path) + suffix)
                if p.exists():
                    p.replace(Path(str(aside) + suffix))
            return self._connect()

    def get(self, key: str) -> Row | None:
        for attempt in range(2):  # again once after an in-place repair
            conn = self.conn
            if conn is None:
                return None
            try:
                with self._lock:
                    return conn.execute(self._select, (key,)).fetchone()
            except sqlite3.DatabaseError as exc:
                if not self._failed(exc) or attempt:
                    return None
        return None

    def insert(self, row: Row) -> None:
        self._write(self._replace, [row])

    def insert_many(self, rows: Iterable[Row]) -> None:
        self._write(self._keep, list(rows))

    def _write(self, sql: str, rows: list[Row]) -> None:
        for attempt in range(2):  # again once after an in-place repair
            conn = self.conn
            if conn is None:
                return
            try:
                with self._lock:
                    if len(rows) == 1:
                        conn.execute(sql, rows[0])
                    else:
                        conn.executemany(sql, rows)
                return
            except sqlite3.DatabaseError as exc:
                if not self._failed(exc) or attempt:
                    return

    def batches(self, size: int = COPY_BATCH) -> Iterator[list[Row]]:
        """Every row, a batch at a time; what a damaged table still gives, then a warning."""
        conn = self.conn
        if conn is None:
            return
        after = ""
        while True:
            try:
                with self._lock:
                    batch = conn.execute(
                        f"SELECT * FROM {self.spec.name} WHERE {self.spec.columns[0]} > ? "
                        f"ORDER BY {self.spec.columns[0]} LIMIT ?",
                        (after, size),
                    ).fetchall()
            except sqlite3.DatabaseError as exc:
                self._warn(exc)
                return
            if not batch:
                return
            yield batch
            after = batch[-1][0]

    def copy_into(self, other: CacheTable) -> int:
        """Store every row of this table in `other` (rows it has already are kept); how many were read."""
        n = 0
        for batch in self.batches():
            other.insert_many(batch)
            n += len(batch)
        return n

    def one(self, sql: str) -> Row | None:
        if self.conn is None:
            return None
        with self._lock:
            return self.conn.execute(sql).fetchone()

    def _failed(self, exc: sqlite3.DatabaseError) -> bool:
        """Repair a table found damaged mid-run (True: the caller may try again), else stop using it.

        Only a table that shares its file with a run's store is repaired in place, and only once per
        process; anything else keeps the run going without this table rather than crash it."""
        conn = self.conn
        if self.owns_file or self._repaired or not is_damage(exc) or conn is None:
            self._disable(exc)
            return False
        self._repaired = True
        with self._lock:
            ok = repair(conn, self.path, self.spec.name, self.spec.schema, str(exc))
        if not ok:
            self.conn = None  # `repair` said what happens instead
        return ok

    def _disable(self, exc: Exception) -> None:
        """Keep the run going without this table rather than crash it mid-way."""
        if self.conn is not None:
            self._warn(exc)
        self.conn = None

    def _warn(self, exc: Exception) -> None:
        log.warning(self.spec.failed.format(where=self.path, exc=exc))

    def close(self) -> None:
        with self._lock:
            if self.conn is not None:
                self.conn.close()
