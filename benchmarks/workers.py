"""Workers on one run (issue 17): trial rate with 1, 2 and 4 processes working on one MIPRO run.

    .venv/bin/python benchmarks/workers.py [--processes 1,2,4] [--latency-ms 400] [--trials 24]
        [--parallel-trials 8] [--results docs/results/workers.jsonl]
    .venv/bin/python benchmarks/workers.py --smoke      # a tiny run of every row, nothing written

The setup the issue names: the project's latency-simulating OpenAI-compatible server
(`prompthone.testing.fake_openai_server`, a separate process, a fixed latency per request, answers of
some skill on the task), a throwaway PostgreSQL server (tests/pg_server.py), and one MIPRO run per row
on a database of its own, started as a user would: `prompthone optimize CONFIG --store URL --workers K`.
A row of P processes is the leader plus K = P - 1 local workers; every process sends at most
`--concurrency` requests at once (the fixed number of concurrent requests per worker), so the server,
which answers any number at once after its latency, is not the bottleneck. Each row starts from empty
caches (a new database, PROMPTHONE_NO_CACHE=1 for the user's cache), so each pays for every answer.

Measured per row: the trial rate of the search (trials after the start's evaluation, per minute from
the leader's last step before them, its proposals, to the last trial: what the workers spread; scoring
the start, bootstrapping demos and proposing instructions come before, and the last two are the
leader's alone), the whole command's wall time (which includes those, the workers' start-up and the
test scoring), paid calls per process, and database round trips per trial
(transactions committed or rolled back in the row's database, from `pg_stat_database`, over all
processes, divided by the trials). Ratios are to the 1-process row of the same invocation. The trials'
candidates and scores must be the same in every row (the leader alone runs the method; workers only
compute): the table says whether they are.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from machine import run_meta

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from pg_server import create_database, postgres_instance  # noqa: E402


@dataclass
class Row:
    processes: int
    wall_s: float
    trials: list[tuple[str, float, int]]
    search_trials: int
    trial_span_s: float
    calls_by_process: dict[str, int]
    round_trips: int
    test: float | None
    load: list[float] = field(default_factory=list)

    @property
    def trial_rate(self) -> float:
        """Search trials per minute (see `read_row`)."""
        return 60.0 * self.search_trials / self.trial_span_s if self.trial_span_s > 0 else float("nan")

    def as_dict(self) -> dict[str, Any]:
        return {
            "processes": self.processes,
            "wall_s": round(self.wall_s, 2),
            "trials": len(self.trials),
            "search_trials": self.search_trials,
            "trial_span_s": round(self.trial_span_s, 2),
            "trials_per_min": round(self.trial_rate, 2),
            "paid_calls_by_process": self.calls_by_process,
            "db_round_trips": self.round_trips,
            "db_round_trips_per_trial": round(self.round_trips / max(1, len(self.trials)), 1),
            "test": self.test,
            "load": self.load,
        }


def start_fake_server(latency_ms: float, task: str) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "prompthone.testing.fake_openai_server", "--port", "0",
           "--latency-ms", str(latency_ms), "--task", task]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("READY "):
        proc.kill()
        raise SystemExit(f"the fake server did not start: {line!r}")
    return proc, line.split(" ", 1)[1]


def write_config(path: Path, args: argparse.Namespace, base_url: str) -> None:
    settings = {
        "num_candidates": args.candidates,
        "num_trials": args.trials,
        "minibatch_size": args.minibatch,
        "full_eval_every": args.full_eval_every,
        "parallel_trials": args.parallel_trials,
        "summary_batches": 1,
        "proposer_max_tokens": 60,
    }
    config = {
        "task": args.task,
        "optimizer": "mipro",
        "settings": settings,
        "models": {"task": f"openai/fake@{base_url}"},
        "splits": {"train": args.n_train, "val": args.n_val, "test": args.n_test},
        "seed": args.seed,
        "max_tokens": 16,
        "concurrency": args.concurrency,
    }
    path.write_text(json.dumps(config, indent=2))  # JSON is YAML


def round_trips(url: str, db: str) -> int:
    import psycopg

    admin = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s", (db,)
        ).fetchone()
    return int(row[0]) if row else 0


def read_row(processes: int, url: str, wall_s: float, load: list[float], before: int, db: str) -> Row:
    from prompthone.store import RunStore

    store = RunStore(url, read_only=True)
    try:
        trials = store.trials()
        calls = store.lm_calls()
        result = store.run_row().get("result") or {}
        events = store.events()
    finally:
        store.close()
    by_process = Counter(str(c.get("worker") or "?") for c in calls if not c["cached"])
    # the search: from the leader's last step before the first search trial (bootstrapping and proposals
    # are the leader's alone) to the last trial; trial 0 is the start's full evaluation
    search = trials[1:]
    first = search[0]["ts"] if search else 0.0
    begun = max((e["ts"] for e in events if e["kind"] in ("proposal", "step", "bootstrap") and e["ts"] < first),
                default=trials[0]["ts"] if trials else 0.0)  # fmt: skip
    time.sleep(1.0)  # statistics reach pg_stat_database when a backend reports them (at the latest, when it ends)
    after = round_trips(url, db)
    return Row(
        processes=processes,
        wall_s=wall_s,
        trials=[(t["candidate"], round(t["score"], 9), t["n"]) for t in trials],
        search_trials=len(search),
        trial_span_s=(search[-1]["ts"] - begun) if search else 0.0,
        calls_by_process=dict(sorted(by_process.items())),
        round_trips=after - before,
        test=(result.get("final_test") or {}).get("score"),
        load=load,
    )


def run_row(processes: int, args: argparse.Namespace, pg: Any, base_url: str, work: Path, console: Console) -> Row:
    db = f"bench_workers_{processes}_{int(time.time())}"
    url = create_database(pg.url_template, db)
    cfg = work / f"config-{processes}.json"
    write_config(cfg, args, base_url)
    before = round_trips(pg.url_template.format(db=db), db)
    env = {**os.environ, "PROMPTHONE_NO_CACHE": "1"}
    cmd = [sys.executable, "-m", "prompthone", "optimize", str(cfg), "--store", url, "--workers", str(processes - 1),
           "--out", str(work / f"runs-{processes}")]  # fmt: skip
    t0 = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        console.print(done.stdout[-3000:], done.stderr[-3000:])
        raise SystemExit(f"row {processes}: `prompthone optimize` exited {done.returncode}")
    return read_row(processes, url, wall, list(os.getloadavg()), before, db)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--processes", default="1,2,4", help="rows: processes working on the run (leader + workers)")
    p.add_argument("--latency-ms", type=float, default=400.0, help="the fake server's fixed latency per request")
    p.add_argument("--concurrency", type=int, default=4, help="requests in flight per process")
    p.add_argument("--task", default="trec")
    p.add_argument("--n-train", type=int, default=50)
    p.add_argument("--n-val", type=int, default=100)
    p.add_argument("--n-test", type=int, default=40)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--parallel-trials", type=int, default=8)
    p.add_argument("--candidates", type=int, default=6)
    p.add_argument("--minibatch", type=int, default=35)
    p.add_argument("--full-eval-every", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--smoke", action="store_true", help="a tiny run of each row; writes no results")
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "workers.jsonl")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        args.latency_ms, args.trials, args.parallel_trials, args.n_val, args.n_test = 50.0, 6, 4, 20, 10
        args.n_train, args.minibatch, args.full_eval_every, args.candidates = 20, 8, 3, 2
    counts = [int(x) for x in args.processes.split(",") if x.strip()]
    if not counts or min(counts) < 1:
        raise SystemExit(f"--processes takes numbers >= 1, like 1,2,4 (got {args.processes!r})")
    console = Console(width=max(Console().width, 120))
    server, base_url = start_fake_server(args.latency_ms, args.task)
    rows: list[Row] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bench-workers-") as tmp, postgres_instance() as pg:
            for n in counts:
                console.rule(f"{n} process(es): the leader and {n - 1} worker(s)")
                rows.append(run_row(n, args, pg, base_url, Path(tmp), console))
                console.print(json.dumps(rows[-1].as_dict()))
    finally:
        server.kill()
        server.wait()

    base = next((r for r in rows if r.processes == 1), rows[0])
    same = all(r.trials == base.trials for r in rows)
    table = Table(title=f"MIPRO, {args.trials} trials ({args.parallel_trials} in flight), fake server "
                        f"{args.latency_ms:.0f} ms, {args.concurrency} requests per process")  # fmt: skip
    for col in ("processes", "trials / min", "ratio", "wall s", "ratio", "DB round trips / trial", "paid calls"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r.processes), f"{r.trial_rate:.1f}", f"{r.trial_rate / base.trial_rate:.2f}x",
                      f"{r.wall_s:.1f}", f"{base.wall_s / r.wall_s:.2f}x",
                      f"{r.round_trips / max(1, len(r.trials)):.1f}",
                      " ".join(f"{v}" for v in r.calls_by_process.values()))  # fmt: skip
    console.print(table)
    console.print(f"the same trials (candidates, scores, n) in every row: {same}")
    if args.smoke:
        return 0 if same else 1
    meta = {
        **run_meta(),
        "spec": {k: getattr(args, k) for k in ("task", "n_train", "n_val", "n_test", "trials", "parallel_trials",
                                               "candidates", "minibatch", "full_eval_every", "concurrency",
                                               "latency_ms", "seed")},
    }  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a") as f:
        for r in rows:
            ratios = {"trial_rate": round(r.trial_rate / base.trial_rate, 3), "wall": round(base.wall_s / r.wall_s, 3)}
            line = {**meta, **r.as_dict(), "ratio_to_1": ratios, "same_trials_as_1": r.trials == base.trials}
            f.write(json.dumps(line) + "\n")
    console.print(f"rows appended to {args.results}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
