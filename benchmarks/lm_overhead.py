"""How much time the LM layer adds on top of the raw `openai` SDK, and what a cache hit costs.

    .venv/bin/python benchmarks/lm_overhead.py [--calls 500] [--warmup 50]

The fake OpenAI server runs with 0 ms latency in a separate process (so it does not share this
process's GIL), and calls are made one at a time, so every number is client-side cost plus one
loopback round trip. Raw SDK calls and `LM` calls (cache off) are interleaved pair by pair, so drift
in the machine's speed affects both alike; the added overhead is the median of LM minus the median of
raw, and the median of the per-pair differences is shown as a cross-check. On a busy machine wall
times stretch, so each row also shows this process's CPU time per call (`time.process_time`), which
other processes affect less. Cache hits are timed on `LM.complete` end to end (building the request,
hashing the key, the SQLite read).

Targets: added overhead < 1 ms median per call, cache hit < 1 ms median.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import openai
from rich.console import Console
from rich.table import Table

from machine import cpu_model
from prompthone.lm import LM
from prompthone.lm.openai_backend import OpenAIBackend, resolve_transport
from prompthone.testing import FakeOpenAIServerProcess

MESSAGES = [
    {"role": "system", "content": "You answer arithmetic questions with a single number."},
    {"role": "user", "content": "Natalia sold clips to 48 of her friends in April. How many in May?"},
]
PARAMS = {"temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": 0}
OVERHEAD_TARGET_MS = 1.0
CACHE_HIT_TARGET_MS = 1.0


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


async def measure(base_url: str, calls: int, warmup: int) -> dict[str, list[float]]:
    lm_off = LM(OpenAIBackend("fake", base_url=base_url), cache=False, timeout_s=30.0)
    # the raw SDK over the same HTTP transport the backend picked, so the difference is what LM adds
    http = openai.DefaultAioHttpClient if lm_off.backend.transport == "aiohttp" else openai.DefaultAsyncHttpxClient
    raw = openai.AsyncOpenAI(api_key="bench", base_url=base_url, max_retries=0, timeout=30.0, http_client=http())
    with tempfile.TemporaryDirectory() as tmp:
        lm_on = LM(OpenAIBackend("fake", base_url=base_url), cache=Path(tmp) / "bench.sqlite", timeout_s=30.0)

        async def raw_call() -> str:
            r = await raw.chat.completions.create(model="fake", messages=MESSAGES, **PARAMS)
            return r.choices[0].message.content or ""

        async def lm_call(lm: LM) -> str:
            return (await lm.complete(MESSAGES, **PARAMS)).text

        expected = await raw_call()
        for _ in range(warmup):
            await raw_call()
            await lm_call(lm_off)
        keys = ("raw", "lm", "pair", "hit", "raw_cpu", "lm_cpu", "pair_cpu", "hit_cpu")
        results: dict[str, list[float]] = {k: [] for k in keys}
        wall, cpu = time.perf_counter, time.process_time
        for _ in range(calls):
            t0, c0 = wall(), cpu()
            await raw_call()
            t1, c1 = wall(), cpu()
            text = await lm_call(lm_off)
            t2, c2 = wall(), cpu()
            results["raw"].append(t1 - t0)
            results["lm"].append(t2 - t1)
            results["pair"].append((t2 - t1) - (t1 - t0))
            results["raw_cpu"].append(c1 - c0)
            results["lm_cpu"].append(c2 - c1)
            results["pair_cpu"].append((c2 - c1) - (c1 - c0))
        if text != expected:
            raise SystemExit(f"LM and raw SDK answers differ: {text!r} != {expected!r}")

        await lm_call(lm_on)  # fill the cache
        for _ in range(warmup):
            await lm_call(lm_on)
        for _ in range(calls):
            t0, c0 = wall(), cpu()
            c = await lm_on.complete(MESSAGES, **PARAMS)
            results["hit"].append(wall() - t0)
            results["hit_cpu"].append(cpu() - c0)
            if not c.cached:
                raise SystemExit("expected a cache hit")
        if lm_off.usage.calls != calls + warmup or lm_on.usage.cache_hits != calls + warmup:
            raise SystemExit(f"unexpected usage: {lm_off.usage} / {lm_on.usage}")
        await lm_on.aclose()
    await lm_off.aclose()
    await raw.close()
    return results


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--calls", type=int, default=500, help="measured calls per series (default 500)")
    p.add_argument("--warmup", type=int, default=50, help="unmeasured calls first (default 50)")
    args = p.parse_args()
    console = Console(width=max(Console().width, 132))  # keep the table unwrapped in logs and pipes
    with FakeOpenAIServerProcess(latency_ms=0) as base_url:
        res = asyncio.run(measure(base_url, args.calls, args.warmup))

    ms = {k: [v * 1000 for v in vals] for k, vals in res.items()}
    med = {k: statistics.median(v) for k, v in ms.items()}
    p90 = {k: percentile(v, 0.9) for k, v in ms.items()}
    overhead = med["lm"] - med["raw"]

    table = Table(title=f"LM layer overhead ({args.calls} sequential calls each, 0 ms fake server)")
    table.add_column("measurement")
    table.add_column("median ms", justify="right")
    table.add_column("p90 ms", justify="right")
    table.add_column("ratio to raw", justify="right")
    table.add_column("client CPU ms (median)", justify="right")

    def row(label: str, key: str, ratio: bool = True) -> None:
        table.add_row(
            label,
            f"{med[key]:.3f}",
            f"{p90[key]:.3f}",
            f"{med[key] / med['raw']:.2f}" if ratio else "",
            f"{med[key + '_cpu']:.3f}",
        )

    row("raw openai.AsyncOpenAI call", "raw")
    row("LM.complete, cache off", "lm")
    table.add_row(
        "added overhead (median LM - median raw)",
        f"{overhead:.3f}",
        "",
        "",
        f"{med['lm_cpu'] - med['raw_cpu']:.3f}",
    )
    row("added overhead (median of paired diffs)", "pair", ratio=False)
    row("LM.complete, cache hit", "hit")
    console.print(table)
    console.print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}; Python {platform.python_version()}, "
        f"openai {openai.__version__}, transport {resolve_transport(None)} (PROMPTHONE_HTTP_TRANSPORT to change)"
    )
    ok_overhead = overhead < OVERHEAD_TARGET_MS
    ok_hit = med["hit"] < CACHE_HIT_TARGET_MS
    for ok, what in (
        (ok_overhead, f"added overhead {overhead:.3f} ms median < {OVERHEAD_TARGET_MS} ms"),
        (ok_hit, f"cache hit {med['hit']:.3f} ms median < {CACHE_HIT_TARGET_MS} ms"),
    ):
        console.print(f"[{'green' if ok else 'red'}]{'PASS' if ok else 'FAIL'}[/] {what}")
    return 0 if ok_overhead and ok_hit else 1


if __name__ == "__main__":
    sys.exit(main())
