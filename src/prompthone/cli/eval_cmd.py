"""`prompthone eval`: score a built-in task's starting prompt, and say how it went."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from pathlib import Path

from rich.console import Console
from rich.table import Table

from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator
from prompthone.lm import LM
from prompthone.program import Candidate, render_prompts
from prompthone.tasks import get_task


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
) -> tuple[EvalResult, Path]:
    """Evaluate `task_name`'s starting program on `n` held-out examples; write the results to `out_dir`."""
    task = get_task(task_name)
    examples = task.load(data_root)
    held_out = split(examples, train=0, val=0, test=min(n, len(examples)), seed=seed).test
    program = task.make_program(data_root)
    lm = LM(model, timeout_s=timeout_s, role="task")
    console.print(
        f"[bold]{task.name}[/]: {task.description}\n"
        f"model [cyan]{lm.model}[/], {len(held_out)} examples (seed {seed}), metric {task.metric().name}"
    )
    evaluator = Evaluator(program, task.metric(), lm, concurrency=concurrency, progress=True, max_tokens=max_tokens)
    t0 = time.perf_counter()
    result = evaluator.evaluate_sync(None, held_out, description="evaluating")
    wall = time.perf_counter() - t0
    path = _write(out_dir, task.name, lm, program, result, wall, held_out)
    _print_summary(console, result, lm, wall, path)
    return result, path


def _write(out_dir: Path, task: str, lm: LM, program, result: EvalResult, wall: float, examples) -> Path:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"eval-{task.replace('/', '-')}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    by_id = {e.id: e for e in examples}
    with open(run_dir / "results.jsonl", "w") as f:
        for r in result.records:
            row = {**r.to_dict(), "labels": dict(by_id[r.example_id].to_dict()["labels"])}
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    prompts = render_prompts(program, Candidate.default(program))
    lo, hi = result.ci95
    summary = {
        "task": task,
        "model": lm.model,
        "score": result.mean,
        "ci95": [lo, hi],
        "n": result.n,
        "parse_failures": result.n_parse_failures,
        "errors": result.n_errors,
        "usage": lm.usage.as_dict(),
        "wall_s": wall,
        "candidate": json.loads(Candidate.default(program).to_json()),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (run_dir / "prompts.txt").write_text(prompts.as_text())
    return run_dir


def _print_summary(console: Console, result: EvalResult, lm: LM, wall: float, path: Path) -> None:
    lo, hi = result.ci95
    u = lm.usage
    table = Table(title="Evaluation", show_header=False)
    table.add_row("score", f"[bold]{result.mean:.1%}[/]  (95% CI {lo:.1%} - {hi:.1%})")
    outcomes = f"{result.n_scored} scored, {result.n_parse_failures} parse failures, {result.n_errors} errors"
    table.add_row("examples", f"{result.n}: {outcomes}")
    table.add_row("LM calls", f"{u.calls} ({u.cache_hits} from cache)")
    table.add_row("tokens paid", f"{u.prompt_tokens} prompt + {u.completion_tokens} completion")
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("files", str(path))
    console.print(table)
