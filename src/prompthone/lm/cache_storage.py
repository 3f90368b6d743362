"""What a cache (`ResponseCache`, `prompthone.evaluate.ScoreCache`) keeps its rows in: one table, in a
SQLite file (`cache_sqlite.SqliteTable`) or in a run's database on a server (`cache_server.ServerTable`).

A cache decides what a row means; the table only stores rows by key. The two kinds fail differently:
a SQLite table can be damaged (and is repaired in place or set aside), a server can be away (and is
waited for, as the run store is), but either way a cache-only fault never stops a run.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

#: one row of a cache table, its values in the table's column order (the key first)
Row = tuple


@dataclass(frozen=True)
class TableSpec:
    """One cache table, the same in SQLite and on a server."""

    name: str
    #: what the cache is called in messages ("response cache")
    what: str
    #: the columns, in order (a table of another shape is not this cache's); the first is the key
    columns: tuple[str, ...]
    #: each column's Python type (str, int or float): what a server table declares it as
    kinds: tuple[type, ...]
    #: the columns a lookup returns, in order
    read: tuple[str, ...]
    #: the SQLite `CREATE TABLE IF NOT EXISTS` (kept as it always was: files already on disk have it)
    schema: str
    #: the warning when the table stops being used, with `{where}` and `{exc}`: what the run does instead
    failed: str
    #: SQLite pragmas of this cache's connections, beyond WAL and the busy timeout
    pragmas: tuple[str, ...] = ()


class CacheTable(Protocol):
    """Rows by key: the storage behind a cache."""

    #: where the rows are, for messages (a path, or a server URL without its password)
    where: str

    def get(self, key: str) -> Row | None:
        """The `read` columns of the row under `key`; None when there is none (or the table is unusable)."""
        ...

    def insert(self, row: Row) -> None:
        """Store a row; one under the same key may be there already (the same value, by construction)."""
        ...

    def insert_many(self, rows: Iterable[Row]) -> None:
        """Store rows, keeping any already stored under the same keys."""
        ...

    def one(self, sql: str) -> Row | None:
        """The first row of a read-only query without parameters (statistics)."""
        ...

    def close(self) -> None: ...
