"""One optimization of a built-in task, end to end: split, score the start, optimize, score on test.

Used by `prompthone optimize` and by the benchmarks, so that every method is run, measured and
reported the same way. The test split is scored twice (start and result) and never shown to the
optimizer.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.optimize.base import OptimizationResult, OptimizationSetup
from prompthone.optimize.budget import Budget
from prompthone.optimize.registry import make_optimizer
from prompthone.program import render_prompts
from prompthone.tasks import get_task


@dataclass
class RunSpec:
    task: str
    optimizer: str
    model: str = "local/qwen2.5-coder-0.5b"
    proposer_model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    n_train: int = 50
    n_val: int = 50
    n_test: int = 100
    seed: int = 0
    data_root: str | None = None
    concurrency: int = 8
    max_tokens: int = 384
    budget: Budget = field(default_factory=Budget)


@dataclass
class RunOutcome:
    spec: RunSpec
    result: OptimizationResult
    start_test: EvalResult
    final_test: EvalResult
    usage: dict[str, dict]
    wall_s: float
    out_dir: Path | None


async def run_optimization(
    spec: RunSpec, *, out_dir: Path | None = None, console: Console | None = None, dry_run: bool = False
) -> RunOutcome | dict:
    """Run `spec`; with `dry_run`, return the optimizer's cost estimate and spend nothing."""
    console = console or Console(quiet=True)
    task = get_task(spec.task)
    examples = task.load(spec.data_root)
    parts = split(examples, train=spec.n_train, val=spec.n_val, test=spec.n_test, seed=spec.seed)
    program = task.make_program(spec.data_root)
    task_lm = LM(spec.model)
    proposer_lm = LM(spec.proposer_model or spec.model)
    evaluator = Evaluator(
        program, task.metric(), task_lm, concurrency=spec.concurrency, score_cache=ScoreCache(),
        max_tokens=spec.max_tokens,
    )  # fmt: skip

    def on_event(kind: str, data: dict) -> None:
        if kind == "trial" and data.get("full"):
            console.print(f"  trial {data['index']:>3}: validation {data['score']:.3f} (best {data['best']:.3f})")
        elif kind in ("budget", "early_stop", "step"):
            console.print(f"  {kind}: {data}")

    setup = OptimizationSetup(
        program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator, task_lm=task_lm,
        proposer_lm=proposer_lm, seed=spec.seed, budget=spec.budget, events=on_event,
    )  # fmt: skip
    optimizer = make_optimizer(spec.optimizer, **spec.settings)
    if dry_run:
        return optimizer.estimate(setup)
    console.print(
        f"[bold]{spec.optimizer}[/] on [bold]{task.name}[/]: {len(parts.train)} train / {len(parts.val)} val / "
        f"{len(parts.test)} test, task model {task_lm.model}, proposer {proposer_lm.model}, seed {spec.seed}"
    )
    t0 = time.perf_counter()
    start_test = await evaluator.evaluate(None, parts.test)
    console.print(f"  start: test {start_test.summary()}")
    result = await optimizer.optimize(setup)
    usage = {role: u.as_dict() for role, u in spec.budget.usage_by_role().items()}
    final_test = await evaluator.evaluate(result.best, parts.test)
    wall = time.perf_counter() - t0
    console.print(f"  final: test {final_test.summary()}  (stopped by: {result.stopped_by})")
    outcome = RunOutcome(spec, result, start_test, final_test, usage, wall, None)
    if out_dir is not None:
        outcome.out_dir = write_outcome(outcome, program, out_dir)
        console.print(f"  files: {outcome.out_dir}")
    return outcome


def write_outcome(outcome: RunOutcome, program, out_dir: Path) -> Path:
    """Leave files a person can open: summary, best candidate, its prompts, every trial."""
    spec = outcome.spec
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"{spec.optimizer}-{spec.task.replace('/', '-')}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    r = outcome.result
    summary = {
        "task": spec.task,
        "optimizer": spec.optimizer,
        "settings": spec.settings,
        "model": spec.model,
        "proposer_model": spec.proposer_model or spec.model,
        "seed": spec.seed,
        "splits": {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test},
        "start_test": {"score": outcome.start_test.mean, "ci95": outcome.start_test.ci95},
        "final_test": {"score": outcome.final_test.mean, "ci95": outcome.final_test.ci95},
        "best_val": r.best_score,
        "start_val": r.start_score,
        "stopped_by": r.stopped_by,
        "usage_by_role": outcome.usage,
        "wall_s": outcome.wall_s,
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run_dir / "best_candidate.json").write_text(r.best.to_json(indent=2))
    (run_dir / "best_prompts.txt").write_text(render_prompts(program, r.best).as_text())
    with open(run_dir / "trials.jsonl", "w") as f:
        for t in r.trials:
            row = {"index": t.index, "score": t.score, "n": t.n, "full": t.full, "candidate": t.candidate.hash}
            f.write(json.dumps({**row, **t.info}, default=str) + "\n")
    return run_dir
