"""Database URLs of a run's server (PostgreSQL): safe to show, parsed with one message, and retried.

A run on a database server keeps three things there: the run store (`prompthone.store`), MIPRO's
Optuna study (`prompthone.optimize.mipro.search`) and the run's response and score caches
(`prompthone.lm.cache_server`). All need the same URL handling, so it sits on a floor of its own below
every package and depends on SQLAlchemy alone. A server can be unreachable for reasons that have
nothing to do with the run (a restart, a network blip), so every store write and every Optuna storage
call is retried with backoff for a bounded time before the run stops with one line saying so; the run
then resumes with `--resume`. A server URL may carry a password: it is needed to connect, and is never
written anywhere (`safe_url`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from typing import Any, TypeVar

from sqlalchemy import create_engine
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import (
    ArgumentError,
    DBAPIError,
    DisconnectionError,
    InterfaceError,
    NoSuchModuleError,
    OperationalError,
)

log = logging.getLogger("prompthone.store")
T = TypeVar("T")

#: how long a store write waits for an unreachable server before the run stops (seconds, all attempts)
RETRY_SECONDS = 30.0
#: seconds libpq waits for a connection before it counts as a failure (libpq's own default is forever)
CONNECT_TIMEOUT_S = 10
_retry_s: ContextVar[float | None] = ContextVar("prompthone_store_retry_s", default=None)


class StoreUnavailableError(BaseException):
    """The run store's server cannot be reached (after retrying, during a run).

    A BaseException, like `KeyboardInterrupt`: a store write fails inside an LM call's listener or an
    evaluation, where an ordinary exception would be counted as the example's error (or a failed trial)
    and the run would go on without its record. This one always ends the run.
    """


class StoreURLError(ValueError):
    """`--store` is not a database URL SQLAlchemy can use."""


def is_server_url(url: str) -> bool:
    """A store on a database server (anything but a SQLite file), where connections can come and go."""
    return "://" in url and not url.startswith("sqlite")


def parse_url(url: str | URL) -> URL:
    """The URL parsed, or `StoreURLError` (a message that never quotes the URL, which may hold a password)."""
    try:
        return make_url(url)
    except (ArgumentError, ValueError):
        # the message would quote the string, password and all
        raise StoreURLError(
            "--store is not a database URL; expected e.g. postgresql+psycopg://user@host:5432/dbname"
        ) from None


def safe_url(url: str | URL) -> str:
    """The URL with no password in it: what is written to files, events, configs, logs and messages.

    Text that is not a URL (a file path) is returned as is.
    """
    if isinstance(url, str) and "://" not in url:
        return url
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        return "<database URL>"  # unparseable: nothing of it is shown
    return parsed._replace(password=None).render_as_string(hide_password=False)  # (.set ignores None)


def describe(url: str | URL) -> str:
    """`host:port/db` for messages, without user or password (a Unix socket folder stands as the host)."""
    u = parse_url(url)
    if u.get_backend_name() == "sqlite":
        return u.database or "an in-memory SQLite database"
    host = u.host or u.query.get("host") or "localhost"
    port = u.port or u.query.get("port") or {"postgresql": 5432, "mysql": 3306}.get(u.get_backend_name(), "")
    host, port = (h[-1] if isinstance(h, tuple) else h for h in (host, port))
    return f"{host}:{port}/{u.database or ''}"


def connect_args(url: str | URL) -> dict[str, Any]:
    """The driver's options for a server store: connecting gives up after `CONNECT_TIMEOUT_S`."""
    u = parse_url(url)
    if u.get_backend_name() == "postgresql" and "connect_timeout" not in u.query:
        return {"connect_timeout": CONNECT_TIMEOUT_S}
    return {}


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


def _cause(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        yield e
        e = e.__cause__ or e.__context__


#: what the server says when asking again cannot help: wrong password, no such database or role
PERMANENT = ("password authentication failed", "no password supplied", "authentication failed", "does not exist",
             "permission denied")  # fmt: skip


def is_connection_failure(exc: BaseException) -> bool:
    """The server went away, could not be reached, or refused the connection (see `is_refusal`)."""
    for e in _cause(exc):
        if isinstance(e, DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OperationalError | InterfaceError | DisconnectionError):
            return True
        if type(e).__module__.startswith("psycopg") and type(e).__name__ in ("OperationalError", "InterfaceError"):
            return True
    return False


def is_refusal(exc: BaseException) -> bool:
    """The server answered and refused (wrong password, no such database): asking again cannot help."""
    return is_connection_failure(exc) and any(p in reason(exc) for p in PERMANENT)


def is_connection_error(exc: BaseException) -> bool:
    """An error that says the server went away or cannot be reached (worth retrying): not a bad query,
    and not a refusal (`is_refusal`). Optuna wraps the driver's error in its own
    (`StorageInternalError`), so the chain is searched."""
    return is_connection_failure(exc) and not is_refusal(exc)


def cannot_connect(url: str, exc: BaseException) -> StoreUnavailableError:
    why = reason(exc)
    hint = "; the run folder keeps no password: give it in PGPASSWORD or ~/.pgpass" if "no password" in why else ""
    return StoreUnavailableError(f"cannot connect to the run store {describe(url)}: {why}{hint}")


def reason(exc: BaseException) -> str:
    """The driver's own first line about the failure (e.g. `connection refused`), for a one-line message."""
    for e in _cause(exc):
        if isinstance(e, DBAPIError) and e.orig is not None:
            e = e.orig
        if type(e).__module__.startswith("psycopg") and str(e).strip():
            return str(e).strip().splitlines()[0].strip()
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def retry_seconds() -> float:
    value = _retry_s.get()
    return RETRY_SECONDS if value is None else value


@contextlib.contextmanager
def retrying_for(seconds: float) -> Iterator[None]:
    """Retry store calls for `seconds` in this block (0: one attempt), e.g. to list runs without waiting."""
    token = _retry_s.set(seconds)
    try:
        yield
    finally:
        _retry_s.reset(token)


def call_with_retry(fn: Callable[[], T], url: str) -> T:
    """`fn()`, retried with backoff while the server at `url` is unreachable, for `retry_seconds()`.

    Then `StoreUnavailableError`, one line naming the server (no password) and the driver's reason.
    """
    deadline = time.monotonic() + retry_seconds()
    delay, warned = 0.25, False
    while True:
        try:
            return fn()
        except Exception as exc:
            if is_refusal(exc):
                raise cannot_connect(url, exc) from None
            if not is_connection_error(exc):
                raise
            why = reason(exc)
            if time.monotonic() + delay > deadline:
                waited = f" after retrying for {retry_seconds():.0f} s" if retry_seconds() >= 1 else ""
                raise StoreUnavailableError(f"the run store {describe(url)} is unreachable{waited}: {why}") from None
            if not warned:
                log.warning(
                    "warning: the run store %s is unreachable (%s); retrying for up to %.0f s",
                    describe(url),
                    why,
                    retry_seconds(),
                )
                warned = True
        time.sleep(delay)
        delay = min(delay * 2, 4.0)
