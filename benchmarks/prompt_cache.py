"""The model server's prompt cache, for programs of several modules (issue 15, items 5-6).

    .venv/bin/python benchmarks/prompt_cache.py [--rounds 3] [--prefix-words 1700] [--threads 2]
        [--results docs/results/prompt_cache.jsonl]

`llama_cpp.server` keeps the prompt it evaluated last. A two-stage program (HotPotQA's query and answer
modules, each with its demos) alternates between two long prompt prefixes, so each call evaluates its
module's prefix again. Rows, each on a fresh server of the embedded 0.5B model, the same requests in the
same order (two system prompts of `--prefix-words` words alternating, a short user turn each, greedy,
12 tokens):

* `none`: the server as the tests start it (no cache);
* `llama-cpp`: llama-cpp-python's own RAM cache (`--cache true`);
* `lean`: the same cache through `tests/llama_server_main.py`, which keeps llama.cpp states only.

Printed per row: seconds per request in order, total, server RSS at the end, and whether the replies
equal the `none` row's. The `llama-cpp` row is what made the lean launcher necessary (its entries copy
every prompt token's logits): `--skip-llama-cpp` leaves it out.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from machine import run_meta
from prompthone.lm.local.assemble import resolve_gguf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
import model_server  # noqa: E402

PORT = 8399


def prefixes(words: int) -> tuple[str, str]:
    n = max(1, words // 17)
    a = "You answer from the context. " + " ".join(
        f"Passage {i}: the quick brown fox number {i} jumps over the lazy dog near river {i * 7}." for i in range(n)
    )
    b = "You write search queries. " + " ".join(
        f"Example {i}: question about city {i} and its mayor {i * 3}." for i in range(n)
    )
    return a, b


def ask(url: str, system: str, user: str) -> tuple[float, str]:
    body = {"model": "m", "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
            "max_tokens": 12, "temperature": 0}  # fmt: skip
    req = urllib.request.Request(
        url + "/chat/completions", data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=900) as r:
        text = json.loads(r.read())["choices"][0]["message"]["content"]
    return time.perf_counter() - t0, text


def rss_mb(port: int) -> int:
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            cmdline = (status.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"--port {port} " in cmdline + " " and "llama" in cmdline:
            return int(status.read_text().split("VmRSS:")[1].split()[0]) // 1024
    return -1


def run_row(kind: str, gguf: Path, args: argparse.Namespace) -> dict[str, Any]:
    a, b = prefixes(args.prefix_words)
    cache = 0 if kind == "none" else 2 << 30
    times, replies = [], []
    own = ("--cache", "true", "--cache_type", "ram", "--cache_size", str(cache)) if kind == "llama-cpp" else ()
    server = model_server.llama_server(
        gguf, threads=args.threads, n_ctx=4096, port=PORT, prompt_cache_bytes=cache if kind == "lean" else 0,
        extra_args=own,  # the library's own cache, without the lean launcher
    )  # fmt: skip
    with server as url:
        for i in range(args.rounds):
            for system, user in ((a, f"Which river is near fox {i * 11}?"), (b, f"Who is mayor of city {i * 5}?")):
                t, text = ask(url, system, user)
                times.append(round(t, 2))
                replies.append(text)
                print(f"  {kind}: request {len(times)}: {t:.2f} s", flush=True)
        rss = rss_mb(PORT)
    return {"row": kind, "seconds": times, "total_s": round(sum(times), 1), "rss_mb": rss, "replies": replies}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--prefix-words", type=int, default=1700, help="about; 1700: 100 passages, ~2,000 tokens")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-llama-cpp", action="store_true")
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "prompt_cache.jsonl"))
    args = p.parse_args()
    gguf = resolve_gguf("qwen2.5-coder-0.5b")[0]
    kinds = ["none", "lean"] if args.skip_llama_cpp else ["none", "llama-cpp", "lean"]
    rows = [run_row(k, gguf, args) for k in kinds]
    meta = run_meta() | {"rounds": args.rounds, "prefix_words": args.prefix_words, "threads": args.threads}
    print("\n| server cache | seconds per request, in order | total | server RSS | replies as without a cache |")
    print("|---|---|---|---|---|")
    for r in rows:
        r["same_replies"] = r["replies"] == rows[0]["replies"]
        print(f"| {r['row']} | {', '.join(map(str, r['seconds']))} | {r['total_s']} s | {r['rss_mb']} MB | "
              f"{'yes' if r['same_replies'] else 'NO'} |")  # fmt: skip
    Path(args.results).parent.mkdir(parents=True, exist_ok=True)
    with open(args.results, "a") as f:
        for r in rows:
            f.write(json.dumps(r | meta) + "\n")


if __name__ == "__main__":
    main()
