"""Budgets across every model of a run: LM calls, tokens, cost and wall time.

Optimizers check the budget between units of work (a trial, a step, an edit) through
`Budget.check()`, which raises `BudgetExhausted` naming the limit; the optimizer catches it, stops
cleanly and returns the best candidate so far with `stopped_by` set to that limit. The budget bounds
the search alone: `Optimizer.optimize` calls `begin()` before it and `end()` after it.

This budget counts one process's own `LM` objects, between units of work, so a unit may overshoot a
limit. A run whose store is on a database server uses `prompthone.runs.shared_budget.SharedBudget`
instead: one row in the run's database, every paid call of every process reserved there before it is
sent (`LM.gate`). `BudgetExhausted` itself lives on the LM floor (`prompthone.lm.errors`) so that the
layers between the LM and the optimizer let it through as a stop; it is exported here as before.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from prompthone.lm.client import LM
from prompthone.lm.errors import BudgetExhausted
from prompthone.lm.usage import Usage

__all__ = ["Budget", "BudgetExhausted", "limit_reached"]


@dataclass
class Budget:
    """Limits for a whole run; None means no limit. Cached answers cost nothing and count for nothing.

    `prices` maps a model string (as in `LM.model`) to (USD per 1M prompt tokens, per 1M completion
    tokens); models without a price cost 0.
    """

    max_lm_calls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_wall_s: float | None = None
    prices: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    _lms: dict[str, LM] = field(default_factory=dict, repr=False)
    _t0: float = field(default_factory=time.monotonic, repr=False)
    _base: dict[int, tuple[int, int, int]] = field(default_factory=dict, repr=False)

    def limits(self) -> Budget:
        """The same limits and prices, counting nothing yet: one run's budget, so that a spec can be run
        twice without the second run counting the first run's models."""
        return Budget(self.max_lm_calls, self.max_tokens, self.max_cost_usd, self.max_wall_s, dict(self.prices))

    def begin(self) -> None:
        """Start counting from now: the budget bounds the search, not scoring the start on the test split."""
        self._t0 = time.monotonic()
        self._base = {
            id(lm): (lm.usage.paid_calls, lm.usage.prompt_tokens, lm.usage.completion_tokens) for lm in self._distinct()
        }

    def end(self) -> None:
        """The search is over: what comes after (scoring the result on the test split) is not bounded.
        Nothing to do here (this budget is only checked by the search); a shared one stops gating calls."""

    def track(self, role: str, lm: LM) -> LM:
        """Count `lm`'s paid usage against this budget under `role` (task, proposer, judge, teacher)."""
        self._lms[role] = lm
        return lm

    def usage_by_role(self) -> dict[str, Usage]:
        return {role: lm.usage for role, lm in self._lms.items()}

    def _distinct(self) -> list[LM]:
        seen: dict[int, LM] = {}
        for lm in self._lms.values():
            seen.setdefault(id(lm), lm)
        return list(seen.values())

    def spent(self) -> dict[str, float]:
        """Paid usage since `begin()` (or since the budget was made), summed over distinct LMs."""
        calls = tokens = 0
        cost = 0.0
        for lm in self._distinct():
            c0, p0, k0 = self._base.get(id(lm), (0, 0, 0))
            prompt, completion = lm.usage.prompt_tokens - p0, lm.usage.completion_tokens - k0
            calls += lm.usage.paid_calls - c0
            tokens += prompt + completion
            p_in, p_out = self.prices.get(lm.model, (0.0, 0.0))
            cost += (prompt * p_in + completion * p_out) / 1e6
        return {"lm_calls": calls, "tokens": tokens, "cost_usd": cost, "wall_s": time.monotonic() - self._t0}

    def check(self) -> None:
        """Raise `BudgetExhausted` if any limit is reached."""
        stop = limit_reached(self.spent(), self.max_lm_calls, self.max_tokens, self.max_cost_usd, self.max_wall_s)
        if stop is not None:
            raise stop


def limit_reached(
    spent: Mapping[str, float],
    max_lm_calls: float | None,
    max_tokens: float | None,
    max_cost_usd: float | None,
    max_wall_s: float | None,
    *,
    note: str = "",
) -> BudgetExhausted | None:
    """The first limit `spent` (as `Budget.spent` gives it) has reached, as the error that says so."""
    limits = [
        ("lm_calls", max_lm_calls, spent["lm_calls"], "paid LM calls"),
        ("tokens", max_tokens, spent["tokens"], "paid tokens"),
        ("cost", max_cost_usd, spent["cost_usd"], "USD"),
        ("wall_time", max_wall_s, spent["wall_s"], "seconds"),
    ]
    for name, limit, used, unit in limits:
        if limit is not None and used >= limit:
            return BudgetExhausted(name, f"budget reached: {used:,.4g} of {limit:,.4g} {unit}{note}")
    return None
