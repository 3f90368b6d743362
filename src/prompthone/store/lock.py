"""One process per run: a lock row in the run's own store (`ph_lock`).

Two processes on one run (two `optimize --resume`, or a resume while the run still goes on) would
both replay it, pay for the calls neither has cached yet, and write over each other's trials. The
lock lives in the store, not beside it, so it works wherever the store does: in `run.sqlite` and on a
PostgreSQL server alike. It is a single row taken with plain INSERT and compare-and-swap UPDATE, which
both databases do atomically.

A holder that died without releasing (SIGKILL, power loss) must not lock its run forever: on the same
host a lock is stale once its process is gone (its pid is no longer alive, or is now another process,
told apart by the process's start time); from another host, once its heartbeat, refreshed every
`HEARTBEAT_S` seconds while the holder runs, is older than `STALE_AFTER_S`. In its own process a lock
is stale once released, even if the release could not reach the store (a server that went away): the
same Python session can resume the run afterwards. A stale lock is taken over.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import sys
import threading
import time
from datetime import datetime
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from prompthone.store import schema

log = logging.getLogger(__name__)

HEARTBEAT_S = 20.0
STALE_AFTER_S = 120.0
_ATTEMPTS = 20
#: tokens of the locks this process holds now: a row of this process with another token is one it
#: gave up but could not delete (its store was away), so it is stale although the process lives
_HELD: set[str] = set()


class RunLockedError(RuntimeError):
    """Another live process works on this run; the message names it (pid, host, start time)."""


class _Held(Exception):
    """`try_acquire` found a live holder."""


def _proc_start(pid: int) -> str | None:
    """When process `pid` started, in clock ticks since boot (Linux); None where it cannot be told."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[-1].split()  # the command name, in parentheses, may hold spaces
    return fields[19] if len(fields) > 19 else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    except OSError:
        return False
    return True


def holder_alive(row: dict[str, Any], *, now: float | None = None) -> bool:
    """Whether the process that holds a lock row may still be working on the run."""
    if row["host"] != socket.gethostname():
        return (now or time.time()) - row["heartbeat_at"] < STALE_AFTER_S
    if row["pid"] == os.getpid():
        return row["token"] in _HELD
    if not _pid_alive(row["pid"]):
        return False
    started = _proc_start(row["pid"])
    return not (row["proc_start"] and started and started != row["proc_start"])


def describe(row: dict[str, Any]) -> str:
    """The holder in words: process, host, when it took the run and when it was last seen."""

    def when(ts: float) -> str:
        return datetime.fromtimestamp(ts).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")

    seen = time.time() - row["heartbeat_at"]
    return (
        f"process {row['pid']} on host {row['host']}, started {when(row['started_at'])} "
        f"(last seen {max(0, seen):.0f} s ago)"
    )


class RunLock:
    """Hold a run's lock while working on it: `acquire()` before touching the run, `release()` after.

    While held, a daemon thread refreshes the heartbeat, so a process on another host sharing the
    store can tell a live holder from a dead one.
    """

    def __init__(self, store: Any, *, where: str = "the run", heartbeat_s: float = HEARTBEAT_S) -> None:
        self.engine = store.engine
        self.where = where
        self.heartbeat_s = heartbeat_s
        self.token = secrets.token_hex(16)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _row(self) -> dict[str, Any]:
        now = time.time()
        return {
            "id": 1,
            "token": self.token,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "proc_start": _proc_start(os.getpid()),
            "started_at": now,
            "heartbeat_at": now,
            "command": " ".join(sys.argv)[:1000],
        }

    def acquire(self) -> None:
        """Take the lock, or raise `RunLockedError` naming the live process that holds it."""
        self._take(refuse=True)

    def try_acquire(self) -> bool:
        """Take the lock if it is free or stale (its holder is gone); False, without waiting, if a live
        process holds it (a worker asks this to become the run's leader when the leader is gone)."""
        try:
            self._take(refuse=False)
        except _Held:
            return False
        return True

    def _take(self, *, refuse: bool) -> None:
        t = schema.lock
        for attempt in range(_ATTEMPTS):
            try:
                with self.engine.begin() as c:
                    held = c.execute(select(t).where(t.c.id == 1)).mappings().first()
                    if held is None:
                        c.execute(insert(t).values(**self._row()))
                    elif holder_alive(dict(held)):
                        if not refuse:
                            raise _Held
                        raise RunLockedError(
                            f"{self.where} is in use by {describe(dict(held))}; wait for it to finish or stop it "
                            "first (a killed process's lock is taken over by the next command)"
                        )
                    else:
                        won = c.execute(update(t).where(t.c.id == 1, t.c.token == held["token"]).values(**self._row()))
                        if won.rowcount != 1:
                            continue  # another process took it over first: look again
                        log.info("took over the lock of %s from %s, which is gone", self.where, describe(dict(held)))
            except (IntegrityError, OperationalError) as exc:
                if isinstance(exc, OperationalError) and "locked" not in str(exc).lower():
                    raise
                time.sleep(0.05 * (attempt + 1))  # another process wrote the row at the same moment: look again
                continue
            _HELD.add(self.token)
            self._thread = threading.Thread(target=self._beat, name="prompthone-run-lock", daemon=True)
            self._thread.start()
            return
        raise RunLockedError(f"{self.where}: could not take its lock: another process keeps taking it; try again")

    def _beat(self) -> None:
        t = schema.lock
        while not self._stop.wait(self.heartbeat_s):
            try:
                with self.engine.begin() as c:
                    c.execute(update(t).where(t.c.id == 1, t.c.token == self.token).values(heartbeat_at=time.time()))
            except Exception as exc:  # a missed beat only matters after STALE_AFTER_S of them
                log.debug("run lock heartbeat failed: %s", exc)

    def release(self) -> None:
        """Give the lock up (only if still ours); safe to call twice."""
        _HELD.discard(self.token)
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        t = schema.lock
        try:
            with self.engine.begin() as c:
                c.execute(delete(t).where(t.c.id == 1, t.c.token == self.token))
        except Exception as exc:  # the store went away: the lock is stale as soon as this process ends
            log.warning("could not release the lock of %s: %s", self.where, exc)

    def __enter__(self) -> RunLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
