"""MIPRO on a built-in task with the embedded model: start vs final TEST score, cost by role, wall time.

    .venv/bin/python benchmarks/mipro_bench.py --task trec --n-train 30 --n-val 30 --n-test 100 \\
        --max-tokens 16 --set num_trials=10 --out /tmp/mipro-trec.json

What `prompthone optimize` does (seeded split, start scored on test, optimize on train/val, result
scored on test; the test split is never shown to the optimizer), with two differences that make the
numbers reportable: the teacher is its own LM object (same model), so task, teacher and proposer
calls are counted apart; and the response cache is a file of this run's own (`--cache`, default a
fresh file next to `--out`), so "paid" calls are really computed, not replayed from earlier runs.
Re-running the same command against the same cache file replays everything for free.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

from machine import cpu_model
from prompthone.data import split
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.optimize.registry import make_optimizer
from prompthone.program import render_prompts
from prompthone.tasks import get_task


def parse_settings(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


async def main(args: argparse.Namespace) -> dict:
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out.with_suffix(".responses.sqlite")
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:7.1f}s] {msg}", flush=True)

    task = get_task(args.task)
    parts = split(task.load(None), train=args.n_train, val=args.n_val, test=args.n_test, seed=args.seed)
    program = task.make_program(None)
    # llama.cpp threads spin while waiting: on a shared, oversubscribed machine one thread per model
    # was 6x faster than two here (8 s vs 49 s a call at load average 13). Threads do not change answers.
    opts = {"n_threads": args.threads} if args.model.startswith("local/") else {}
    popts = {"n_threads": args.threads} if (args.proposer_model or args.model).startswith("local/") else {}
    task_lm = LM(args.model, cache=cache, **opts)
    teacher_lm = LM(args.model, cache=cache, **opts)
    proposer_lm = LM(args.proposer_model or args.model, cache=cache, **popts)
    evaluator = Evaluator(
        program, task.metric(), task_lm, concurrency=args.concurrency, score_cache=ScoreCache(),
        max_tokens=args.max_tokens,
    )  # fmt: skip

    def on_event(kind: str, data: dict) -> None:
        if kind == "trial":
            extra = {k: data[k] for k in ("phase", "optuna_trial", "batch") if k in data}
            kind_ = "FULL" if data["full"] else "mini"
            log(f"trial {data['index']:>3} {kind_} {data['score']:.3f} (n={data['n']}) {extra}")
        elif kind == "proposal":
            log(f"proposal {data['purpose']} accepted={data['accepted']}: {str(data['text'])[:120]!r}")
        elif kind in ("step", "bootstrap", "trial_failed", "budget", "full_eval_failed"):
            log(f"{kind}: {data}")

    budget = Budget(max_wall_s=args.max_minutes * 60 if args.max_minutes else None)
    setup = OptimizationSetup(
        program=program, trainset=parts.train, valset=parts.val, evaluator=evaluator, task_lm=task_lm,
        proposer_lm=proposer_lm, teacher_lm=teacher_lm, seed=args.seed, budget=budget, events=on_event,
    )  # fmt: skip
    optimizer = make_optimizer(args.optimizer, **parse_settings(args.set))
    estimate = optimizer.estimate(setup)
    log(f"estimate: {estimate}")
    if args.dry_run:
        return {"estimate": estimate}

    start_test = await evaluator.evaluate(None, parts.test)
    log(f"start test: {start_test.summary()}")
    before = task_lm.usage.as_dict()
    t_opt = time.perf_counter()
    result = await optimizer.optimize(setup)
    opt_wall = time.perf_counter() - t_opt
    after = task_lm.usage.as_dict()
    usage = {role: u.as_dict() for role, u in budget.usage_by_role().items()}
    usage["task"] = {k: after[k] - before[k] for k in after}  # the optimizer's own task calls only
    final_test = await evaluator.evaluate(result.best, parts.test)
    log(f"final test: {final_test.summary()}  (stopped by {result.stopped_by})")
    wall = time.perf_counter() - t_start
    end = task_lm.usage.as_dict()
    test_usage = {k: before[k] + end[k] - after[k] for k in end}  # start and final test scoring
    row = {
        "command": " ".join([sys.executable.split("/")[-1], *sys.argv]),
        "task": args.task,
        "optimizer": args.optimizer,
        "settings": parse_settings(args.set),
        "model": task_lm.model,
        "proposer_model": proposer_lm.model,
        "seed": args.seed,
        "splits": {"train": len(parts.train), "val": len(parts.val), "test": len(parts.test)},
        "max_tokens": args.max_tokens,
        "threads": args.threads,
        "start_test": {"score": start_test.mean, "ci95": start_test.ci95, "n": start_test.n,
                       "parse_failures": start_test.n_parse_failures, "errors": start_test.n_errors},
        "final_test": {"score": final_test.mean, "ci95": final_test.ci95, "n": final_test.n,
                       "parse_failures": final_test.n_parse_failures, "errors": final_test.n_errors},
        "start_val": result.start_score,
        "best_val": result.best_score,
        "stopped_by": result.stopped_by,
        "trials": len(result.trials),
        "full_evals": result.info.get("full_evals"),
        "plan": result.info.get("plan"),
        "bootstrap": result.info.get("bootstrap"),
        "pool_sizes": result.info.get("pool_sizes"),
        "failed_trials": result.info.get("failed_trials"),
        "estimate": estimate,
        "usage_by_role_optimization": usage,
        "usage_test_scoring": test_usage,  # task model, start and final test evaluations
        "optimize_wall_s": opt_wall,
        "wall_s": wall,
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
        "load_avg_end": os.getloadavg(),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "best_prompts": render_prompts(program, result.best).as_text(),
        "proposals": [
            {k: p[k] for k in ("purpose", "module", "sample_index", "kept", "note", "cached")}
            for p in result.info.get("proposals", [])
        ],
    }  # fmt: skip
    out.write_text(json.dumps(row, indent=2, default=str))
    log(f"wrote {out}")
    return row


def cli() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--optimizer", default="mipro")
    p.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    p.add_argument("--proposer-model", default=None)
    p.add_argument("--n-train", type=int, default=30)
    p.add_argument("--n-val", type=int, default=30)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads per embedded model")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--set", action="append", default=[], help="optimizer setting KEY=VALUE (JSON value)")
    p.add_argument("--cache", default=None, help="response cache file (default: next to --out)")
    p.add_argument("--out", required=True, help="JSON file for the result row")
    p.add_argument("--dry-run", action="store_true")
    args = p.parse_args()
    row = asyncio.run(main(args))
    if "estimate" in row and len(row) == 1:
        print(json.dumps(row, indent=2))


if __name__ == "__main__":
    cli()
