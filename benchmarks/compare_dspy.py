"""Quality at equal budget, side by side with DSPy (issue 8, items 1-2): one command per task.

    make bench-dspy-env      # once: DSPy in .venv-dspy
    .venv/bin/python benchmarks/compare_dspy.py --task trec --n-train 20 --n-val 20 --n-test 60 --cap 150

Starts `llama_cpp.server` with the embedded model (one llama.cpp thread) on 127.0.0.1, then runs, one
after another against that one server, on the same seeded train / validation / test split:

* prompthone `mipro`, `opro`, `gradsum`: `prompthone.optimize.runner.run_optimization` with the task
  model `openai/<alias>@<url>` (the proposer is the same model), `Budget(max_lm_calls=cap)`; each
  row has a fresh response cache of its own (re-running the command replays it for free). The
  zero-shot row is the starting program's test score, which every prompthone run measures first;
* DSPy `MIPROv2` and `COPRO` (and DSPy's rendering of the same zero-shot program), in `.venv-dspy`
  through `benchmarks/dspy_side.py`: the same split, the same prompthone metric object, the same
  instructions and (HotPotQA) the same BM25 index; every request goes through `CallCap`.

The cap is on paid calls to the model during the optimization, all roles together (task, teacher,
proposer: one model serves them all here), on both sides: prompthone's budget stops the optimizer
cleanly at the cap and keeps the best candidate so far; on the DSPy side `CallCap` refuses the
request that would go over it (DSPy has no budget of its own), and if any request was refused the
row uses the best program that had been scored on the whole validation set before the cap, and says
so. Repeated identical requests are free on both sides (prompthone's run cache; `CallCap`'s replay).
Scoring on the test split is outside the cap on both sides.

Sample efficiency: for each method, the task-model calls (task + teacher, not proposer) it had spent
when a whole-validation score first reached the best whole-validation score DSPy's MIPROv2 reached.
prompthone's come from the run's SQLite (`ph_trials` and `ph_lm_calls` matched by time); DSPy's
from `CallCap`'s marks around each `dspy.Evaluate` call.

Writes one JSON line per row to `--results` and prints the table in Markdown.
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
from prompthone.evaluate.stats import mean_ci
from prompthone.lm.local.assemble import resolve_gguf
from prompthone.optimize import Budget
from prompthone.optimize.runner import RunOutcome, RunSpec, run_optimization
from sample_efficiency import best_score, calls_to_reach, prompthone_trajectory, trajectory_from_marks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from model_server import llama_server  # noqa: E402

DSPY_PYTHON = ROOT / ".venv-dspy" / "bin" / "python"
PROMPTHONE_METHODS = ("mipro", "opro", "gradsum")
DSPY_METHODS = {"dspy-miprov2": "miprov2", "dspy-copro": "copro", "dspy-zero-shot": "none"}
ALL_METHODS = ("mipro", "opro", "gradsum", "dspy-miprov2", "dspy-copro", "dspy-zero-shot")
TARGET_METHOD = "dspy-miprov2"


def mipro_like(args: argparse.Namespace) -> dict[str, Any]:
    """The MIPRO sizes both sides get (names differ: DSPy's on the right in `dspy_settings`)."""
    return {
        "num_candidates": args.num_candidates,
        "num_trials": args.num_trials,
        "minibatch_size": args.minibatch_size,
        "full_eval_every": args.full_eval_every,
        "max_bootstrapped_demos": args.max_demos,
        "max_labeled_demos": args.max_demos,
    }


def prompthone_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method == "mipro":
        s = {**mipro_like(args), "summary_batches": 1, "proposer_max_tokens": args.proposer_max_tokens}
        if args.lean_proposer:
            s |= {"ground_dataset": False, "ground_program": False}
        return s
    if method == "opro":  # as many proposals per step as COPRO's breadth, the same proposer max_tokens
        return {"candidates_per_step": args.copro_breadth, "proposer_max_tokens": args.proposer_max_tokens}
    if method == "gradsum":
        return {"beam_width": args.gradsum_beam, "edits_per_prompt": 1, "minibatch_size": args.minibatch_size,
                "max_gradients": args.gradsum_max_gradients}  # fmt: skip
    return {}


def dspy_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method == "miprov2":
        m = mipro_like(args)
        return {
            "num_candidates": m["num_candidates"],
            "num_trials": m["num_trials"],
            "minibatch_size": m["minibatch_size"],
            "minibatch_full_eval_steps": m["full_eval_every"],
            "max_bootstrapped_demos": m["max_bootstrapped_demos"],
            "max_labeled_demos": m["max_labeled_demos"],
            "view_data_batch_size": 10,
            "data_aware_proposer": not args.lean_proposer,
            "program_aware_proposer": not args.lean_proposer,
        }
    if method == "copro":
        return {"breadth": args.copro_breadth, "depth": args.copro_depth, "init_temperature": 1.4}
    return {}


async def run_prompthone(method: str, url: str, args: argparse.Namespace, out_dir: Path) -> dict[str, Any]:
    tag = f"{args.task}-{method}"
    cache = out_dir / f"{tag}.responses.sqlite"
    os.environ["PROMPTHONE_RESPONSE_CACHE"] = str(cache.resolve())  # the runner's shared cache: this row's own
    spec = RunSpec(
        task=args.task,
        optimizer=method,
        model=f"openai/{args.alias}@{url}",
        settings=prompthone_settings(method, args),
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        data_root=args.data_root,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        budget=Budget(max_lm_calls=args.cap),
    )
    t0 = time.perf_counter()
    out = await run_optimization(spec, out_dir=out_dir / "runs", console=Console())
    assert isinstance(out, RunOutcome)
    traj = prompthone_trajectory(out.run_dir / "run.sqlite", roles=("task", "teacher"))
    u = out.usage
    lo, hi = out.final_test.ci95
    slo, shi = out.start_test.ci95
    return {
        "method": method,
        "side": "prompthone",
        "settings": out.result.info.get("settings", spec.settings),
        "test": {"score": out.final_test.mean, "ci95": [lo, hi], "n": out.final_test.n,
                 "parse_failures": out.final_test.n_parse_failures},
        "start_test": {"score": out.start_test.mean, "ci95": [slo, shi], "n": out.start_test.n,
                       "parse_failures": out.start_test.n_parse_failures},
        "calls": {role: int(u[role]["paid_calls"]) for role in ("task", "teacher", "proposer") if role in u},
        "tokens": sum(int(u[r]["prompt_tokens"] + u[r]["completion_tokens"]) for r in u),
        "test_calls": int(out.test_usage.get("paid_calls", 0)),
        "trajectory": traj,
        "best_val": out.result.best_score,
        "stopped_by": out.result.stopped_by,
        "wall_s_optimization": out.optimize_wall_s,
        "wall_s_total": time.perf_counter() - t0,
        "run_dir": str(out.run_dir),
    }  # fmt: skip


def run_dspy(method: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    name = DSPY_METHODS[method]
    job = {
        "job": "optimize", "method": name, "task": args.task, "data_root": args.data_root, "base_url": url,
        "model": args.alias, "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
        "seed": args.seed, "cap": args.cap, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "proposer_max_tokens": args.proposer_max_tokens, "settings": dspy_settings(name, args),
    }  # fmt: skip
    python = Path(args.dspy_python)
    if not python.exists():
        raise SystemExit(f"{python} not found: run `make bench-dspy-env` first (DSPy lives in its own venv)")
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "dspy_side.py")], input=json.dumps(job), capture_output=True, text=True
    )
    log = Path(args.out) / f"{args.task}-{method}.stderr.log"
    log.write_text(proc.stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"the DSPy side failed ({proc.returncode}); see {log}:\n{proc.stderr[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    mean, lo, hi = mean_ci(r["test_scores"])
    paid = r["usage_optimization"]["paid"]
    tok = r["usage_optimization"]["tokens"]
    traj = trajectory_from_marks(r["marks"], args.n_val, role="task")
    return {
        "method": method,
        "side": "dspy",
        "dspy": r["dspy"],
        "settings": job["settings"],
        "test": {"score": mean, "ci95": [lo, hi], "n": len(r["test_scores"]), "parse_failures": r["test_failures"]},
        "calls": {"task": int(paid.get("task", 0)), "proposer": int(paid.get("proposer", 0))},
        "replayed": r["usage_optimization"]["replayed"],
        "tokens": int(sum(tok.values())),
        "test_calls": int(sum(r["usage_test_scoring"]["paid"].values())),
        "trajectory": traj,
        "best_val": best_score(traj),
        "stopped_by": r["stopped_by"] + (f" (scored: {r['fallback']})" if r.get("fallback") else ""),
        "best_program": r["best_program"],
        "wall_s_optimization": r["wall_s_optimization"],
        "wall_s_total": time.perf_counter() - t0,
    }


def fmt_score(t: dict[str, Any]) -> str:
    return f"{t['score']:.3f} ({t['ci95'][0]:.3f}-{t['ci95'][1]:.3f})"


def markdown(rows: list[dict[str, Any]], target: float | None) -> str:
    head = (
        "| method | test score (95% CI) | test parse failures | optimization calls: task / teacher / proposer "
        "| tokens | best val | task calls to reach DSPy MIPROv2's best val | optimize wall | stopped by |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        c = r.get("calls", {})
        calls = f"{c.get('task', 0)} / {c.get('teacher', '-')} / {c.get('proposer', 0)}" if c else "0"
        reach = "-"
        if target is not None and r.get("trajectory"):
            n = calls_to_reach(r["trajectory"], target)
            reach = str(n) if n is not None else "not reached"
        best = f"{r['best_val']:.3f}" if r.get("best_val") is not None else "-"
        wall = f"{r['wall_s_optimization'] / 60:.1f} min" if r.get("wall_s_optimization") else "-"
        lines.append(
            f"| {r['method']} | {fmt_score(r['test'])} | {r['test'].get('parse_failures', 0)} | {calls} | "
            f"{r.get('tokens', 0):,} | {best} | {reach} | {wall} | {r.get('stopped_by', '-')} |"
        )
    return head + "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="built-in task: trec, hotpotqa, ...")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated, of {', '.join(ALL_METHODS)}")
    p.add_argument("--model", default="qwen2.5-coder-0.5b", help="embedded model name (GGUF) to serve")
    p.add_argument("--alias", default="qwen0.5b", help="the model's name on the server")
    p.add_argument("--n-train", type=int, default=20)
    p.add_argument("--n-val", type=int, default=20)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root")
    p.add_argument("--cap", type=int, default=150, help="paid model calls per optimization, all roles")
    p.add_argument("--max-tokens", type=int, default=32, help="task-model max_tokens, both sides")
    p.add_argument("--proposer-max-tokens", type=int, default=150)
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight (prompthone) = DSPy num_threads")
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument("--num-candidates", type=int, default=3, help="MIPRO: instruction and demo-set candidates")
    p.add_argument("--num-trials", type=int, default=6)
    p.add_argument("--minibatch-size", type=int, default=10)
    p.add_argument("--full-eval-every", type=int, default=3)
    p.add_argument("--max-demos", type=int, default=2, help="MIPRO: bootstrapped and labelled demos, each")
    p.add_argument(
        "--lean-proposer",
        action="store_true",
        help="MIPRO proposals without the dataset summary and program description, both sides (fewer, "
        "shorter proposer calls on a tiny budget)",
    )
    p.add_argument("--gradsum-beam", type=int, default=2, help="GRAD-SUM beam width")
    p.add_argument("--gradsum-max-gradients", type=int, default=3, help="GRAD-SUM gradients per prompt")
    p.add_argument("--copro-breadth", type=int, default=3, help="COPRO breadth = OPRO candidates per step")
    p.add_argument("--copro-depth", type=int, default=2)
    p.add_argument("--dspy-python", default=str(DSPY_PYTHON))
    p.add_argument("--out", default="prompthone-runs/compare-dspy")
    p.add_argument("--results", default=None, help="JSON lines (default OUT/TASK.jsonl)")
    p.add_argument("--label", default="", help="a note stored with every row (e.g. 'tiny proof run')")
    p.add_argument("--report", action="store_true", help="only print the table of the rows in --results")
    args = p.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(ALL_METHODS)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Path(args.results) if args.results else out_dir / f"{args.task}.jsonl"
    console = Console()
    if args.report:
        print_table([json.loads(line) for line in results.read_text().splitlines() if line.strip()], console)
        return
    gguf, _ = resolve_gguf(args.model)
    meta = {
        "label": args.label,
        "command": " ".join(["python", *sys.argv]),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "task": args.task,
        "model": args.model,
        "splits": {"train": args.n_train, "val": args.n_val, "test": args.n_test, "seed": args.seed},
        "cap": args.cap,
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
    }
    rows: list[dict[str, Any]] = []
    with llama_server(gguf, alias=args.alias, n_ctx=args.n_ctx, threads=1, timeout_s=600) as url:
        for method in methods:
            load0 = os.getloadavg()
            console.rule(f"{method} on {args.task}")
            if method in PROMPTHONE_METHODS:
                row = asyncio.run(run_prompthone(method, url, args, out_dir))
            else:
                try:
                    row = run_dspy(method, url, args)
                except RuntimeError as exc:  # keep the other rows; the failure is reported, not hidden
                    console.print(f"[red]{method} failed[/]: {exc}")
                    continue
            row |= {"loadavg_start": load0, "loadavg_end": os.getloadavg(), **meta}
            rows.append(row)
            with open(results, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            console.print(
                f"{method}: test {fmt_score(row['test'])}, calls {row['calls']}, best val {row['best_val']}, "
                f"stopped by {row['stopped_by']}, {row['wall_s_total']:.0f} s"
            )
    print_table(rows, console)


def print_table(rows: list[dict[str, Any]], console: Console) -> None:
    """The Markdown table; the later row wins where a method was run more than once."""
    latest = {r["method"]: r for r in rows}
    start = next((r["start_test"] for r in rows if r.get("start_test")), None)
    if start is not None:  # the start program on test, as every prompthone run scored it before optimizing
        latest.setdefault("zero-shot", {"method": "zero-shot", "test": start, "calls": {}, "trajectory": None})
    order = ["zero-shot", "dspy-zero-shot", *PROMPTHONE_METHODS, "dspy-miprov2", "dspy-copro"]
    rows = [latest[m] for m in order if m in latest]
    target_row = latest.get(TARGET_METHOD)
    target = target_row["best_val"] if target_row else None
    console.print(f"\nDSPy MIPROv2's best validation score (the sample-efficiency target): {target}")
    print(markdown(rows, target))


if __name__ == "__main__":
    main()
