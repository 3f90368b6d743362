"""A cache table that shares its SQLite file with other tables (a run's `run.sqlite`).

A run keeps its response and score caches beside its store (config, trials, LM calls) in one file, so
a damaged cache must be repaired without touching anything else in that file: never by moving the
file aside, and not by `DROP TABLE` either, which walks the damaged pages and fails on them. The
damaged table is renamed (a change to the schema alone, which leaves its pages unread) and an empty
one is created in its place; the set-aside table stays in the file for anyone who wants to salvage it.
"""

from __future__ import annotations

import logging
import sqlite3
import time

log = logging.getLogger(__name__)


def is_damage(exc: BaseException) -> bool:
    """A sign that a table's pages or shape are wrong, as opposed to a busy or locked database."""
    text = str(exc).lower()
    if "locked" in text or "busy" in text:
        return False
    return isinstance(exc, sqlite3.DatabaseError)


def _columns(conn: sqlite3.Connection, table: str) -> list[str] | None:
    """The table's column names; None when there is no table of that name."""
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name=?", (table,)).fetchone()
    if kind is None:
        return None
    if kind[0] != "table":
        return []  # a view or an index under the cache's name: not a cache table
    return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def check_table(conn: sqlite3.Connection, table: str, columns: list[str]) -> str | None:
    """What is wrong with `table` (None when it is absent or sound): a wrong shape or damaged pages."""
    try:
        have = _columns(conn, table)
        if have is None:
            return None
        if have != columns:
            return f"its columns are {have}, expected {columns}"
        problems = [r[0] for r in conn.execute(f"PRAGMA quick_check({table})")]
    except sqlite3.DatabaseError as exc:
        if not is_damage(exc):
            raise
        return str(exc)
    return None if problems == ["ok"] else "; ".join(problems[:3])


def set_aside(conn: sqlite3.Connection, table: str, schema: str) -> str:
    """Rename `table` out of the way and create an empty one from `schema`; return the new name.

    `ALTER TABLE ... RENAME` rewrites the schema only, so it works on a table whose pages are damaged.
    """
    aside = f"{table}_damaged_{int(time.time() * 1000)}"
    kind = conn.execute("SELECT type FROM sqlite_master WHERE name=?", (table,)).fetchone()
    if kind is not None and kind[0] == "view":
        conn.execute(f"DROP VIEW {table}")
    elif kind is not None:
        conn.execute(f"ALTER TABLE {table} RENAME TO {aside}")
    conn.executescript(schema)
    return aside


def repair(conn: sqlite3.Connection, path: object, table: str, schema: str, problem: str) -> bool:
    """Replace a damaged cache table in place; False (after a warning) when even that is impossible."""
    try:
        aside = set_aside(conn, table, schema)
    except sqlite3.DatabaseError as exc:
        log.warning(
            "the %s cache table in %s is damaged (%s) and cannot be replaced (%s); continuing without it "
            "(what it held is found in other caches or computed again; nothing else in the file is touched)",
            table,
            path,
            problem,
            exc,
        )
        return False
    log.warning(
        "the %s cache table in %s was damaged (%s); set it aside as %s and started an empty one "
        "(what it held is found in other caches or computed again; nothing else in the file was touched)",
        table,
        path,
        problem,
        aside,
    )
    return True
