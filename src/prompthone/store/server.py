"""A run store on a database server (PostgreSQL): its engine, and the check before a new run starts.

The URL handling and retries it shares with MIPRO's Optuna study live in `prompthone.sqlurl`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import Engine
from sqlalchemy.exc import NoSuchModuleError

from prompthone.sqlurl import StoreURLError, cannot_connect, connect_args, describe, is_connection_failure, parse_url


class StoreNotEmptyError(ValueError):
    """A new run was pointed at a database that already holds tables (another run, or other data)."""


def server_engine(url: str, **kw: Any) -> Engine:
    """An engine for a server store: dead pooled connections are replaced, connecting does not hang."""
    u = parse_url(url)
    try:
        return create_engine(u, pool_pre_ping=True, connect_args=connect_args(url), **kw)
    except (NoSuchModuleError, ImportError) as exc:
        raise StoreURLError(
            f"the store URL's driver {u.drivername!r} is not installed ({exc}); for PostgreSQL: "
            "pip install 'prompthone[postgres]' and a URL such as postgresql+psycopg://user@host/dbname"
        ) from None


def check_new_store(url: str) -> None:
    """Before a new run makes its folder: the server answers, and the database is empty.

    An empty database, because a run's tables (and MIPRO's Optuna study, which would be taken for
    this run's own and resumed) have no room for a second run.
    """
    engine = server_engine(url)
    try:
        try:
            with engine.connect() as c:
                tables = inspect(c).get_table_names()
        except Exception as exc:
            if is_connection_failure(exc):
                raise cannot_connect(url, exc) from None
            raise
    finally:
        engine.dispose()
    if tables:
        shown = ", ".join(sorted(tables)[:5]) + (", ..." if len(tables) > 5 else "")
        raise StoreNotEmptyError(
            f"the database {describe(url)} given as --store is not empty (it holds {shown}): give an empty "
            "database for a new run (one database per run), or continue its run with --resume RUN_FOLDER"
        )
