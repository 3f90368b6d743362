"""A run's budget as one row of its database (`ph_budget`), shared by every process working on the run.

Several processes (the leader and its workers) spend one budget. Counting in each process and adding
up later would let each of them spend the whole of it, so the counters live in the run's database and
each paid call reserves itself with one conditional UPDATE before it is sent: the database serializes
the updates of a row, so of the processes racing for the last call exactly one gets it. Tokens and cost
are known only after a call, so they are added after it; the token and cost limits therefore stop
every process within the calls it has in flight when they are crossed.

The row also says whether the budget is `active`: it bounds the search only (from `begin` to `end`),
not the scoring of the start and the result on the test split, and every process reads that here, so a
worker need not be told when the search ends. `started_at` is set by the first `begin` only: a resumed
run (or a new leader taking over) keeps counting time and calls from the first start.

Only runs whose store is on a database server use it (`prompthone.runs.shared_budget`); the table has
its own metadata, so it is made only in those stores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Integer,
    MetaData,
    Table,
    and_,
    case,
    insert,
    inspect,
    not_,
    or_,
    select,
    update,
)
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError, ProgrammingError

from prompthone.sqlurl import call_with_retry

metadata = MetaData()

budget = Table(
    "ph_budget",
    metadata,
    Column("id", Integer, primary_key=True),  # always 1: one budget per run (one run per database)
    Column("active", Boolean, nullable=False),  # the search is on: paid calls are reserved and counted
    Column("started_at", Float),  # epoch seconds of the search's first start (wall time counts from it)
    Column("calls", Integer, nullable=False),  # paid calls reserved, over every process
    Column("prompt_tokens", BigInteger, nullable=False),
    Column("completion_tokens", BigInteger, nullable=False),
    Column("cost_usd", Float, nullable=False),
    # the limits (NULL: none), written by the leader from the run's config so that workers need not know them
    Column("max_calls", Integer),
    Column("max_tokens", BigInteger),
    Column("max_cost_usd", Float),
    Column("max_wall_s", Float),
)


@dataclass(frozen=True)
class BudgetState:
    """The row as read: what every process has spent, and the limits."""

    active: bool
    started_at: float | None
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    max_calls: int | None
    max_tokens: int | None
    max_cost_usd: float | None
    max_wall_s: float | None

    def wall_s(self, now: float) -> float:
        return 0.0 if self.started_at is None else now - self.started_at


class BudgetRow:
    """The `ph_budget` row of the database behind `engine` (at `url`, for retries while it is away)."""

    def __init__(self, engine: Engine, url: str) -> None:
        self.engine, self.url = engine, url
        self._retry(self._create)

    def _retry(self, fn: Any) -> Any:
        return call_with_retry(fn, self.url)

    def _create(self) -> None:
        try:
            metadata.create_all(self.engine)
        except (IntegrityError, ProgrammingError):  # another process made it at the same moment
            with self.engine.connect() as c:
                if not inspect(c).has_table(budget.name):
                    raise

    def open(
        self, *, max_calls: int | None, max_tokens: int | None, max_cost_usd: float | None, max_wall_s: float | None
    ) -> None:
        """The leader starts (or resumes) the run: the row exists with these limits, inactive until `begin`;
        counters and start time are kept from an earlier attempt."""
        limits = dict(max_calls=max_calls, max_tokens=max_tokens, max_cost_usd=max_cost_usd, max_wall_s=max_wall_s)

        def write() -> None:
            with self.engine.begin() as c:
                done = c.execute(update(budget).where(budget.c.id == 1).values(active=False, **limits)).rowcount
                if not done:
                    c.execute(insert(budget).values(id=1, active=False, started_at=None, calls=0, prompt_tokens=0,
                                                    completion_tokens=0, cost_usd=0.0, **limits))  # fmt: skip

        self._retry(write)

    def begin(self, now: float) -> None:
        """The search starts: calls are reserved and counted from now on (the start time is set once)."""
        self._update(active=True, started_at=case((budget.c.started_at.is_(None), now), else_=budget.c.started_at))

    def end(self) -> None:
        """The search is over: calls go unreserved and uncounted."""
        self._update(active=False)

    def _update(self, **values: Any) -> None:
        def write() -> None:
            with self.engine.begin() as c:
                c.execute(update(budget).where(budget.c.id == 1).values(**values))

        self._retry(write)

    def reserve(self, now: float) -> BudgetState | None:
        """Reserve one paid call while the search is on and no limit is reached: None when the call may be
        sent (reserved, or the search is not on), else the row that refused it."""
        b = budget.c
        within = and_(
            or_(b.max_calls.is_(None), b.calls < b.max_calls),
            or_(b.max_tokens.is_(None), b.prompt_tokens + b.completion_tokens < b.max_tokens),
            or_(b.max_cost_usd.is_(None), b.cost_usd < b.max_cost_usd),
            or_(b.max_wall_s.is_(None), b.started_at.is_(None), b.started_at + b.max_wall_s > now),
        )
        stmt = (
            update(budget)
            .where(b.id == 1, or_(not_(b.active), within))
            .values(calls=b.calls + case((b.active, 1), else_=0))
        )

        def attempt() -> BudgetState | None:
            with self.engine.begin() as c:
                if c.execute(stmt).rowcount:
                    return None
            state = self.read()
            return state if state is not None and state.active else None  # no row, or the search just ended

        return self._retry(attempt)

    def add(self, prompt_tokens: int, completion_tokens: int, cost_usd: float) -> None:
        """Count a paid call's tokens and cost (while the search is on)."""
        b = budget.c

        def write() -> None:
            with self.engine.begin() as c:
                c.execute(
                    update(budget)
                    .where(b.id == 1, b.active)
                    .values(
                        prompt_tokens=b.prompt_tokens + int(prompt_tokens),
                        completion_tokens=b.completion_tokens + int(completion_tokens),
                        cost_usd=b.cost_usd + float(cost_usd),
                    )
                )

        self._retry(write)

    def read(self) -> BudgetState | None:
        def attempt() -> BudgetState | None:
            with self.engine.connect() as c:
                row = c.execute(select(budget).where(budget.c.id == 1)).mappings().first()
            if row is None:
                return None
            return BudgetState(**{k: v for k, v in row.items() if k != "id"})

        return self._retry(attempt)
