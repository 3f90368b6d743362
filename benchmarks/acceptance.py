"""One optimizer on one built-in task with real models: start vs final TEST score, cost by role, wall time.

    .venv/bin/python benchmarks/acceptance.py --task trec --optimizer mipro \\
        --n-train 30 --n-val 30 --n-test 100 --max-tokens 16 --set num_trials=10
    .venv/bin/python benchmarks/acceptance.py --task hotpotqa --optimizer gradsum --judge hotpotqa \\
        --proposer-model local/qwen2.5-coder-1.5b --set beam_width=2

Every row is a `prompthone optimize` run (`prompthone.runs.runner.run_optimization`): seeded
train/val/test split of the built-in task, the start scored on test, the optimizer given train and val
only, the result scored on the same test split; the run folder (run.sqlite, summary, best prompts) is
kept under `--runs`. What this script adds:

* a response cache of this row's own (`--cache`, default a fresh file named after the row), with no
  read-through to the shared cache, so "paid" calls were really computed; re-running the same command
  with the same `--cache` replays everything for free;
* `--judge NAME`: score with an LLM judge written in words (presets below) instead of the task's exact
  metric; the same test outputs are then also scored by the exact metric (replayed from the cache,
  nothing paid), so a gain that only the judge sees would show;
* one JSON line per row appended to `--results`, with the command, splits, scores with 95% CIs, calls
  and tokens by role (optimization apart from test scoring), wall times, machine and load.
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
from typing import Any

from rich.console import Console

from machine import cpu_model
from prompthone.data import split
from prompthone.evaluate import EvalResult, Evaluator
from prompthone.lm import LM, ResponseCache
from prompthone.optimize import Budget
from prompthone.program import render_prompts
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.tasks import get_task


def _judge(task_description: str, criteria: str, input_field: str = "question") -> dict[str, Any]:
    """A judge preset of a built-in task: the reference answer shown, one output and one input field."""
    return dict(
        task_description=task_description,
        criteria=criteria,
        reference_field="answer",
        output_fields=["answer"],
        input_fields=[input_field],
    )


#: LLM-judge variants of built-in tasks: criteria in words, graded against the example's reference answer
JUDGES: dict[str, dict[str, Any]] = {
    "hotpotqa": _judge(
        (
            "Answer a multi-hop factual question in a few words, using passages that were retrieved with a "
            "search query the system wrote first."
        ),
        (
            "Score 1 if the answer gives the same entity, name, number, date or yes/no as the reference "
            "answer (extra words, a fuller or shorter form of the same name, or different spelling are "
            "fine). Score 0 if it gives a different answer, lists several candidates, or says the "
            "information is missing."
        ),
    ),
    "sst2": _judge(
        "Say whether the sentiment of a sentence from a movie review is positive or negative.",
        (
            "Score 1 if the output states the same sentiment as the reference answer (positive or negative), in "
            "any wording. Score 0 if it states the other sentiment, both, neither, or something else."
        ),
        input_field="sentence",
    ),
    "sports": _judge(
        "Decide whether a sentence about sports is plausible.",
        (
            "The answer must be one word, yes or no, and agree with the reference answer. Score 1 only then. "
            "Score 0 for the other verdict, for any other wording (such as 'plausible' or 'The answer is yes'), "
            "and for no answer."
        ),
    ),
    "sports-verdict": _judge(
        "Decide whether a sentence about sports is plausible.",
        (
            "Score 1 if the output gives the same verdict as the reference answer, in any wording (yes = "
            "plausible, no = not plausible). Score 0 if it gives the other verdict, both, or no verdict."
        ),
    ),
    "trec": _judge(
        (
            "Classify a question by the kind of answer it asks for, with exactly one of these labels: "
            "abbreviation, entity, description, human, location, number."
        ),
        (
            "Score 1 if the output is the label given as the reference answer (case and punctuation do not "
            "matter). Any other output scores 0: another label, several labels, or any text that is not the "
            "reference label. An answer to the question itself (a name, a date, a thing, a sentence) is not a "
            "label and scores 0, even when it is the right kind of answer."
        ),
    ),
}


def parse_settings(items: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs, each value read as JSON when it is JSON, else kept as text."""
    out: dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def result_row(r: EvalResult) -> dict[str, Any]:
    lo, hi = r.ci95
    return {"score": r.mean, "ci95": [lo, hi], "n": r.n, "parse_failures": r.n_parse_failures, "errors": r.n_errors}


def make_spec(args: argparse.Namespace) -> RunSpec:
    settings = parse_settings(args.set)
    if args.describe:  # GRAD-SUM's other input besides the metric: the task in words
        settings.setdefault("task_description", JUDGES[args.describe]["task_description"])
    return RunSpec(
        task=args.task,
        optimizer=args.optimizer,
        model=args.model,
        proposer_model=args.proposer_model,
        teacher_model=args.teacher_model,
        judge={**JUDGES[args.judge], "max_tokens": args.judge_max_tokens} if args.judge else None,
        judge_model=args.judge_model if args.judge else None,
        settings=settings,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        data_root=args.data_root,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        max_errors=args.max_errors,
        threads=args.threads,
        budget=Budget(max_lm_calls=args.max_calls, max_wall_s=args.max_minutes * 60 if args.max_minutes else None),
    )


async def exact_rescore(out: RunOutcome, cache: Path) -> dict[str, Any]:
    """The judged test outputs under the task's exact metric: the same requests, replayed from the cache."""
    spec = out.spec
    task = get_task(spec.task)
    program = task.make_program(spec.data_root)
    lm = LM(spec.model, cache=ResponseCache(cache))
    ev = Evaluator(program, task.metric(), lm, concurrency=spec.concurrency, max_tokens=spec.max_tokens)
    tests = split(task.load(spec.data_root), train=spec.n_train, val=spec.n_val, test=spec.n_test, seed=spec.seed).test
    start, final = await ev.evaluate(None, tests), await ev.evaluate(out.result.best, tests)
    if lm.usage.paid_calls:
        raise RuntimeError(f"the exact re-score paid {lm.usage.paid_calls} calls: outputs were not replayed")
    return {"start_test_exact": result_row(start), "final_test_exact": result_row(final)}


async def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    spec = make_spec(args)
    tag = args.tag or f"{spec.optimizer}-{spec.task.replace('/', '-')}" + (f"-judge-{args.judge}" if args.judge else "")
    cache = Path(args.cache) if args.cache else Path(args.runs) / f"{tag}.responses.sqlite"
    cache.parent.mkdir(parents=True, exist_ok=True)
    # the runner reads through to the shared response cache: point "shared" at this row's own file
    os.environ["PROMPTHONE_RESPONSE_CACHE"] = str(cache.resolve())
    if args.dry_run:
        return {"estimate": await run_optimization(spec, dry_run=True)}
    load_start = os.getloadavg()
    # when and at which commit the row started: the code it ran, even if commits land while it runs
    started = datetime.now(UTC).isoformat(timespec="seconds")
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    t0 = time.perf_counter()
    out = await run_optimization(spec, out_dir=Path(args.runs), console=console)
    assert isinstance(out, RunOutcome)
    row: dict[str, Any] = {
        "command": " ".join(["python", *sys.argv]),
        "tag": tag,
        "date_utc": started,
        "git": git,
        "task": spec.task,
        "optimizer": spec.optimizer,
        "judge": args.judge,
        "settings": out.result.info.get("settings", spec.settings),
        "models": {
            "task": spec.model,
            "proposer": spec.proposer_model or spec.model,
            "teacher": spec.teacher_model or spec.model,
            "judge": (spec.judge_model or spec.proposer_model or spec.model) if args.judge else None,
        },
        "splits": {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test, "seed": spec.seed},
        "max_tokens": spec.max_tokens,
        "start_test": result_row(out.start_test),
        "final_test": result_row(out.final_test),
        "start_val": out.result.start_score,
        "best_val": out.result.best_score,
        "stopped_by": out.result.stopped_by,
        "trials": {
            "validation": sum(t.full for t in out.result.trials),
            "minibatch": sum(not t.full for t in out.result.trials),
        },
        "usage_optimization": out.usage,
        "usage_test_scoring": out.test_usage,
        "wall_s_optimization": out.optimize_wall_s,
        "wall_s_total": time.perf_counter() - t0,
        "machine": {
            "nproc": os.cpu_count(),
            "cpu": cpu_model(),
            "python": platform.python_version(),
            "threads": spec.threads,
            "loadavg_start": load_start,
            "loadavg_end": os.getloadavg(),
        },
        "run_dir": str(out.run_dir),
        "cache": str(cache),
        "best_prompts": render_prompts(get_task(spec.task).make_program(spec.data_root), out.result.best).as_text(),
    }
    if args.judge:
        row |= await exact_rescore(out, cache)
        console.print(
            f"  exact metric on the same test outputs: start {row['start_test_exact']['score']:.3f}, "
            f"final {row['final_test_exact']['score']:.3f}"
        )
    return row


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True)
    p.add_argument("--optimizer", required=True, help="any name `prompthone optimize` accepts")
    p.add_argument("--model", default="local/qwen2.5-coder-0.5b")
    p.add_argument("--proposer-model", default=None, help="default: the task model")
    p.add_argument("--teacher-model", default=None, help="default: the task model")
    p.add_argument("--judge", choices=sorted(JUDGES), help="score with this LLM-judge variant of the task")
    p.add_argument("--judge-model", default=None, help="default: the proposer model")
    p.add_argument("--judge-max-tokens", type=int, default=100)
    p.add_argument("--describe", choices=sorted(JUDGES), help="give the optimizer this preset's task description")
    p.add_argument("--set", action="append", default=[], help="optimizer setting KEY=VALUE (JSON value)")
    p.add_argument("--n-train", type=int, default=30)
    p.add_argument("--n-val", type=int, default=30)
    p.add_argument("--n-test", type=int, default=100)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root")
    p.add_argument("--max-tokens", type=int, default=64)
    p.add_argument("--max-errors", type=int, default=0, help="errors (e.g. judge failures) tolerated per evaluation")
    p.add_argument("--concurrency", type=int, default=4)
    # llama.cpp threads spin while they wait: on a shared, oversubscribed 2-core machine one thread per
    # model was 2-6x faster than two. Threads do not change answers.
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads per embedded model")
    p.add_argument("--max-calls", type=int, help="LM-call budget of the optimization (all roles)")
    p.add_argument("--max-minutes", type=float, help="wall-time budget of the optimization")
    p.add_argument("--tag", help="row name (default: OPTIMIZER-TASK[-judge-NAME])")
    p.add_argument("--cache", help="response cache file (default: RUNS/TAG.responses.sqlite)")
    p.add_argument("--runs", default="prompthone-runs/bench", help="folder for run folders and caches")
    p.add_argument("--results", default="prompthone-runs/bench/results.jsonl")
    p.add_argument("--dry-run", action="store_true", help="print the cost estimate and spend nothing")
    args = p.parse_args()
    console = Console()
    row = asyncio.run(run(args, console))
    if args.dry_run:
        console.print_json(json.dumps(row["estimate"]))
        return
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        f.write(json.dumps(row, default=str) + "\n")
    keys = ("start_test", "final_test", "usage_optimization", "wall_s_optimization", "wall_s_total")
    console.print_json(json.dumps({k: row[k] for k in keys}, default=str))


if __name__ == "__main__":
    main()
