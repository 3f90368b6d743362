"""A run store on a database server (PostgreSQL): the check before a new run starts.

The URL handling, engine and retries it shares with MIPRO's Optuna study and the run's response cache
live in `prompthone.sqlurl`.
"""

from __future__ import annotations

from sqlalchemy import inspect

from prompthone.sqlurl import cannot_connect, describe, is_connection_failure, server_engine

__all__ = ["StoreNotEmptyError", "check_new_store", "server_engine"]


class StoreNotEmptyError(ValueError):
    """A new run was pointed at a database that already holds tables (another run, or other data)."""


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
