"""The demos DSPy's MIPROv2 chose, rendered by prompthone and by DSPy: is the gap in the search or the layout?

    .venv/bin/python benchmarks/chosen_demos.py                 # every row not yet in the results file
    .venv/bin/python benchmarks/chosen_demos.py --report        # the table of what is there, spending nothing

For each DSPy MIPROv2 row of `compare_dspy.py` that recorded its chosen program (instruction and demos;
`--rows`, default: the trec-label result files), this scores that very program on the row's test split
(same task, seed and split sizes) under each prompthone prompt format and under DSPy's own rendering
(DSPy itself runs it, from `.venv-dspy`, through `dspy_formats_side.py`). Only the layout differs
between the columns: instruction, demos (in DSPy's order), examples, metric, model, server and
max_tokens are the same. DSPy's selection favoured this program under its own layout (it was the best
of its search on validation), so the comparison leans towards DSPy; a prompthone format that matches it
here has closed the layout gap.

Why this exists: at MIPROv2's light defaults on trec-label, prompthone's zero-shot start beat DSPy's by
about 10 points while its MIPRO result stayed below MIPROv2's. Scoring DSPy's chosen programs in
prompthone's layouts found the loss behind demos (issue 15), which demo layout revision 2 closed for `tags`.

Caching, so a rerun pays for nothing twice: rows are appended to `--results` (with every example's
score) and skipped on a rerun when their key (source row, format, layout revision) is there; prompthone's
answers are in a response-cache file and DSPy's in its own disk cache, under `--cache-dir`. The server
listens on a fixed `--port`, part of the cache keys.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import formats
from prompthone.evaluate.stats import mean_ci
from prompthone.lm import LM
from prompthone.lm.local.assemble import resolve_gguf
from prompthone.metrics import ExactMatch
from prompthone.program.params import PROMPT_FORMATS
from prompthone.tasks import get_task
from prompthone.tasks.splits import task_splits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from model_server import llama_server  # noqa: E402

DEFAULT_ROWS = sorted(str(p) for p in (ROOT / "docs" / "results").glob("compare_dspy-trec-label-seed*.jsonl"))
#: tasks whose program is the formats bench of the same name (one Predict module, same signature)
BENCH_OF_TASK = {"trec-label": "trec-label"}


def chosen_programs(paths: list[str]) -> list[dict[str, Any]]:
    """DSPy MIPROv2 rows that recorded their chosen program's demos, one per row key (the latest)."""
    out: dict[str, dict[str, Any]] = {}
    for path in paths:
        for line in Path(path).read_text().splitlines():
            row = json.loads(line) if line.strip() else {}
            program = (row.get("best_program") or {}).get("classify") or {}
            if row.get("method") == "dspy-miprov2" and program.get("demo_fields") and row["task"] in BENCH_OF_TASK:
                out[row["row_key"]] = row
    return list(out.values())


def row_key(source: dict[str, Any], fmt: str) -> tuple[str, str, int]:
    """A (source row, layout) is measured again when prompthone's layout of prompts with demos changed."""
    return (
        source["row_key"],
        fmt,
        formats.layout_revision(fmt, len(source["best_program"]["classify"]["demo_fields"])),
    )


def score(source: dict[str, Any], fmt: str, lm: LM, url: str, args: argparse.Namespace) -> dict[str, Any]:
    """The source row's chosen program on its test split, in `fmt`."""
    task = get_task(source["task"])
    sizes = source["key"]["splits"]
    parts = task_splits(
        task, n_train=sizes["train"], n_val=sizes["val"], n_test=sizes["test"], seed=source["key"]["seed"],
        root=args.data_root,
    )  # fmt: skip
    program = source["best_program"]["classify"]
    label = next(iter(formats.BENCHES[BENCH_OF_TASK[source["task"]]].outputs))
    bench = dataclasses.replace(
        formats.BENCHES[BENCH_OF_TASK[source["task"]]],
        instruction=program["instruction"],
        metric=lambda: ExactMatch(label_field=label, pred_field=label),
    )
    demos = [{k: v for k, v in d.items() if k in (*bench.inputs, *bench.outputs)} for d in program["demo_fields"]]
    test = list(parts.test)
    if fmt == formats.DSPY:
        return formats.score_dspy(bench, test, url, args.alias, args, demos)
    return formats.score_prompthone(bench, fmt, test, lm, args.data_root, demos)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per source row, one column per layout (accuracy, CI), and DSPy's own test score."""
    fmts = [f for f in (formats.DSPY, *PROMPT_FORMATS) if any(r["format"] == f for r in rows)]
    lines = [
        "| task, seed | demos | DSPy's row (test) | " + " | ".join(fmts) + " |",
        "|---|---|---|" + "---|" * len(fmts),
    ]
    by_source: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:  # the latest row of a (source, format) wins
        by_source.setdefault(r["source_row_key"], {})[r["format"]] = r
    for by_fmt in by_source.values():
        first = next(iter(by_fmt.values()))
        cells = [
            f"{100 * by_fmt[f]['mean']:.1f} ({100 * by_fmt[f]['lo']:.0f}-{100 * by_fmt[f]['hi']:.0f})"
            if f in by_fmt
            else ""
            for f in fmts
        ]
        source = f"{100 * first['source_test']:.1f} n={first['n']}"
        head = f"| {first['task']}, {first['seed']} | {first['demos']} | {source} | "
        lines.append(head + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", nargs="*", default=DEFAULT_ROWS, help="compare_dspy result files to take DSPy rows from")
    p.add_argument("--formats", default=",".join((formats.DSPY, *PROMPT_FORMATS)))
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "chosen_demos.jsonl"))
    p.add_argument("--cache-dir", default=str(ROOT / "benchmarks" / ".cache" / "chosen_demos"))
    p.add_argument("--model", default="qwen2.5-coder-0.5b")
    p.add_argument("--alias", default="qwen0.5b")
    p.add_argument("--port", type=int, default=18441, help="the model server's port (part of the cache keys)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--data-root", default=None)
    p.add_argument("--dspy-python", default=str(ROOT / ".venv-dspy" / "bin" / "python"))
    p.add_argument("--report", action="store_true", help="print the table of the results file and stop")
    args = p.parse_args()
    results = Path(args.results)
    if args.report:
        print(table(formats.load_rows(results)))
        return
    fmts = [f.strip() for f in args.formats.split(",") if f.strip()]
    bad = [f for f in fmts if f not in (formats.DSPY, *PROMPT_FORMATS)]
    if bad:
        raise SystemExit(f"--formats: unknown {bad}; expected some of {[formats.DSPY, *PROMPT_FORMATS]}")
    sources = chosen_programs(args.rows)
    if not sources:
        raise SystemExit(f"--rows: no DSPy MIPROv2 row with its chosen demos in {args.rows}")
    done = {(r["source_row_key"], r["format"], r.get("demo_layout_revision", 1)) for r in formats.load_rows(results)}
    todo = [(s, f) for s in sources for f in fmts if row_key(s, f) not in done]
    if todo:
        Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
        results.parent.mkdir(parents=True, exist_ok=True)
        gguf, _ = resolve_gguf(args.model)
        with llama_server(
            gguf, alias=args.alias, n_ctx=4096, threads=args.threads, timeout_s=600, port=args.port
        ) as url:
            lm = LM(
                f"openai/{args.alias}@{url}", cache=str(Path(args.cache_dir) / "responses.sqlite"), max_concurrency=1
            )
            for source, fmt in todo:
                t0, load0 = time.perf_counter(), os.getloadavg()[0]
                out = score(source, fmt, lm, url, args)
                mean, lo, hi = mean_ci(out["scores"])
                row = {
                    "task": source["task"], "seed": source["key"]["seed"], "source_row_key": source["row_key"],
                    "source_test": source["test"]["score"],
                    "demos": len(source["best_program"]["classify"]["demo_fields"]),
                    "format": fmt, "demo_layout_revision": row_key(source, fmt)[2], "n": len(out["scores"]),
                    "mean": mean, "lo": lo, "hi": hi, **out, "model": args.model,
                    "wall_s": round(time.perf_counter() - t0, 1), "load_avg_start": load0,
                    "date": datetime.now(UTC).isoformat(timespec="seconds"), "commit": formats.git_commit(),
                    "machine": formats.machine(), "command": " ".join(sys.argv),
                }  # fmt: skip
                with results.open("a") as fh:
                    fh.write(json.dumps(row) + "\n")
                print(f"{row['task']} seed {row['seed']} {fmt}: {100 * mean:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) "
                      f"n={row['n']} unparsed={out['parse_failures']} wall={row['wall_s']}s", flush=True)  # fmt: skip
    print(table(formats.load_rows(results)))


if __name__ == "__main__":
    main()
