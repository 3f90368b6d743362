"""Pieces of the DSPy comparison that need neither DSPy nor a model, so fast tests can check them.

* `CallCap`: the task-model call cap on the DSPy side. DSPy has no call budget of its own, so the
  benchmark's DSPy LM wrapper asks the cap before every request: a response it already has (same
  role, messages and parameters) is replayed for free, as prompthone's run cache does; a new request
  is counted first and refused with `CallCapReached` once the cap is spent, so the cap cannot be
  overshot even with many threads. It also keeps the log that sample efficiency is computed from.
  With a `path`, every answer is also kept in that SQLite file, so a row run again (after a crash, or
  in a later session) replays what was already paid for.
* `prompthone_trajectory`: (task-model calls so far, validation score) for every full-validation
  trial of a prompthone run, read from the run's SQLite (`ph_trials`, `ph_lm_calls`, `ph_events`).
* `calls_to_reach`: the first point of such a trajectory that reaches a target score.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

#: scores closer than this count as equal (validation scores are fractions of a few dozen examples)
EPS = 1e-9


class CallCapReached(RuntimeError):
    """The cap on paid calls is spent; the request was not sent."""


class CallCap:
    """Counts paid requests by role against one cap, and replays repeated requests for free.

    `cap` bounds the calls of the roles in `capped_roles` (default: all roles), summed. Thread-safe.
    Copies (DSPy deep-copies its LMs) share this one object, so every copy draws on the same cap.

    `path`: a SQLite file of answers kept across sessions. The first time a run asks for an answer the
    file holds, it counts as one of the run's calls (in `paid`, with its stored tokens, and against the
    cap) and in `from_file`: calls by role are then the same however many sessions the run took; only
    wall time is not (a row says how many of its calls came from the file).
    """

    def __init__(
        self, cap: int | None, capped_roles: Iterable[str] | None = None, path: str | Path | None = None
    ) -> None:
        self.cap = cap
        self.capped_roles = frozenset(capped_roles) if capped_roles is not None else None
        self._lock = threading.Lock()
        self.paid: Counter[str] = Counter()
        self.replayed: Counter[str] = Counter()
        self.from_file: Counter[str] = Counter()
        self.tokens: Counter[str] = Counter()
        self.refused = 0
        self._answers: dict[str, Any] = {}
        self.marks: list[dict[str, Any]] = []
        self._db: sqlite3.Connection | None = None
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30.0)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, role TEXT, answer TEXT, "
                "prompt_tokens INTEGER, completion_tokens INTEGER)"
            )

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    def __deepcopy__(self, memo: dict) -> CallCap:
        return self

    def __copy__(self) -> CallCap:
        return self

    @staticmethod
    def key(role: str, request: Any) -> str:
        """A stable key for one request (anything JSON can write; other values by their str)."""
        blob = json.dumps([role, request], sort_keys=True, default=str, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()

    def capped_calls(self) -> int:
        with self._lock:
            return self._capped_locked()

    def _capped_locked(self) -> int:
        if self.capped_roles is None:
            return sum(self.paid.values())
        return sum(n for role, n in self.paid.items() if role in self.capped_roles)

    def replay(self, role: str, key: str) -> Any | None:
        """The answer to this request if this run already has it (free) or the file holds it (one of the
        run's calls, paid in an earlier session: may raise `CallCapReached`); else None, and then call
        `reserve` before sending it."""
        with self._lock:
            answer = self._answers.get(key)
            if answer is not None:
                self.replayed[role] += 1
                return answer
            row = self._db.execute(
                "SELECT answer, prompt_tokens, completion_tokens FROM answers WHERE key = ?", (key,)
            ).fetchone() if self._db is not None else None  # fmt: skip
            if row is None:
                return None
            self._reserve_locked(role)
            self.from_file[role] += 1
            answer = json.loads(row[0])
            self._answers[key] = answer
            self.tokens[f"{role}_prompt"] += row[1]
            self.tokens[f"{role}_completion"] += row[2]
            return answer

    def reserve(self, role: str) -> None:
        """Count one paid request of `role`, or raise `CallCapReached` if the cap is spent."""
        with self._lock:
            self._reserve_locked(role)

    def _reserve_locked(self, role: str) -> None:
        counted = self.capped_roles is None or role in self.capped_roles
        if counted and self.cap is not None and self._capped_locked() >= self.cap:
            self.refused += 1
            raise CallCapReached(f"call cap of {self.cap} reached ({dict(self.paid)} paid)")
        self.paid[role] += 1

    def store(self, role: str, key: str, answer: Any, prompt_tokens: int = 0, completion_tokens: int = 0) -> None:
        with self._lock:
            self._answers[key] = answer
            self.tokens[f"{role}_prompt"] += prompt_tokens
            self.tokens[f"{role}_completion"] += completion_tokens
            if self._db is not None:
                self._db.execute(
                    "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?)",
                    (key, role, json.dumps(answer, default=str), prompt_tokens, completion_tokens),
                )

    def mark(self, kind: str, **info: Any) -> None:
        """Note an event (e.g. a validation score) with the paid calls by role at this moment."""
        with self._lock:
            self.marks.append({"kind": kind, "ts": time.time(), "paid": dict(self.paid), **info})


def trajectory_from_marks(marks: Sequence[dict[str, Any]], n_val: int, role: str = "task") -> list[tuple[int, float]]:
    """(calls of `role` so far, score) for every evaluation mark that scored the whole validation set."""
    return [(m["paid"].get(role, 0), m["score"]) for m in marks if m["kind"] == "eval" and m["n"] == n_val]


def prompthone_trajectory(db: str | Path, roles: Sequence[str] = ("task",)) -> list[tuple[int, float]]:
    """(paid calls of `roles` since the optimizer started, score) for each full-validation trial, in order.

    Calls are matched to trials by time: a trial is recorded after the calls that scored it. The start
    of the optimization (the "start" event) excludes scoring the start program on the test split.
    """
    con = sqlite3.connect(f"file:{Path(db)}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT MIN(ts) FROM ph_events WHERE kind = 'start'").fetchone()
        if row is None or row[0] is None:
            raise ValueError(f"{db}: no 'start' event; not a finished prompthone optimization run")
        t_start = row[0]
        marks = ",".join("?" for _ in roles)
        call_ts = [
            r[0]
            for r in con.execute(
                f"SELECT ts FROM ph_lm_calls WHERE cached = 0 AND role IN ({marks}) AND ts >= ? ORDER BY ts",
                (*roles, t_start),
            )
        ]
        trials = con.execute("SELECT ts, score FROM ph_trials WHERE full = 1 AND score IS NOT NULL ORDER BY idx")
        out = []
        i = 0
        for ts, score in trials:
            while i < len(call_ts) and call_ts[i] <= ts:
                i += 1
            out.append((i, float(score)))
        return out
    finally:
        con.close()


def calls_to_reach(trajectory: Sequence[tuple[int, float]], target: float) -> int | None:
    """Calls at the first point scoring at least `target`; None if the run never got there."""
    for calls, score in trajectory:
        if score >= target - EPS:
            return calls
    return None


def best_score(trajectory: Sequence[tuple[int, float]]) -> float | None:
    return max((s for _, s in trajectory), default=None)
