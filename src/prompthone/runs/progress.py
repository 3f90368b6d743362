"""Live progress of an optimization: trial or step, best validation score, spend against budget, time."""

from __future__ import annotations

import time

from rich.console import Console
from rich.status import Status

from prompthone.optimize.budget import Budget


class LiveProgress:
    """A one-line status that is redrawn on every event, plus a printed line per full evaluation."""

    def __init__(self, console: Console, budget: Budget) -> None:
        self.console = console
        self.budget = budget
        self.best: float | None = None
        self.trials = 0
        #: what the optimizer is doing before its next trial (MIPRO: "bootstrap", "propose instructions", ...)
        self.stage: str | None = None
        self._status: Status | None = None
        self._t0 = time.monotonic()

    def __enter__(self) -> LiveProgress:
        if not self.console.quiet:
            self._status = self.console.status(self.line())
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)

    def line(self) -> str:
        s = self.budget.spent()
        parts = [
            *([self.stage] if self.stage else []),
            f"trial {self.trials}",
            f"best val {self.best:.3f}" if self.best is not None else "best val -",
        ]
        calls = f"{s['lm_calls']:,} calls"
        if self.budget.max_lm_calls:
            calls += f" / {self.budget.max_lm_calls:,}"
        parts.append(calls)
        parts.append(f"{s['tokens']:,} tokens" + (f" / {self.budget.max_tokens:,}" if self.budget.max_tokens else ""))
        if self.budget.max_cost_usd:
            parts.append(f"${s['cost_usd']:.2f} / ${self.budget.max_cost_usd:.2f}")
        elapsed = time.monotonic() - self._t0
        left = f", {max(0.0, self.budget.max_wall_s - s['wall_s']) / 60:.1f} min left" if self.budget.max_wall_s else ""
        parts.append(f"{elapsed / 60:.1f} min{left}")
        return " · ".join(parts)

    def update(self, kind: str, data: dict) -> None:
        if kind == "step" and isinstance(data.get("stage"), str):
            self.stage = data["stage"]
        if kind == "trial":
            self.trials += 1
            self.stage = None
            t = data["trial"]
            if data.get("best") is not None:
                self.best = data["best"]
            if t.full:
                self.console.print(f"  trial {t.index:>3}: validation {t.score:.3f} (best {self.best:.3f})")
        elif kind in ("budget", "early_stop"):
            self.console.print(f"  {kind}: {data.get('message') or data}")
        if self._status is not None:
            self._status.update(self.line())
