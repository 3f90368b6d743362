"""The search machinery under MIPRO: a seeded minibatch schedule, the Optuna study, per-trial TPE
samplers, and the bookkeeping of configurations and their scores.

Determinism: each `ask` gets a fresh `TPESampler` seeded from (run seed, number of trials asked
so far), so a trial's parameters depend only on the seed and on what the study holds, never on a
sampler's hidden random state. That is what makes a resumed study (SQLite) continue exactly as an
uninterrupted run would have.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import math
import random
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from prompthone.data.example import Example
from prompthone.program import Candidate
from prompthone.sqlurl import call_with_retry, connect_args, is_connection_error, is_server_url


def derived_seed(*parts: object) -> int:
    """A 31-bit seed from any parts, stable across processes (no `hash()`, which is salted)."""
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


class MinibatchSchedule:
    """K fixed minibatches cut from a seeded shuffle of the validation examples; trial t uses batch
    t mod K (a configuration already scored on that batch: the next one it has not seen).

    Two configurations scored in trials with the same batch index are compared on the same examples
    (paired), and every batch has the same size: the last one is topped up from the start of the
    shuffled order. With `size >= len(examples)` there is one batch, the whole set.
    """

    def __init__(self, examples: Sequence[Example], size: int, rng: random.Random) -> None:
        if not examples:
            raise ValueError("the validation set is empty: MIPRO needs validation examples to score on")
        order = list(examples)
        rng.shuffle(order)
        n = len(order)
        if size >= n:
            self.batches: tuple[tuple[Example, ...], ...] = (tuple(order),)
        else:
            batches = []
            for i in range(math.ceil(n / size)):
                b = order[i * size : (i + 1) * size]
                b += order[: size - len(b)]
                batches.append(tuple(b))
            self.batches = tuple(batches)

    def __len__(self) -> int:
        return len(self.batches)

    def index_for(self, trial_number: int, seen: Collection[int] = ()) -> int:
        """Trial t's batch: t mod K, or for a configuration already scored on that batch (`seen`) the
        next one it has not been scored on, since the same examples again would tell the search nothing
        new; t mod K when it has been scored on every batch."""
        k = len(self.batches)
        for step in range(k):
            i = (trial_number + step) % k
            if i not in seen:
                return i
        return trial_number % k

    def for_trial(self, trial_number: int, seen: Collection[int] = ()) -> tuple[int, tuple[Example, ...]]:
        i = self.index_for(trial_number, seen)
        return i, self.batches[i]


def make_sampler(seed: int, asked: int, n_startup_trials: int) -> optuna.samplers.TPESampler:
    """TPE for the `asked`-th trial: multivariate (modules interact), constant liar (trials in flight
    count as pending, so a batch of asks spreads out), seeded per trial."""
    return optuna.samplers.TPESampler(
        seed=derived_seed(seed, "tpe", asked),
        n_startup_trials=n_startup_trials,
        multivariate=True,
        constant_liar=True,
    )


def storage_url(storage: str | None) -> str | None:
    """A SQLite file path becomes `sqlite:///...`; a URL (`postgresql://...`) is kept; None: in memory."""
    if storage is None:
        return None
    if "://" in storage:
        return storage
    path = Path(storage).expanduser().resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Optuna logs every study and trial at INFO; our own events say what matters."""
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(before)


class RetryingStorage(BaseStorage):
    """Optuna's storage for a study on a database server, every call retried while the server is
    unreachable (`call_with_retry`): a server restart pauses the search instead of ending it with
    Optuna's traceback. The methods are made below from `BaseStorage`'s, so none is left out."""

    def __init__(self, inner: BaseStorage, url: str) -> None:
        self._inner, self._url = inner, url

    def __getattr__(self, attr: str) -> Any:  # anything Optuna reads that is not a storage method
        return getattr(self.__dict__["_inner"], attr)


def _retrying(name: str) -> Any:
    def method(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        dropped = False

        def attempt() -> Any:
            nonlocal dropped
            try:
                return getattr(self._inner, name)(*args, **kwargs)
            except UpdateFinishedTrialError:
                if dropped and name == "set_trial_state_values":
                    return True  # the attempt whose connection dropped had finished the trial after all
                raise
            except Exception as exc:
                dropped = dropped or is_connection_error(exc)
                raise

        return call_with_retry(attempt, self._url)

    method.__name__ = method.__qualname__ = name
    return method


for _name in [n for n in dir(BaseStorage) if not n.startswith("_") and callable(getattr(BaseStorage, n))]:
    setattr(RetryingStorage, _name, _retrying(_name))
abc.update_abstractmethods(RetryingStorage)


def _storage(url: str | None) -> str | BaseStorage | None:
    """A SQLite file or memory as Optuna opens them; a study on a server behind `RetryingStorage`."""
    if url is None or not is_server_url(url):
        return url
    engine = {"pool_pre_ping": True, "connect_args": connect_args(url)}
    inner = call_with_retry(lambda: optuna.storages.get_storage(RDBStorage(url, engine_kwargs=engine)), url)
    return RetryingStorage(inner, url)


def open_study(storage: str | None, name: str, seed: int) -> optuna.Study:
    """Create the study, or load it when the storage already has one of that name (resume)."""
    return optuna.create_study(
        storage=_storage(storage_url(storage)),
        study_name=name,
        direction="maximize",
        load_if_exists=True,
        sampler=make_sampler(seed, 0, 2),
    )


def asked_count(study: optuna.Study) -> int:
    return sum(1 for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING)


def finished_count(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)))


@dataclass
class ConfigStats:
    """What is known about one configuration: its minibatch scores and its full score, if any."""

    candidate: Candidate
    first_trial: int
    minibatch: list[tuple[int, float, float]] = field(default_factory=list)  # (batch, score, advantage)
    full: float | None = None
    full_failed: bool = False

    def batches_seen(self, n_batches: int) -> set[int]:
        """The minibatches this configuration was scored on (all of them once it has a full score)."""
        return set(range(n_batches)) if self.full is not None else {b for b, _, _ in self.minibatch}

    @property
    def advantage(self) -> float:
        """Mean paired advantage over the start on the same minibatches (what TPE maximizes)."""
        return sum(a for _, _, a in self.minibatch) / len(self.minibatch) if self.minibatch else -math.inf


def pick_for_full_eval(stats: dict[str, ConfigStats]) -> ConfigStats | None:
    """The configuration with the best mean minibatch advantage that has no full score yet (ties: the
    one seen first)."""
    pending = [c for c in stats.values() if c.full is None and not c.full_failed and c.minibatch]
    if not pending:
        return None
    return max(pending, key=lambda c: (c.advantage, -c.first_trial))
