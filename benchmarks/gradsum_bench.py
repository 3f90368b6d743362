"""GRAD-SUM acceptance runs: start vs final test score, on an exact metric or an LLM judge, with the ablation.

    .venv/bin/python benchmarks/gradsum_bench.py --task trec --optimizer gradsum \\
        --proposer-model local/qwen2.5-coder-1.5b --set beam_width=2 ...
    .venv/bin/python benchmarks/gradsum_bench.py --task hotpotqa --judge hotpotqa --optimizer gradsum-nosum ...

The protocol is `prompthone optimize`'s (`prompthone.optimize.runner`): seeded train/val/test split of
the built-in task, the start prompt scored on test, the optimizer given train + val only, the best
prompt scored on the same test split. This script exists because the CLI cannot yet score a task with an
LLM judge: `--judge NAME` replaces the task's metric by a `JudgeMetric` (criteria below) run on
`--judge-model`. For judged rows the test outputs are also scored by the task's exact metric (the
response cache replays them, nothing is paid), so a judge-only gain would show.

Cost is reported for the optimization alone (start and final test scoring excluded), by role, from the
LMs' own usage counters. One JSON line per run is appended to `--results`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator, ScoreCache
from prompthone.lm import LM, Usage
from prompthone.metrics import JudgeMetric
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.optimize.registry import make_optimizer
from prompthone.optimize.runner import RunOutcome, RunSpec, write_outcome
from prompthone.tasks import get_task

#: LLM-judge variants of built-in tasks: criteria in words, graded against the example's reference answer
JUDGES: dict[str, dict[str, Any]] = {
    "hotpotqa": dict(
        task_description=(
            "Answer a multi-hop factual question in a few words, using passages that were retrieved with a "
            "search query the system wrote first."
        ),
        criteria=(
            "Score 1 if the answer gives the same entity, name, number, date or yes/no as the reference "
            "answer (extra words, a fuller or shorter form of the same name, or different spelling are "
            "fine). Score 0 if it gives a different answer, lists several candidates, or says the "
            "information is missing."
        ),
        reference_field="answer",
        output_fields=("answer",),
        input_fields=("question",),
    ),
    "sst2": dict(
        task_description="Say whether the sentiment of a sentence from a movie review is positive or negative.",
        criteria=(
            "Score 1 if the output states the same sentiment as the reference answer (positive or negative), in "
            "any wording. Score 0 if it states the other sentiment, both, neither, or something else."
        ),
        reference_field="answer",
        output_fields=("answer",),
        input_fields=("sentence",),
    ),
    "trec": dict(
        task_description=(
            "Classify a question by the kind of answer it asks for, with exactly one of these labels: "
            "abbreviation, entity, description, human, location, number."
        ),
        criteria=(
            "Score 1 if the output is the label given as the reference answer (case and punctuation do not "
            "matter). Any other output scores 0: another label, several labels, or any text that is not the "
            "reference label."
        ),
        reference_field="answer",
        output_fields=("answer",),
        input_fields=("question",),
    ),
}


def _usage_delta(after: dict[str, Usage], before: dict[str, dict]) -> dict[str, dict]:
    out = {}
    for role, u in after.items():
        now, was = u.as_dict(), before.get(role, {})
        out[role] = {k: now[k] - was.get(k, 0) for k in now}
    return out


def _result_row(r: EvalResult) -> dict[str, Any]:
    lo, hi = r.ci95
    return {"mean": r.mean, "ci95": [lo, hi], "n": r.n, "parse_failures": r.n_parse_failures, "errors": r.n_errors}


async def bench(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    task = get_task(args.task)
    examples = task.load(args.data_root)
    parts = split(examples, train=args.n_train, val=args.n_val, test=args.n_test, seed=args.seed)
    program = task.make_program(args.data_root)
    # Generous timeout, few retries: on a shared 2-core machine a slow call is load, not a hang.
    opts: dict[str, Any] = {"timeout_s": args.timeout, "max_retries": 1}
    if args.threads:
        opts["n_threads"] = args.threads
    task_lm = LM(args.model, **opts)
    proposer_lm = LM(args.proposer_model or args.model, **opts)
    judge_lm = LM(args.judge_model, **opts) if args.judge else None
    if args.judge:
        metric = JudgeMetric(
            judge_lm, name=f"judge-{args.judge}", max_tokens=args.judge_max_tokens, **JUDGES[args.judge]
        )
    else:
        metric = task.metric()
    evaluator = Evaluator(program, metric, task_lm, concurrency=args.concurrency, score_cache=ScoreCache(),
                          max_errors=args.max_errors, max_tokens=args.max_tokens)  # fmt: skip
    budget = Budget(max_lm_calls=args.max_calls, max_wall_s=args.max_minutes * 60 if args.max_minutes else None)
    settings: dict[str, Any] = {}
    for item in args.set or []:
        key, _, value = item.partition("=")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    if args.describe:  # GRAD-SUM's input besides the metric: the task in words (judged rows take the judge's)
        settings["task_description"] = JUDGES[args.describe]["task_description"]

    def on_event(kind: str, data: dict) -> None:
        if kind == "trial":
            where = "val" if data["full"] else "minibatch"
            console.print(f"  trial {data['index']:>3} {where:>9}: {data['score']:.3f} (n={data['n']})")
        elif kind in ("budget", "early_stop", "step"):
            console.print(f"  {kind}: {data}")

    console.print(
        f"[bold]{args.optimizer}[/] on [bold]{task.name}[/] ({metric.name}): {len(parts.train)} train / "
        f"{len(parts.val)} val / {len(parts.test)} test; task {task_lm.model}, proposer {proposer_lm.model}"
        + (f", judge {judge_lm.model}" if judge_lm else "")
    )
    t0 = time.perf_counter()
    load_start = os.getloadavg()
    start_test = await evaluator.evaluate(None, parts.test)
    console.print(f"  start: test {start_test.summary()}")
    setup = OptimizationSetup(
        program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator, task_lm=task_lm,
        proposer_lm=proposer_lm, judge_lm=judge_lm, seed=args.seed, budget=budget, events=on_event,
    )  # fmt: skip
    before = {role: u.as_dict() for role, u in budget.usage_by_role().items()}
    t_opt = time.perf_counter()
    result = await make_optimizer(args.optimizer, **settings).optimize(setup)
    opt_wall = time.perf_counter() - t_opt
    usage = _usage_delta(budget.usage_by_role(), before)
    usage.pop("teacher", None)  # the teacher is the task LM here: same object, same counters
    final_test = await evaluator.evaluate(result.best, parts.test)
    wall = time.perf_counter() - t0
    console.print(f"  final: test {final_test.summary()}  (stopped by: {result.stopped_by})")
    row: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "task": task.name,
        "judge": args.judge,
        "metric": metric.name,
        "optimizer": args.optimizer,
        "settings": result.info.get("settings", settings),
        "models": {"task": task_lm.model, "proposer": proposer_lm.model, "judge": judge_lm.model if judge_lm else None},
        "splits": {"train": len(parts.train), "val": len(parts.val), "test": len(parts.test), "seed": args.seed},
        "start_test": _result_row(start_test),
        "final_test": _result_row(final_test),
        "start_val": result.start_score,
        "best_val": result.best_score,
        "stopped_by": result.stopped_by,
        "trials": {
            "validation": sum(t.full for t in result.trials),
            "minibatch": sum(not t.full for t in result.trials),
        },
        "usage_optimization": usage,
        "wall_s_optimization": opt_wall,
        "wall_s_total": wall,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": _cpu_model(),
            "python": platform.python_version(),
            "threads": args.threads,
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "best_instructions": {name: p.instruction for name, p in result.best.items()},
    }
    if args.judge:  # the same test outputs under the task's exact metric: free, from the response cache
        exact = Evaluator(program, task.metric(), task_lm, concurrency=args.concurrency, max_tokens=args.max_tokens)
        row["start_test_exact"] = _result_row(await exact.evaluate(None, parts.test))
        row["final_test_exact"] = _result_row(await exact.evaluate(result.best, parts.test))
        console.print(
            f"  exact metric on the same test outputs: start {row['start_test_exact']['mean']:.3f}, "
            f"final {row['final_test_exact']['mean']:.3f}"
        )
    if args.out:
        spec = RunSpec(
            task=task.name, optimizer=args.optimizer, model=args.model, proposer_model=args.proposer_model,
            settings=settings, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed,
        )  # fmt: skip
        outcome = RunOutcome(spec, result, start_test, final_test, usage, wall, None)
        run_dir = write_outcome(outcome, program, Path(args.out))
        (run_dir / "history.json").write_text(json.dumps(result.info, indent=2, default=str))
        row["files"] = str(run_dir)
    return row


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--optimizer", default="gradsum", choices=["gradsum", "gradsum-nosum"])
    p.add_argument("--judge", choices=sorted(JUDGES), help="score with this LLM-judge variant of the task")
    p.add_argument("--describe", choices=sorted(JUDGES), help="give the optimizer this preset's task description")
    p.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    p.add_argument("--proposer-model", default="local/qwen2.5-coder-1.5b")
    p.add_argument("--judge-model", default="local/qwen2.5-coder-1.5b")
    p.add_argument("--set", action="append", help="optimizer setting KEY=VALUE (JSON value)")
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-val", type=int, default=30)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root")
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--threads", type=int, help="llama.cpp threads per embedded model (default: all cores)")
    p.add_argument("--timeout", type=float, default=600.0, help="seconds per LM call before it is cut")
    p.add_argument("--judge-max-tokens", type=int, default=100)
    p.add_argument("--max-tokens", type=int, default=256)
    p.add_argument("--max-errors", type=int, default=3, help="judge failures tolerated per evaluation")
    p.add_argument("--max-calls", type=int)
    p.add_argument("--max-minutes", type=float)
    p.add_argument("--out", default="prompthone-runs")
    p.add_argument("--results", default="prompthone-runs/gradsum_bench.jsonl")
    args = p.parse_args()
    console = Console()
    row = asyncio.run(bench(args, console))
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
    console.print_json(json.dumps({k: row[k] for k in ("start_test", "final_test", "usage_optimization")}))


if __name__ == "__main__":
    main()
