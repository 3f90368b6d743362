"""One server, used well (issue 17, item 7): MIPRO on a real `llama_cpp.server`, with and without
candidate-affine request order.

    .venv/bin/python benchmarks/server_reuse.py [--task sst2] [--trials 12] [--n-val 40] [--minibatch 10]
        [--demos 4+4] [--fifo-row] [--results docs/results/server_reuse.jsonl]
    .venv/bin/python benchmarks/server_reuse.py --smoke      # a tiny run of every row, nothing written

`llama_cpp.server` answers one request at a time and keeps the KV cache of the prompt it evaluated
last. Rows, each on the same server, the same spec (`--concurrency 8`, so MIPRO keeps 4 trials in
flight in every row and the plan is the same) and a fresh, empty response cache:

* `arrival`: as before this change: the client sends up to 8 requests at once and the server takes
  them in its own order, the trials' requests interleaved;
* `affine`: the server named in PROMPTHONE_ONE_AT_A_TIME: the client sends one request at a time, the
  waiting request whose prompt shares the longest prefix with the last one first (a candidate's
  examples in a row);
* `fifo` (`--fifo-row`): one at a time too, in arrival order (PROMPTHONE_REQUEST_ORDER=fifo), to tell
  what sending one at a time does from what the order does.

`llama_cpp.server` reports no reused tokens in its replies; with `verbose` (its default) it prints, after
every request, `prompt eval time = ... / N tokens`: the N prompt tokens it evaluated afresh. The k-th
such line of a row belongs to its k-th paid LM call in the run store (the server answers one at a time
and the store records calls as they finish; the counts are checked), so each call's reused tokens are
its prompt tokens minus N. The search phase is the calls after the start candidate was scored and up to
the last trial. Printed per row: wall time (whole run and search), prompt tokens, the reused share,
tokens evaluated afresh per request; then the wall-time ratios to `affine`, and whether every trial's
score is the same in every row (greedy answers to the same requests; llama.cpp may still differ in a
last digit when a prompt is evaluated in other chunks, which the check would show).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from machine import run_meta
from prompthone.lm.settings import ONE_AT_A_TIME_ENV, REQUEST_ORDER_ENV
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.store import RunStore

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from model_server import llama_server  # noqa: E402

#: what llama-cpp-python prints after each completion when verbose (llama.cpp's perf counters)
PROMPT_EVAL = re.compile(r"prompt eval time =\s*[\d.]+ ms /\s*(\d+) tokens")
ROWS = {
    "arrival": {},
    "affine": {ONE_AT_A_TIME_ENV: "{url}"},
    "fifo": {ONE_AT_A_TIME_ENV: "{url}", REQUEST_ORDER_ENV: "fifo"},
}


@dataclass
class Phase:
    requests: int = 0
    prompt_tokens: int = 0
    fresh_tokens: int = 0
    wall_s: float = 0.0

    @property
    def reused_share(self) -> float:
        return 1 - self.fresh_tokens / self.prompt_tokens if self.prompt_tokens else 0.0

    @property
    def fresh_per_request(self) -> float:
        return self.fresh_tokens / self.requests if self.requests else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "prompt_tokens": self.prompt_tokens,
            "fresh_tokens": self.fresh_tokens,
            "reused_share": round(self.reused_share, 4),
            "fresh_per_request": round(self.fresh_per_request, 1),
            "wall_s": round(self.wall_s, 2),
        }


@dataclass
class Row:
    name: str
    run: Phase = field(default_factory=Phase)
    search: Phase = field(default_factory=Phase)
    trials: list[tuple[str, float, int, bool]] = field(default_factory=list)
    best: str = ""
    test: tuple[float, float] = (0.0, 0.0)
    load: tuple[float, float] = (0.0, 0.0)


def fresh_tokens_in(log: Path, start: int, end: int) -> list[int]:
    """The prompt tokens evaluated afresh by each request whose perf lines fall in `log[start:end]`."""
    with log.open("rb") as f:
        f.seek(start)
        text = f.read(end - start).decode("utf-8", "replace")
    return [int(m.group(1)) for m in PROMPT_EVAL.finditer(text)]


def measure(name: str, outcome: RunOutcome, fresh: list[int], wall_s: float) -> Row:
    store = RunStore(outcome.run_dir, read_only=True)
    paid = [c for c in store.lm_calls() if not c["cached"]]
    if len(paid) != len(fresh):
        raise SystemExit(
            f"row {name}: the run store holds {len(paid)} paid calls but the server log {len(fresh)} requests; "
            "was the server shared with another client?"
        )
    trials = store.trials()
    start = next(t["ts"] for t in trials if t["info"].get("phase") == "start")
    end = max(t["ts"] for t in trials)
    row = Row(name)
    for call, n in zip(paid, fresh, strict=True):
        fresh_n = min(n, call["prompt_tokens"])  # the very first request also counts a token of its own
        for phase, inside in ((row.run, True), (row.search, start < call["ts"] <= end)):
            if inside:
                phase.requests += 1
                phase.prompt_tokens += call["prompt_tokens"]
                phase.fresh_tokens += fresh_n
    row.run.wall_s, row.search.wall_s = wall_s, end - start
    r = outcome.result
    row.trials = [(t.candidate.hash, round(t.score, 9), t.n, t.full) for t in r.trials]
    row.best = r.best.hash
    row.test = (outcome.start_test.mean, outcome.final_test.mean)
    return row


def make_spec(args: argparse.Namespace, model: str) -> RunSpec:
    boot, labeled = (int(x) for x in args.demos.split("+"))
    settings: dict[str, Any] = {
        "preset": None,
        "num_candidates": args.candidates,
        "num_trials": args.trials,
        "minibatch_size": args.minibatch,
        "full_eval_every": args.full_eval_every,
        "max_bootstrapped_demos": boot,
        "max_labeled_demos": labeled,
        "proposer_max_tokens": args.proposer_max_tokens,
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
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        timeout_s=600,
    )


def run_row(name: str, args: argparse.Namespace, url: str, log: Path, work: Path) -> Row:
    env = {k: v.format(url=url) for k, v in ROWS[name].items()}
    saved = {k: os.environ.get(k) for k in (ONE_AT_A_TIME_ENV, REQUEST_ORDER_ENV, "PROMPTHONE_RESPONSE_CACHE")}
    os.environ.pop(ONE_AT_A_TIME_ENV, None)
    os.environ.pop(REQUEST_ORDER_ENV, None)
    os.environ.update(env)
    os.environ["PROMPTHONE_RESPONSE_CACHE"] = str(work / name / "responses.sqlite")  # empty: nothing replayed
    try:
        start = log.stat().st_size
        load0 = os.getloadavg()[0]
        t0 = time.perf_counter()
        outcome = asyncio.run(run_optimization(make_spec(args, f"openai/qwen@{url}"), out_dir=work / name))
        wall = time.perf_counter() - t0
        time.sleep(0.5)  # the server's last lines reach its log
        assert isinstance(outcome, RunOutcome)
        row = measure(name, outcome, fresh_tokens_in(log, start, log.stat().st_size), wall)
        row.load = (load0, os.getloadavg()[0])
        return row
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def warm_up(url: str) -> None:
    """One request before the first row, so that no row pays for loading the model's pages."""
    from prompthone.lm import LM

    LM(f"openai/qwen@{url}", cache=False).complete_sync([{"role": "user", "content": "Hi"}], max_tokens=2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="sst2")
    p.add_argument("--n-train", type=int, default=40)
    p.add_argument("--n-val", type=int, default=40)
    p.add_argument("--n-test", type=int, default=20)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--candidates", type=int, default=4, help="instructions and demo sets per module")
    p.add_argument("--minibatch", type=int, default=10)
    p.add_argument("--full-eval-every", type=int, default=4)
    p.add_argument("--demos", default="4+4", help="bootstrapped+labeled demos per prompt (8-demo prompts)")
    p.add_argument("--proposer-max-tokens", type=int, default=120)
    p.add_argument("--max-tokens", type=int, default=16)
    p.add_argument("--concurrency", type=int, default=8, help="the same in every row (MIPRO: 4 trials in flight)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="llama.cpp threads of the server")
    p.add_argument("--fifo-row", action="store_true", help="also one at a time in arrival order")
    p.add_argument("--order", default="arrival,affine", help="the rows, in the order they run")
    p.add_argument("--smoke", action="store_true", help="a tiny run of each row; writes no results")
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "server_reuse.jsonl")
    p.add_argument("--keep", type=Path, default=None, help="keep run folders and caches here (default: temp)")
    args = p.parse_args()
    if args.smoke:
        args.n_train, args.n_val, args.n_test, args.trials, args.candidates = 8, 6, 2, 4, 2
        args.minibatch, args.full_eval_every, args.demos, args.proposer_max_tokens = 3, 2, "1+1", 40
    names = [n.strip() for n in args.order.split(",") if n.strip()] + (["fifo"] if args.fifo_row else [])
    unknown = [n for n in names if n not in ROWS]
    if unknown or not re.fullmatch(r"\d+\+\d+", args.demos):
        raise SystemExit(
            f"--order takes rows from {', '.join(ROWS)}; --demos is like 4+4 (got {args.order!r}, {args.demos!r})"
        )
    from prompthone.lm.local.assemble import resolve_gguf

    gguf, _ = resolve_gguf("qwen2.5-coder-0.5b")
    console = Console(width=max(Console().width, 140))
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="server-reuse-") as tmp:
        work = args.keep or Path(tmp)
        with llama_server(gguf, alias="qwen", threads=args.threads, n_ctx=4096, timeout_s=600) as url:
            port = url.rsplit(":", 1)[1].split("/")[0]
            log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama_server_{port}.log"
            warm_up(url)
            for name in names:
                console.rule(f"row {name}")
                rows.append(run_row(name, args, url, log, work))

    table = Table(
        title=f"MIPRO on llama_cpp.server (0.5B, {args.threads} thread), {args.task}, --concurrency {args.concurrency}"
    )
    for col in ("row", "phase", "wall s", "requests", "prompt tokens", "reused share", "fresh tokens / request"):
        table.add_column(col, justify="left" if col in ("row", "phase") else "right")
    for row in rows:
        for phase_name, ph in (("search", row.search), ("whole run", row.run)):
            table.add_row(row.name, phase_name, f"{ph.wall_s:.1f}", str(ph.requests), str(ph.prompt_tokens),
                          f"{ph.reused_share:.1%}", f"{ph.fresh_per_request:.1f}")  # fmt: skip
    console.print(table)
    base = next((r for r in rows if r.name == "affine"), rows[-1])
    same = all(r.trials == base.trials and r.best == base.best for r in rows)
    for r in rows:
        if r is not base:
            console.print(
                f"wall {r.name}/{base.name}: search {r.search.wall_s / base.search.wall_s:.2f}x, "
                f"whole run {r.run.wall_s / base.run.wall_s:.2f}x"
            )
    console.print(f"every trial's score the same in every row: {same}")
    if args.smoke:
        return 0
    meta = {
        **run_meta(),
        "task": args.task,
        "server": f"llama_cpp.server, qwen2.5-coder-0.5b, {args.threads} thread(s)",
        "spec": {k: getattr(args, k) for k in ("n_train", "n_val", "n_test", "trials", "candidates", "minibatch",
                                               "full_eval_every", "demos", "concurrency", "max_tokens", "seed")},
    }  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as f:
        for r in rows:
            line = {**meta, "row": r.name, "search": r.search.as_dict(), "run": r.run.as_dict(), "load": r.load,
                    "wall_ratio_to_affine": {"search": round(r.search.wall_s / base.search.wall_s, 3),
                                             "run": round(r.run.wall_s / base.run.wall_s, 3)},
                    "same_scores_as_affine": r.trials == base.trials and r.best == base.best,
                    "test": r.test, "trials": len(r.trials)}  # fmt: skip
            f.write(json.dumps(line) + "\n")
    console.print(f"rows appended to {args.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
