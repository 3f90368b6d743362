"""Overhead against the limit: prompthone's Evaluator and DSPy's Evaluate on one fake server (issue 8, item 3).

    make bench-dspy-env      # once: DSPy in .venv-dspy
    .venv/bin/python benchmarks/dspy_overhead.py [--examples 1000] [--concurrency 64] [--latency-ms 50]
                                                 [--repeats 3]

The fake OpenAI server (`prompthone.testing.fake_openai_server`) runs in its own process and answers
every request after a fixed latency with a deterministic answer. With `concurrency` requests in flight
no client can do better than concurrency / latency requests per second (64 / 50 ms = 1280/s): the
server's limit. Both sides score the same number of examples with `concurrency` in flight and caching
off, and each row reports its throughput as a fraction of that limit and its client CPU time per call:

* prompthone: `Evaluator(Predict("question -> answer"), ExactMatch(), LM("openai/fake@URL", cache=False,
  max_concurrency=C), concurrency=C, score_cache=ScoreCache())` in this process (SDK transport: the
  backend's default); each example must score 1.0 (the labels are the server's echo answers);
* DSPy: `dspy.Evaluate(devset, metric, num_threads=C)` over `dspy.Predict("question -> answer")` with
  `dspy.LM("openai/fake", cache=False)` and DSPy's memory and disk caches off, in `.venv-dspy` (its
  own process, started by this script; `benchmarks/dspy_side.py`). The adapter is ChatAdapter with its
  parser replaced by "the whole completion is the answer" (`WholeTextAdapter`): the fake server echoes
  the prompt instead of writing DSPy's `[[ ## answer ## ]]` sections, and with the stock parser every
  example would fail and be sent again through the JSON fallback. Each example must come back with
  the echo as its answer.

Rows run alternately (prompthone, DSPy, prompthone, ...) so load from other processes hits both alike;
the table shows the median and range of `--repeats` runs. CPU per call is each process's own CPU time
(`time.process_time`, all threads) divided by the examples: DSPy's runs in its own process, so its
import and warm-up are not counted, nor are prompthone's.

Targets (issue 8): prompthone >= 0.9x the server limit, and >= 1.5x DSPy's throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from rich.console import Console
from rich.table import Table

from eval_throughput import make_examples
from machine import cpu_model
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.lm.openai_backend import resolve_transport
from prompthone.metrics import ExactMatch
from prompthone.program import Predict
from prompthone.testing import FakeOpenAIServerProcess

ROOT = Path(__file__).resolve().parents[1]
DSPY_PYTHON = ROOT / ".venv-dspy" / "bin" / "python"
LIMIT_TARGET = 0.9
VS_DSPY_TARGET = 1.5


def server_requests(base_url: str) -> int | None:
    """Requests the fake server has received, from its stats endpoint (None if it has none)."""
    try:
        with urllib.request.urlopen(base_url.removesuffix("/v1") + "/_fake/stats", timeout=5) as r:
            return int(json.loads(r.read())["requests_received"])
    except (OSError, ValueError, KeyError):
        return None


def run_dspy_side(job: dict, python: Path = DSPY_PYTHON) -> dict:
    """Run one job of `benchmarks/dspy_side.py` under the DSPy venv; its JSON answer."""
    if not python.exists():
        raise SystemExit(f"{python} not found: run `make bench-dspy-env` first (DSPy lives in its own venv)")
    proc = subprocess.run(
        [str(python), str(ROOT / "benchmarks" / "dspy_side.py")],
        input=json.dumps(job),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"the DSPy side failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


async def prompthone_runs(base_url: str, n: int, conc: int, repeats: int, warm: bool) -> list[dict]:
    lm = LM(f"openai/fake@{base_url}", cache=False, max_concurrency=conc, timeout_s=60.0)
    predict = Predict("question -> answer")
    metric = ExactMatch()
    out = []
    if warm:
        await Evaluator(predict, metric, lm, concurrency=conc, temperature=0.0, max_tokens=64).evaluate(
            None, make_examples(2 * conc, prefix="warm")
        )
    for _ in range(repeats):
        examples = make_examples(n)
        ev = Evaluator(predict, metric, lm, concurrency=conc, score_cache=ScoreCache(), temperature=0.0, max_tokens=64)
        t0, c0 = time.perf_counter(), time.process_time()
        res = await ev.evaluate(None, examples)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if res.n_errors or res.n_parse_failures or res.mean != 1.0:
            raise SystemExit(f"prompthone: unexpected evaluation result: {res.summary()}")
        out.append({"wall_s": wall, "cpu_s": cpu, "ok": res.n_scored})
    await lm.aclose()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=64)
    p.add_argument("--latency-ms", type=float, default=50.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--dspy-python", type=Path, default=DSPY_PYTHON)
    args = p.parse_args()
    n, conc, lat = args.examples, args.concurrency, args.latency_ms / 1000.0
    limit = conc / lat
    console = Console(width=max(Console().width, 130))
    results: dict[str, list[dict]] = {"prompthone Evaluator": [], "DSPy Evaluate": []}
    dspy_version = "?"
    with FakeOpenAIServerProcess(latency_ms=args.latency_ms) as base_url:
        load0 = os.getloadavg()[0]
        for r in range(args.repeats):
            results["prompthone Evaluator"] += asyncio.run(prompthone_runs(base_url, n, conc, 1, warm=True))
            job = {"job": "overhead", "base_url": base_url, "n": n, "concurrency": conc, "repeats": 1}
            before = server_requests(base_url)
            side = run_dspy_side(job, args.dspy_python)
            after = server_requests(base_url)
            if before is not None and after is not None and after - before != n + 2 * conc:
                raise SystemExit(f"DSPy sent {after - before} requests for {n} examples + {2 * conc} warm-up")
            dspy_version = side["dspy"]
            results["DSPy Evaluate"] += side["runs"]
            console.print(f"round {r + 1}/{args.repeats} done")
        load1 = os.getloadavg()[0]
    for name, runs in results.items():
        bad = [x["ok"] for x in runs if x["ok"] != n]
        if bad:
            raise SystemExit(f"{name}: only {bad} of {n} examples came back right")

    table = Table(
        title=f"{n} examples, {conc} in flight, server latency {args.latency_ms:g} ms: server limit "
        f"{limit:.0f} calls/s (ideal wall {n / limit:.3f} s); median of {args.repeats} (min-max)"
    )
    for col in ("client", "wall s", "calls/s", "fraction of server limit", "CPU ms per call"):
        table.add_column(col, justify="left" if col == "client" else "right")
    medians: dict[str, float] = {}
    for name, runs in results.items():
        tput = [n / x["wall_s"] for x in runs]
        cpu = [1000 * x["cpu_s"] / n for x in runs]
        walls = [x["wall_s"] for x in runs]
        medians[name] = statistics.median(tput)
        table.add_row(
            name,
            f"{statistics.median(walls):.2f} ({min(walls):.2f}-{max(walls):.2f})",
            f"{statistics.median(tput):.0f} ({min(tput):.0f}-{max(tput):.0f})",
            f"{statistics.median(tput) / limit:.3f} ({min(tput) / limit:.3f}-{max(tput) / limit:.3f})",
            f"{statistics.median(cpu):.2f} ({min(cpu):.2f}-{max(cpu):.2f})",
        )
    console.print(table)
    ph, ds = medians["prompthone Evaluator"], medians["DSPy Evaluate"]
    console.print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}; dspy {dspy_version}; "
        f"prompthone's HTTP transport {resolve_transport(None)}; "
        f"load average {load0:.1f} before, {load1:.1f} after; date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )
    ok1, ok2 = ph / limit >= LIMIT_TARGET, ph / ds >= VS_DSPY_TARGET
    console.print(f"{'PASS' if ok1 else 'MISSED'}: prompthone at {ph / limit:.3f}x the server limit (target >= 0.9x)")
    console.print(f"{'PASS' if ok2 else 'MISSED'}: prompthone at {ph / ds:.2f}x DSPy's throughput (target >= 1.5x)")
    return 0 if ok1 and ok2 else 1


if __name__ == "__main__":
    sys.exit(main())
