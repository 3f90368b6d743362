"""Reading a run's store that may be broken: empty, truncated, garbage, or never recorded.

Every command that reads a run (`show`, `report`, `export`, `runs`, `optimize --resume`) opens it
through `open_run`, so each says the same one line about what is wrong with a run folder and what to
do, instead of a database traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy.exc import DatabaseError, InterfaceError, OperationalError, ProgrammingError

from prompthone.sqlurl import safe_url
from prompthone.store.run_store import RunStore, database_url, sqlite_path

#: what SQLAlchemy raises for a store it cannot read
STORE_ERRORS = (DatabaseError, InterfaceError, OperationalError, ProgrammingError)


class BrokenRunError(LookupError):
    """A run's store cannot be read, or holds no run; the message says which file, why, and what to do."""


def _first_line(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    return (str(orig).strip().splitlines() or [type(orig).__name__])[0]


def explain(url: str, exc: BaseException | None = None) -> str:
    """One line about a store that failed to give its run (`exc`: the error it gave, if any)."""
    path = sqlite_path(url)
    where = str(path) if path is not None else safe_url(url)
    reason = _first_line(exc) if exc is not None else ""
    if path is not None:
        if not path.exists():
            return f"{where} does not exist: the folder holds no run store"
        if path.stat().st_size == 0:
            return f"{where} is empty: the run was stopped before it recorded itself; nothing can be read or resumed"
        if "not a database" in reason:
            return f"{where} is not a SQLite database (overwritten or garbled): the run in it cannot be read"
        if "malformed" in reason:
            return (
                f"{where} is damaged ({reason}; truncated or partly overwritten): the run cannot be read; "
                f"`sqlite3 {path} .recover` may save part of it"
            )
    if exc is None or "no such table" in reason or "does not exist" in reason:
        return f"{where} holds no recorded run: it was stopped before it recorded itself; start the run again"
    return f"cannot read the run store {where}: {reason}"


def open_run(run: str | Path, *, read_only: bool = False) -> tuple[RunStore, dict[str, Any]]:
    """The store of a run folder (or URL) and its run row, or `BrokenRunError` with one clear line.

    `read_only` opens a SQLite store without writing anything (no tables created; works in a
    read-only folder): what read commands use.
    """
    url = database_url(run)
    store = None
    try:
        store = RunStore(url, read_only=True)  # first without writing: a broken file is left as it was
        row = store.run_row()
        if not read_only:
            store.close()
            store = RunStore(url)
            store.run_id = row["id"]
        return store, row
    except LookupError:  # RunStore.run_row: the table is there, the run's row is not
        problem = explain(url)
    except STORE_ERRORS as exc:
        problem = explain(url, exc)
    if store is not None:
        store.close()
    raise BrokenRunError(problem)
