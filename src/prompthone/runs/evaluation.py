"""An evaluation run (`prompthone eval`): a built-in task's starting prompt scored on held-out examples.

The twin of `runner.run_optimization` without an optimizer: the same task catalogue, seeded draw and
evaluator, its own folder of files (`files.write_evaluation`). The CLI parses the flags and prints the
summary; nothing here draws a table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console

from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator
from prompthone.lm import LM
from prompthone.program.params import MODULE_DEFAULTS
from prompthone.runs.files import write_evaluation
from prompthone.tasks import get_task


@dataclass
class EvalOutcome:
    result: EvalResult
    #: the task model, with its usage counters of this evaluation
    lm: LM
    wall_s: float
    run_dir: Path


def run_eval(
    *,
    task_name: str,
    model: str,
    n: int,
    seed: int,
    data_root: str | None,
    out_dir: Path,
    concurrency: int,
    max_tokens: int,
    console: Console,
    timeout_s: float = 120.0,
    start_format: str | None = None,
) -> EvalOutcome:
    """Evaluate `task_name`'s starting program on `n` held-out examples; write the results under `out_dir`.
    `start_format` is the model's (`LM(start_format=...)`; None: the catalog's for an embedded model;
    `MODULE_DEFAULTS`: each module's own)."""
    task = get_task(task_name)
    examples = task.load(data_root)
    held_out = split(examples, train=0, val=0, test=min(n, len(examples)), seed=seed).test
    program = task.make_program(data_root)
    module_defaults = start_format == MODULE_DEFAULTS
    lm = LM(model, timeout_s=timeout_s, role="task", start_format=None if module_defaults else start_format)
    program.adopt_start_formats(None if module_defaults else lm.start_format)
    console.print(
        f"[bold]{task.name}[/]: {task.description}\n"
        f"model [cyan]{lm.model}[/], {len(held_out)} examples (seed {seed}), metric {task.metric().name}, "
        "prompt format " + ", ".join(f"{name} {m.format}" for name, m in program.named_modules().items())
    )
    evaluator = Evaluator(program, task.metric(), lm, concurrency=concurrency, progress=True, max_tokens=max_tokens)
    t0 = time.perf_counter()
    result = evaluator.evaluate_sync(None, held_out, description="evaluating")
    wall = time.perf_counter() - t0
    path = write_evaluation(out_dir, task.name, lm, program, result, wall, held_out)
    return EvalOutcome(result, lm, wall, path)
