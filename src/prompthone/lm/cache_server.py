"""A cache table in a run's database on a server (PostgreSQL), shared by every process working on the run.

An answer or score stored by one process is found by all the others, so nothing is bought twice. Two
processes may store the same key at once (both bought the same answer): the second insert keeps the
first's row (`ON CONFLICT DO NOTHING`), which is the same value by construction. The table is created
when missing; one of another shape under the cache's name is left alone and not used.

A server that is away is waited for exactly as the run store waits (`prompthone.sqlurl.call_with_retry`):
the cache lives in the store's database, so when it stays away the run stops with the store's one-line
message and `--resume` goes on, rather than buying answers it can no longer keep. Any other fault of the
table (a query it refuses) is a cache-only fault: the run goes on without the table, after a warning; a
row the server cannot hold (a NUL in an answer's text) is left uncached alone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

from sqlalchemy import Column, Float, Integer, MetaData, Table, Text, bindparam, insert, inspect, select, text
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DataError, IntegrityError, ProgrammingError, SQLAlchemyError

from prompthone.lm.cache_storage import Row, TableSpec
from prompthone.sqlurl import call_with_retry, reason, safe_url, server_engine

log = logging.getLogger(__name__)
T = TypeVar("T")

_TYPES = {str: Text, int: Integer, float: Float}  # Float: double precision (a timestamp needs it)
_ENGINES: dict[str, Engine] = {}
_ENGINES_LOCK = threading.Lock()


def _engine(url: str) -> Engine:
    """One engine per database per process, shared by its caches (each a table in it)."""
    with _ENGINES_LOCK:
        if url not in _ENGINES:
            _ENGINES[url] = server_engine(url)
        return _ENGINES[url]


def _table(spec: TableSpec) -> Table:
    key, *rest = spec.columns
    kinds = dict(zip(spec.columns, spec.kinds, strict=True))
    return Table(
        spec.name,
        MetaData(),
        Column(key, _TYPES[kinds[key]], primary_key=True),
        *(Column(c, _TYPES[kinds[c]], nullable=False) for c in rest),
    )


class ServerTable:
    """One cache table in the database at `url` (a SQLAlchemy server URL, password and all)."""

    def __init__(self, url: str, spec: TableSpec) -> None:
        self.url = url
        self.where = safe_url(url)
        self.spec = spec
        self.table = _table(spec)
        self.engine = _engine(url)
        self._key = self.table.c[spec.columns[0]]
        self._select = select(*(self.table.c[c] for c in spec.read)).where(self._key == bindparam("wanted"))
        if self.engine.dialect.name == "postgresql":
            self._keep: Any = pg_insert(self.table).on_conflict_do_nothing(index_elements=[self._key])
        else:  # another server: an insert that meets a stored key fails, and the stored row is kept
            self._keep = None
        #: False once this process stops using the table (see `_disable`)
        self.usable = True
        self._call(self._create)

    def _call(self, fn: Callable[[], T]) -> T | None:
        """`fn()`, waited for while the server is away; a fault of the table itself ends its use here."""
        if not self.usable:
            return None
        try:
            return call_with_retry(fn, self.url)
        except SQLAlchemyError as exc:
            self._disable(reason(exc))
            return None

    def _create(self) -> None:
        for attempt in range(2):
            try:
                with self.engine.begin() as c:
                    seen = inspect(c)
                    if not seen.has_table(self.spec.name):
                        self.table.create(c)
                        return
                    names = [col["name"] for col in seen.get_columns(self.spec.name)]
                break
            except (IntegrityError, ProgrammingError):
                if attempt:  # not created by another process in the meantime: a real fault
                    raise
                # else another process created it at the same moment: look again
        if names != list(self.spec.columns):
            self._disable(f"a table {self.spec.name} of other columns is there ({', '.join(names)}); it is left as is")

    def get(self, key: str) -> Row | None:
        def read() -> Row | None:
            with self.engine.connect() as c:
                row = c.execute(self._select, {"wanted": key}).first()
            return None if row is None else tuple(row)

        return self._call(read)

    def insert(self, row: Row) -> None:
        self.insert_many([row])

    def insert_many(self, rows: Iterable[Row]) -> None:
        values = [dict(zip(self.spec.columns, row, strict=True)) for row in rows]
        if not values:
            return
        try:
            self._call(lambda: self._insert(values))
        except _Unstorable:  # one row the server cannot hold: store the others one by one
            for one in values:
                try:
                    self._call(lambda v=one: self._insert([v]))
                except _Unstorable as exc:
                    log.warning("%s %s could not store the entry %s (%s); it is not cached",
                                self.spec.what, self.where, one[self._key.key], exc)  # fmt: skip

    def _insert(self, values: list[dict[str, Any]]) -> None:
        try:
            if self._keep is not None:
                with self.engine.begin() as c:
                    c.execute(self._keep, values)
                return
            for one in values:
                try:
                    with self.engine.begin() as c:
                        c.execute(insert(self.table), one)
                except IntegrityError:
                    pass  # stored already, by another process or an attempt whose reply was lost
        except DataError as exc:
            raise _Unstorable(reason(exc)) from None

    def one(self, sql: str) -> Row | None:
        def read() -> Row | None:
            with self.engine.connect() as c:
                row = c.execute(text(sql)).first()
            return None if row is None else tuple(row)

        return self._call(read)

    def _disable(self, why: str) -> None:
        """Keep the run going without this table rather than crash it mid-way."""
        if self.usable:
            log.warning(self.spec.failed.format(where=self.where, exc=why))
        self.usable = False

    def close(self) -> None:
        """Nothing to let go of: the process's engine for the database serves its other caches too."""


class _Unstorable(Exception):
    """The server refused the values of a row (not the table): that row alone is left uncached."""
