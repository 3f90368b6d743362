"""Warm cache (issue 8, item 4): the same optimization re-run with a warm response cache.

    .venv/bin/python benchmarks/warm_cache.py [--task sst2] [--latency-ms 50] [--n-train 20] [--n-val 20]
                                              [--n-test 20] [--trials 6] [--candidates 3] [--llama]

Target: the re-run sends zero requests to the server and finishes in under 5% of the first run's
wall time (and yields the same result: best candidate, every trial's score, the test score).

Protocol, for each server (the fake OpenAI server; with `--llama` also a real `llama_cpp.server` with
the 0.5B model on one thread):

1. a fresh, empty response cache file (PROMPTHONE_RESPONSE_CACHE, the user-level cache every run reads
   and writes) and a fresh folder for run folders;
2. run one MIPRO optimization with `run_optimization`, exactly as `prompthone optimize` does
   (`prompthone optimize --task sst2 --model openai/fake@URL --set preset=null --set num_trials=6 ...`):
   the start program scored on test, the optimization (data summary, program description,
   instruction proposals, bootstrapped demos, trials), and the result scored on test;
3. run the same spec again (a new run folder, the same cache file).

The fake server runs in a separate process with a fixed latency and deterministic, task-shaped
answers (`--task`: `prompthone.testing.task_responder.TaskResponder`): right on some examples and
wrong on others, depending on the prompt, and instruction-like replies to proposal prompts, so MIPRO
does real work and candidates score differently. Its request counter is read over HTTP
(`GET /_fake/stats`). The llama.cpp server has no such counter, so its rows count the requests the
client sent (LM calls not answered from the cache), which is what the server received.

Wall time is measured around `run_optimization` in this process (both runs after the same imports),
and so is this process's CPU time (`time.process_time`), which other processes on the machine affect
less;
the re-run's wall is what remains when nothing is paid for: building the program and splits, the
run store (SQLite), reading every answer from the cache, scoring, and writing the run's files.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from machine import cpu_model
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.testing import FakeOpenAIServerProcess

RATIO_TARGET = 0.05


@dataclass
class RunRow:
    server: str
    run: str
    requests: int
    wall_s: float
    cpu_s: float
    outcome: RunOutcome


def signature(outcome: RunOutcome) -> dict[str, Any]:
    """What must be identical between the first run and the re-run."""
    r = outcome.result
    return {
        "best": r.best.hash,
        "best_score": r.best_score,
        "trials": [(t.index, t.candidate.hash, t.score, t.n, t.full) for t in r.trials],
        "start_test": outcome.start_test.mean,
        "final_test": outcome.final_test.mean,
    }


def paid_calls(outcome: RunOutcome) -> int:
    """LM calls of the whole run (start test, optimization, final test) that were not cache hits."""
    usages = [*outcome.usage.values(), outcome.test_usage]
    return sum(int(u.get("paid_calls", 0)) + int(u.get("retries", 0)) for u in usages)


def make_spec(args: argparse.Namespace, model: str, concurrency: int) -> RunSpec:
    settings: dict[str, Any] = {
        "preset": None,
        "num_candidates": args.candidates,
        "num_trials": args.trials,
        "val_size": args.n_val,
        "minibatch_size": max(2, args.n_val // 2),
        "full_eval_every": 3,
        "max_bootstrapped_demos": 2,
        "max_labeled_demos": 2,
        "summary_batches": 1,
        "proposer_max_tokens": 80,
    }
    return RunSpec(
        task=args.task,
        optimizer="mipro",
        model=model,
        settings=settings,
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        data_root=args.data_root,
        concurrency=concurrency,
        max_tokens=args.max_tokens,
    )


def run_twice(make: Callable[[], RunSpec], work: Path, count_requests: Any, server: str) -> list[RunRow]:
    """First run on an empty cache, then the same spec again; each with its server-side request count.

    Each run gets a spec of its own, as each `prompthone optimize` command builds one (a `RunSpec`'s
    budget tracks the LMs of the run it was used for).
    """
    os.environ["PROMPTHONE_RESPONSE_CACHE"] = str(work / "responses.sqlite")
    os.environ.pop("PROMPTHONE_NO_CACHE", None)
    rows = []
    for name in ("first run (empty cache)", "re-run (warm cache)"):
        before = count_requests(None)
        t0, c0 = time.perf_counter(), time.process_time()
        outcome = asyncio.run(run_optimization(make(), out_dir=work / "runs"))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        assert isinstance(outcome, RunOutcome)
        rows.append(RunRow(server, name, count_requests(outcome) - before, wall, cpu, outcome))
    return rows


def fake_rows(args: argparse.Namespace, work: Path) -> list[RunRow]:
    server = FakeOpenAIServerProcess(latency_ms=args.latency_ms, task=args.task, data_root=args.data_root)
    with server as base_url:
        name = f"fake OpenAI server ({args.latency_ms:g} ms)"
        return run_twice(
            lambda: make_spec(args, f"openai/fake@{base_url}", args.concurrency),
            work / "fake",
            lambda _o: server.stats()["requests_received"],
            name,
        )


def llama_rows(args: argparse.Namespace, work: Path) -> list[RunRow]:
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from model_server import llama_server  # tests/model_server.py
    from prompthone.lm.local.assemble import resolve_gguf

    path, _sha = resolve_gguf("qwen2.5-coder-0.5b")
    sent = {"n": 0}

    def count(outcome: RunOutcome | None) -> int:
        if outcome is not None:
            sent["n"] += paid_calls(outcome)
        return sent["n"]

    # one thread for llama.cpp (a shared 2-core machine): llama_server uses this process's CPU affinity
    affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(affinity)})
    try:
        with llama_server(path, alias="qwen") as base_url:
            os.sched_setaffinity(0, affinity)
            return run_twice(
                lambda: make_spec(args, f"openai/qwen@{base_url}", 1),
                work / "llama",
                count,
                "llama_cpp.server (0.5B, 1 thread)",
            )
    finally:
        os.sched_setaffinity(0, affinity)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--data-root", default=None)
    p.add_argument("--latency-ms", type=float, default=50.0, help="the fake server's fixed latency")
    p.add_argument("--n-train", type=int, default=20)
    p.add_argument("--n-val", type=int, default=20)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--trials", type=int, default=6)
    p.add_argument("--candidates", type=int, default=3, help="instructions and demo sets per module")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--llama", action="store_true", help="also run against llama_cpp.server with the 0.5B model")
    p.add_argument("--keep", type=Path, default=None, help="keep caches and run folders here (default: temp)")
    args = p.parse_args()
    console = Console(width=max(Console().width, 130))

    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="warm-cache-") as tmp:
        work = args.keep or Path(tmp)
        rows = fake_rows(args, work)
        if args.llama:
            rows += llama_rows(args, work)
    load1 = os.getloadavg()[0]

    table = Table(
        title=f"Warm cache: MIPRO on {args.task}, {args.n_train} train / {args.n_val} val / {args.n_test} test, "
        f"{args.trials} trials, {args.candidates} candidates per variable"
    )
    cols = ("server", "run", "requests received", "wall s", "ratio to first run", "CPU s", "best candidate", "test")
    for col in cols:
        table.add_column(col, justify="left" if col in ("server", "run", "best candidate") else "right")
    ok_all = True
    verdicts = []
    for first, again in zip(rows[::2], rows[1::2], strict=True):
        for row in (first, again):
            table.add_row(
                row.server,
                row.run,
                str(row.requests),
                f"{row.wall_s:.3f}",
                f"{row.wall_s / first.wall_s:.3f}",
                f"{row.cpu_s:.2f}",
                row.outcome.result.best.hash[:12],
                f"{row.outcome.final_test.mean:.3f}",
            )
        same = signature(first.outcome) == signature(again.outcome)
        ratio = again.wall_s / first.wall_s
        ok = again.requests == 0 and ratio < RATIO_TARGET and same
        ok_all &= ok
        verdicts.append(
            f"{'[green]PASS[/]' if ok else '[red]FAIL[/]'} {first.server}: re-run sent {again.requests} requests "
            f"(first run {first.requests}), took {ratio:.1%} of the first run's wall time (target < 5%), "
            f"same result (best candidate, {len(first.outcome.result.trials)} trial scores, test scores): {same}"
        )
    console.print(table)
    for v in verdicts:
        console.print(v)
    console.print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; "
        f"fake server latency {args.latency_ms:g} ms, concurrency {args.concurrency}; "
        f"load average {load0:.1f} before, {load1:.1f} after"
    )
    return 0 if ok_all else 1


if __name__ == "__main__":
    sys.exit(main())
