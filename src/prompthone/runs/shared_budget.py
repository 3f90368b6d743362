"""A run's budget held by its database, for every process working on the run (`SharedBudget`).

A run whose store is on a database server may be worked on by several processes (a leader and its
workers), each with its own `LM` objects. `Budget` counts one process's LMs between units of work, so
each process would spend the whole budget, and a trial may overshoot it. `SharedBudget` keeps the
counters in the run's database (`prompthone.store.budget_row`): every paid call of every process it is
attached to reserves itself there before it is sent (`LM.gate`), and adds its tokens and cost after
(an LM listener), so the run stops at exactly `max_lm_calls` paid calls, and within the calls in flight
when a token, cost or time limit is reached. `spent()` and `check()` read the sum over all processes.

The leader makes it with `SharedBudget.open` (at the start of each attempt: the search's budget is off
while the start is scored on test); a worker process with `SharedBudget.join`; both `attach` it to
their LMs. A run on a SQLite store keeps `Budget`, exactly as before.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from prompthone.lm import LM, Completion
from prompthone.optimize.budget import Budget, limit_reached
from prompthone.store import RunStore
from prompthone.store.budget_row import BudgetRow, BudgetState

#: what a refusal adds to the limit's message: the count is the run's, not this process's
_NOTE = " (counted over every process of the run)"


@dataclass
class SharedBudget(Budget):
    """`Budget`'s limits and prices, counted in the run's database (see the module docstring)."""

    row: BudgetRow | None = field(default=None, repr=False)

    @classmethod
    def open(cls, store: RunStore, limits: Budget) -> SharedBudget:
        """The leader's budget for `store`'s run, with `limits` (the run's config): written to the row,
        which is off until `begin()`; what earlier attempts spent is kept."""
        budget = cls.join(store, limits)
        assert budget.row is not None
        budget.row.open(max_calls=limits.max_lm_calls, max_tokens=limits.max_tokens,
                        max_cost_usd=limits.max_cost_usd, max_wall_s=limits.max_wall_s)  # fmt: skip
        return budget

    @classmethod
    def join(cls, store: RunStore, limits: Budget) -> SharedBudget:
        """A worker's handle on the budget of `store`'s run: it spends from the row the leader opened and
        follows the leader's `begin`/`end`. `limits` gives the prices (and the limits `check` reports)."""
        return cls(limits.max_lm_calls, limits.max_tokens, limits.max_cost_usd, limits.max_wall_s,
                   dict(limits.prices), row=BudgetRow(store.engine, store.url))  # fmt: skip

    def attach(self, lms: Mapping[str, LM] | Iterable[LM]) -> None:
        """Make every paid call of these LMs reserve itself in the run's budget before it is sent, and
        count its tokens and cost after (each LM once, however many roles share it)."""
        seen: set[int] = set()
        for lm in lms.values() if isinstance(lms, Mapping) else lms:
            if id(lm) in seen:
                continue
            seen.add(id(lm))
            lm.gate = self.reserve
            lm.listeners.append(lambda c, model=lm.model: self._count(model, c))

    def reserve(self, now: float | None = None) -> None:
        """Reserve one paid call, or raise `BudgetExhausted` naming the limit the run has reached."""
        state = self._row.reserve(time.time() if now is None else now)
        if state is None:
            return
        stop = limit_reached(self._spent(state), state.max_calls, state.max_tokens, state.max_cost_usd,
                             state.max_wall_s, note=_NOTE)  # fmt: skip
        if stop is None:  # refused a moment ago, within limits now: cannot happen with growing counters
            raise RuntimeError("the run's budget row refused a call that is within its limits")
        raise stop

    def _count(self, model: str, c: Completion) -> None:
        if c.cached:
            return
        p_in, p_out = self.prices.get(model, (0.0, 0.0))
        cost = (c.prompt_tokens * p_in + c.completion_tokens * p_out) / 1e6
        self._row.add(c.prompt_tokens, c.completion_tokens, cost)

    def begin(self) -> None:
        super().begin()
        self._row.begin(time.time())

    def end(self) -> None:
        self._row.end()

    def check(self) -> None:
        stop = limit_reached(self.spent(), self.max_lm_calls, self.max_tokens, self.max_cost_usd, self.max_wall_s,
                             note=_NOTE)  # fmt: skip
        if stop is not None:
            raise stop

    def spent(self) -> dict[str, float]:
        """What every process of the run has spent in the search so far."""
        state = self._row.read()
        if state is None:
            return {"lm_calls": 0, "tokens": 0, "cost_usd": 0.0, "wall_s": 0.0}
        return self._spent(state)

    @staticmethod
    def _spent(state: BudgetState, now: float | None = None) -> dict[str, float]:
        return {
            "lm_calls": state.calls,
            "tokens": state.prompt_tokens + state.completion_tokens,
            "cost_usd": state.cost_usd,
            "wall_s": state.wall_s(time.time() if now is None else now),
        }

    @property
    def _row(self) -> BudgetRow:
        assert self.row is not None, "a SharedBudget is made by SharedBudget.open or SharedBudget.join"
        return self.row
