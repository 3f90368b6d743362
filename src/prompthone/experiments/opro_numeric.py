"""OPRO on the paper's small numeric problems: linear regression and the travelling salesman.

The LM proposes solutions from a meta-prompt of scored earlier ones, as for instructions (the same
`History`, order words and sampling rules: `optimize.opro.meta`, `proposers.calls.gather_samples`);
only the objective is plain Python. Each run is compared with the true optimum (least squares; an exact
Held-Karp solver for small TSP) and with a plain baseline that gets no LM (random search with as many
evaluations; nearest neighbour), so that "the LLM optimized" has numbers next to it.

Why an experiment of its own rather than a second user of OPRO's prompt step: the step that optimizes
instructions scores through the run's evaluator, draws exemplars, checks the task contract and records
each proposal in the run store; a numeric problem has none of these (no program, no run, no store), so
sharing the step would mean abstracting every one of them for this one caller. What is the same for
both (the scored history, its order and bucketing, the sampling of several replies) is shared as it
is; the loop below is the few lines that remain, and the prompt optimizer has the only OPRO step.
"""

from __future__ import annotations

import itertools
import math
import random
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prompthone.lm.client import LM
from prompthone.optimize.opro.meta import ORDERS, History, order_word
from prompthone.optimize.proposers.calls import gather_samples
from prompthone.templates import render_template

EventSink = Callable[[str, dict[str, Any]], None]
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"


def _num(x: float) -> str:
    """A number as the meta-prompt shows it: integers plainly, others with up to 4 decimals."""
    if float(x).is_integer():
        return str(int(x))
    return f"{x:.4f}".rstrip("0").rstrip(".")


class NumericProblem(ABC):
    """A problem OPRO can minimize: how solutions are drawn, scored, parsed, shown and compared."""

    name: str = "problem"
    template: str = ""

    @abstractmethod
    def initial(self, rng: random.Random, k: int) -> list[Any]:
        """`k` random starting solutions (the paper starts from 5)."""

    @abstractmethod
    def evaluate(self, solution: Any) -> float:
        """The objective to minimize."""

    @abstractmethod
    def parse(self, reply: str) -> Any | None:
        """The solution in an LM reply, or None if there is no valid one."""

    @abstractmethod
    def show(self, solution: Any, value: float) -> str:
        """One history entry of the meta-prompt."""

    @abstractmethod
    def template_values(self) -> dict[str, Any]:
        """Template fields besides `order` and `history` (the points, for instance)."""

    @abstractmethod
    def optimum(self) -> tuple[Any, float] | None:
        """The true optimum and its value, or None when it is too costly to compute."""

    @abstractmethod
    def baseline(self, evaluations: int, rng: random.Random) -> tuple[str, Any, float]:
        """(name, solution, value) of the plain baseline, given OPRO's number of evaluations."""

    def key(self, solution: Any) -> Hashable:
        """What makes two solutions the same, for dedup."""
        return solution


# --------------------------------------------------------------------------------- linear regression


class LinearRegression(NumericProblem):
    """Find (w, b) minimizing the squared error on `n_points` points y = w_true * x + b_true + noise.

    x runs over 1..n_points and the noise is standard normal (seeded), as in the paper's setup; the
    objective is the sum of squared errors, shown rounded to an integer.
    """

    name = "linreg"
    template = "opro_linreg"

    def __init__(
        self,
        w_true: float = 15.0,
        b_true: float = 14.0,
        *,
        n_points: int = 50,
        noise: float = 1.0,
        seed: int = 0,
        init_range: tuple[float, float] = (10.0, 20.0),
        box: tuple[float, float] | None = None,
    ) -> None:
        if n_points < 2:
            raise ValueError(f"linear regression needs at least 2 points, got {n_points}")
        rng = random.Random(f"{seed}:linreg:data")
        self.w_true, self.b_true = float(w_true), float(b_true)
        self.xs = [float(i) for i in range(1, n_points + 1)]
        self.ys = [self.w_true * x + self.b_true + rng.gauss(0.0, noise) for x in self.xs]
        self.init_range = init_range
        self.box = box or init_range

    def evaluate(self, solution: tuple[float, float]) -> float:
        w, b = solution
        return sum((y - (w * x + b)) ** 2 for x, y in zip(self.xs, self.ys, strict=True))

    def initial(self, rng: random.Random, k: int) -> list[tuple[float, float]]:
        lo, hi = self.init_range
        return [(float(rng.randint(int(lo), int(hi))), float(rng.randint(int(lo), int(hi)))) for _ in range(k)]

    def parse(self, reply: str) -> tuple[float, float] | None:
        """The last `[w, b]` pair in the reply; else the last `w = ..., b = ...`."""
        pairs = re.findall(rf"\[\s*({_NUMBER})\s*,\s*({_NUMBER})\s*\]", reply)
        if not pairs:
            pairs = re.findall(rf"\bw\s*[=:]\s*({_NUMBER})\s*,?\s*(?:and\s*)?b\s*[=:]\s*({_NUMBER})", reply, re.I)
        if not pairs:
            return None
        w, b = (float(v) for v in pairs[-1])
        if not (math.isfinite(w) and math.isfinite(b)):
            return None
        return (w, b)

    def key(self, solution: tuple[float, float]) -> Hashable:
        return (round(solution[0], 6), round(solution[1], 6))

    def show(self, solution: tuple[float, float], value: float) -> str:
        return f"input:\nw={_num(solution[0])}, b={_num(solution[1])}\nvalue:\n{round(value)}"

    def template_values(self) -> dict[str, Any]:
        return {}

    def optimum(self) -> tuple[tuple[float, float], float]:
        """Ordinary least squares, in closed form."""
        n = len(self.xs)
        mx, my = sum(self.xs) / n, sum(self.ys) / n
        sxx = sum((x - mx) ** 2 for x in self.xs)
        sxy = sum((x - mx) * (y - my) for x, y in zip(self.xs, self.ys, strict=True))
        w = sxy / sxx
        b = my - w * mx
        return (w, b), self.evaluate((w, b))

    def baseline(self, evaluations: int, rng: random.Random) -> tuple[str, tuple[float, float], float]:
        """Random search: `evaluations` pairs drawn uniformly from the box, the best kept."""
        lo, hi = self.box
        best: tuple[tuple[float, float], float] | None = None
        for _ in range(max(1, evaluations)):
            s = (rng.uniform(lo, hi), rng.uniform(lo, hi))
            v = self.evaluate(s)
            if best is None or v < best[1]:
                best = (s, v)
        assert best is not None
        return (f"random search ({max(1, evaluations)} evaluations in [{_num(lo)}, {_num(hi)}]^2)", *best)


# ------------------------------------------------------------------------------ travelling salesman


Tour = tuple[int, ...]


class TSP(NumericProblem):
    """A closed tour through `n` cities with integer coordinates in [-100, 100] (seeded).

    A tour is a permutation of 0..n-1 and returns to its start; lengths are Euclidean, shown rounded.
    """

    name = "tsp"
    template = "opro_tsp"

    def __init__(
        self, n: int = 8, *, seed: int = 0, points: Sequence[tuple[float, float]] | None = None, max_exact: int = 15
    ) -> None:
        if points is None:
            if n < 3:
                raise ValueError(f"a TSP needs at least 3 cities, got {n}")
            rng = random.Random(f"{seed}:tsp:points")
            pts: list[tuple[float, float]] = []
            while len(pts) < n:
                p = (float(rng.randint(-100, 100)), float(rng.randint(-100, 100)))
                if p not in pts:
                    pts.append(p)
            points = pts
        if len(points) < 3:
            raise ValueError(f"a TSP needs at least 3 cities, got {len(points)}")
        self.points = [(float(x), float(y)) for x, y in points]
        self.n = len(self.points)
        self.max_exact = max_exact
        self.dist = [[math.dist(a, b) for b in self.points] for a in self.points]

    def evaluate(self, tour: Tour) -> float:
        return tour_length(tour, self.dist)

    def initial(self, rng: random.Random, k: int) -> list[Tour]:
        out = []
        for _ in range(k):
            t = list(range(self.n))
            rng.shuffle(t)
            out.append(tuple(t))
        return out

    def parse(self, reply: str) -> Tour | None:
        """The first `<trace>...</trace>` that is a valid tour (else the last line of numbers); a
        repeated start at the end (a closed loop written out) is accepted."""
        bodies = re.findall(r"<trace>(.*?)</trace>", reply, re.S | re.I)
        if not bodies:
            lines = [ln for ln in reply.splitlines() if len(re.findall(r"\d+", ln)) >= self.n]
            bodies = lines[-1:]
        for body in bodies:
            nums = [int(v) for v in re.findall(r"\d+", body)]
            if len(nums) == self.n + 1 and nums[0] == nums[-1]:
                nums = nums[:-1]
            if sorted(nums) == list(range(self.n)):
                return tuple(nums)
        return None

    def key(self, tour: Tour) -> Hashable:
        """Rotations and reversals are the same closed tour."""
        i = tour.index(0)
        t = tour[i:] + tour[:i]
        rev = (t[0], *reversed(t[1:]))
        return min(t, rev)

    def show(self, tour: Tour, value: float) -> str:
        return f"<trace> {','.join(map(str, tour))} </trace>\nlength:\n{round(value)}"

    def template_values(self) -> dict[str, Any]:
        pts = ", ".join(f"({i}): ({_num(x)}, {_num(y)})" for i, (x, y) in enumerate(self.points))
        return {"n": self.n, "points": pts, "last": self.n - 1}

    def optimum(self) -> tuple[Tour, float] | None:
        if self.n > self.max_exact:
            return None
        return held_karp(self.dist)

    def baseline(self, evaluations: int, rng: random.Random) -> tuple[str, Tour, float]:
        tour = nearest_neighbour(self.dist, start=0)
        return ("nearest neighbour from city 0", tour, self.evaluate(tour))


def tour_length(tour: Sequence[int], dist: Sequence[Sequence[float]]) -> float:
    """Length of the closed tour (back to its first city)."""
    return sum(dist[a][b] for a, b in zip(tour, [*tour[1:], tour[0]], strict=True))


def held_karp(dist: Sequence[Sequence[float]]) -> tuple[Tour, float]:
    """The exact shortest closed tour by dynamic programming over subsets: O(n^2 2^n) time, O(n 2^n)
    memory, fine up to about 15 cities in Python. The tour starts at city 0."""
    n = len(dist)
    if n < 2:
        return tuple(range(n)), 0.0
    full = 1 << (n - 1)  # subsets of cities 1..n-1; bit i-1 stands for city i
    inf = math.inf
    cost = [[inf] * n for _ in range(full)]
    parent = [[-1] * n for _ in range(full)]
    for j in range(1, n):
        cost[1 << (j - 1)][j] = dist[0][j]
    for mask in range(1, full):
        row = cost[mask]
        for j in range(1, n):
            cj = row[j]
            if cj == inf or not mask & (1 << (j - 1)):
                continue
            for k in range(1, n):
                bit = 1 << (k - 1)
                if mask & bit:
                    continue
                c = cj + dist[j][k]
                nxt = mask | bit
                if c < cost[nxt][k]:
                    cost[nxt][k] = c
                    parent[nxt][k] = j
    last_mask = full - 1
    best_j = min(range(1, n), key=lambda j: cost[last_mask][j] + dist[j][0])
    best = cost[last_mask][best_j] + dist[best_j][0]
    tour, mask, j = [], last_mask, best_j
    while j != -1:
        tour.append(j)
        prev = parent[mask][j]
        mask &= ~(1 << (j - 1))
        j = prev
    return (0, *reversed(tour)), best


def brute_force_tsp(dist: Sequence[Sequence[float]]) -> tuple[Tour, float]:
    """Every tour from city 0 (for checking `held_karp` on tiny instances)."""
    n = len(dist)
    best: tuple[Tour, float] | None = None
    for rest in itertools.permutations(range(1, n)):
        t = (0, *rest)
        v = tour_length(t, dist)
        if best is None or v < best[1] - 1e-12:
            best = (t, v)
    assert best is not None
    return best


def nearest_neighbour(dist: Sequence[Sequence[float]], start: int = 0) -> Tour:
    """Greedy tour: always go to the closest unvisited city (ties: the lowest index)."""
    n = len(dist)
    tour, left = [start], set(range(n)) - {start}
    while left:
        here = tour[-1]
        nxt = min(left, key=lambda c: (dist[here][c], c))
        tour.append(nxt)
        left.remove(nxt)
    return tuple(tour)


# ------------------------------------------------------------------------------------------ the loop


@dataclass
class NumericRun:
    """What a run found, step by step, next to the optimum and the baseline."""

    problem: NumericProblem
    best_solution: Any
    best_value: float
    best_per_step: list[float]  # index 0: after the starting solutions; then after each step
    evaluations: int
    steps_run: int
    optimum: tuple[Any, float] | None
    baseline: tuple[str, Any, float]
    counts: dict[str, int] = field(default_factory=dict)
    usage: dict[str, Any] = field(default_factory=dict)
    wall_s: float = 0.0
    stopped_by: str = "steps"
    meta_prompts: list[str] = field(default_factory=list, repr=False)

    def summary(self) -> dict[str, Any]:
        """Numbers for a report: best value, gaps to the optimum and to the baseline."""
        name, base_sol, base_val = self.baseline
        out: dict[str, Any] = {
            "problem": self.problem.name,
            "best_value": self.best_value,
            "best_solution": list(self.best_solution),
            "evaluations": self.evaluations,
            "steps_run": self.steps_run,
            "stopped_by": self.stopped_by,
            "baseline": {"name": name, "value": base_val, "solution": list(base_sol)},
            "gap_to_baseline": self.best_value - base_val,
            "counts": dict(self.counts),
            "usage": self.usage,
            "wall_s": self.wall_s,
        }
        if self.optimum is not None:
            sol, val = self.optimum
            out["optimum"] = {"value": val, "solution": list(sol)}
            out["gap_to_optimum"] = self.best_value - val
            out["relative_gap_to_optimum"] = (self.best_value - val) / val if val else float("nan")
            out["baseline"]["gap_to_optimum"] = base_val - val
        return out


async def run_numeric(
    problem: NumericProblem,
    lm: LM,
    *,
    steps: int = 50,
    candidates_per_step: int = 8,
    temperature: float = 1.0,
    max_history: int = 20,
    history_order: str = "ascending",
    n_initial: int = 5,
    seed: int = 0,
    max_tokens: int = 400,
    stop_at_optimum: bool = True,
    events: EventSink | None = None,
) -> NumericRun:
    """Minimize `problem` with `lm` as the optimizer; the paper's defaults (8 samples a step at
    temperature 1.0, the best 20 shown, worst first, 5 random starting solutions).

    Stops after `steps` steps, or as soon as the exact optimum is matched (`stop_at_optimum`).
    """
    if history_order not in ORDERS:
        raise ValueError(f"history_order must be one of {list(ORDERS)}, got {history_order!r}")
    for name, value, low in (("steps", steps, 1), ("candidates_per_step", candidates_per_step, 1),
                             ("max_history", max_history, 1), ("n_initial", n_initial, 1)):  # fmt: skip
        if value < low:
            raise ValueError(f"{name} must be >= {low}, got {value}")
    t0 = time.perf_counter()
    emit = events or (lambda kind, data: None)
    history = History(minimize=True)
    init_rng = random.Random(f"{seed}:{problem.name}:initial")
    order_rng = random.Random(f"{seed}:{problem.name}:order")
    evaluations = 0
    counts = {"proposed": 0, "new": 0, "duplicates": 0, "unparsed": 0, "failed": 0}

    def add(solution: Any, step: int) -> bool:
        nonlocal evaluations
        key = problem.key(solution)
        if key in history:
            return False
        value = problem.evaluate(solution)
        evaluations += 1
        history.add(key, solution, problem.show(solution, value), value, step)
        return True

    for s in problem.initial(init_rng, n_initial):
        add(s, 0)
    optimum = problem.optimum()
    best_per_step = [history.best().value]
    prompts: list[str] = []
    stopped_by, step = "steps", 0
    for step in range(1, steps + 1):
        if stop_at_optimum and optimum is not None and history.best().value <= optimum[1] * (1 + 1e-9) + 1e-9:
            stopped_by, step = "optimum", step - 1
            break
        shown = history.shown(max_history, history_order, order_rng)
        prompt = render_template(
            problem.template,
            order=order_word(history_order, minimize=True),
            history="\n\n".join(s.text for s in shown),
            **problem.template_values(),
        )
        prompts.append(prompt)
        messages = [{"role": "user", "content": prompt}]
        first = (step - 1) * candidates_per_step
        replies = await gather_samples(
            lm.complete(messages, temperature=temperature, max_tokens=max_tokens, sample_index=first + k)
            for k in range(candidates_per_step)
        )
        for reply in replies:
            counts["proposed"] += 1
            if isinstance(reply, Exception):
                counts["failed"] += 1
                continue
            solution = problem.parse(reply.text)
            if solution is None:
                counts["unparsed"] += 1
            elif add(solution, step):
                counts["new"] += 1
            else:
                counts["duplicates"] += 1
        best_per_step.append(history.best().value)
        emit("step", {"step": step, "best": history.best().value, **counts})
    base_rng = random.Random(f"{seed}:{problem.name}:baseline")
    best = history.best()
    return NumericRun(
        problem=problem,
        best_solution=best.solution,
        best_value=best.value,
        best_per_step=best_per_step,
        evaluations=evaluations,
        steps_run=step,
        optimum=optimum,
        baseline=problem.baseline(evaluations, base_rng),
        counts=counts,
        usage=lm.usage.as_dict(),
        wall_s=time.perf_counter() - t0,
        stopped_by=stopped_by,
        meta_prompts=prompts,
    )


def plot_run(run: NumericRun, path: str | Path, *, title: str | None = None) -> Path:
    """Save a PNG of the best value after each step, with the optimum and the baseline as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6.4, 4.0), dpi=100)
    ax.plot(range(len(run.best_per_step)), run.best_per_step, marker="o", label="OPRO best so far")
    name, _, base_val = run.baseline
    ax.axhline(base_val, color="tab:orange", linestyle="--", label=f"baseline: {name}")
    if run.optimum is not None:
        ax.axhline(run.optimum[1], color="tab:green", linestyle=":", label="optimum")
    ax.set_xlabel("step (0 = starting solutions)")
    ax.set_ylabel("objective (lower is better)")
    shown = [*run.best_per_step, base_val, *([run.optimum[1]] if run.optimum is not None else [])]
    if min(shown) > 0 and max(shown) / min(shown) > 50:
        ax.set_yscale("log")
    ax.set_title(title or f"OPRO on {run.problem.name}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
