"""What the query module's prompt changed in a two-stage HotPotQA run: retrieval, not only the answer
(issue 15, item 6).

    .venv/bin/python benchmarks/hotpot_retrieval.py prompthone-runs/compare-dspy/runs/mipro-hotpotqa-500-...

Spends nothing: a run keeps every scored example's outputs in its `run.sqlite` (the score cache), and
`MultiHopQA` returns its `search_query` beside the answer. For the start program and the chosen one,
on the run's test split, this re-runs only the BM25 search (the program's own index, k as in the
program) on each stored query and checks the retrieved passages' titles against the question's
`supporting_titles` (HotPotQA's supporting facts): whether any or all of them were retrieved, and
the answer score with and without all of them. Prints a Markdown table and a few questions whose
query changed; appends one JSON line per (run, program) to `--results`.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from prompthone.data.example import Example
from prompthone.evaluate.stats import mean_ci
from prompthone.tasks import get_task
from prompthone.tasks.programs import MultiHopQA
from prompthone.tasks.splits import task_splits

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Retrieval:
    """One program's test questions: answer score and what its queries retrieved."""

    program: str  # "start" or "chosen"
    n: int
    answer: float
    answer_ci95: tuple[float, float]
    any_supporting: float  # share of questions with at least one supporting passage retrieved
    all_supporting: float  # ... with every supporting passage retrieved
    answer_when_all: float | None  # answer score on the questions with every supporting passage retrieved
    answer_otherwise: float | None
    query_words: float  # mean words per query
    query_is_question: float  # share of queries that are the question as written


def title_of(passage: str) -> str:
    return passage.split(" | ", 1)[0]


def retrieval(
    name: str, program: MultiHopQA, examples: Sequence[Example], records: dict[str, dict[str, Any]]
) -> Retrieval:
    """`name`'s numbers over the `examples` that have a stored record (every test example, for a run that
    finished)."""
    scores, any_hit, all_hit, words, same = [], [], [], [], []
    for ex in examples:
        rec = records.get(ex.id)
        if rec is None:
            continue
        query = str(rec.get("outputs", {}).get("search_query") or ex.inputs["question"])
        titles = {title_of(p) for p in program.retrieve(query)}
        gold = set(ex.labels["supporting_titles"])
        scores.append(float(rec.get("score") or 0.0))
        any_hit.append(bool(titles & gold))
        all_hit.append(gold <= titles)
        words.append(len(query.split()))
        same.append(query.strip() == ex.inputs["question"].strip())
    n = len(scores)
    if not n:
        raise SystemExit(f"{name}: no stored test record; did the run score the test split?")
    with_all = [s for s, a in zip(scores, all_hit, strict=True) if a]
    without = [s for s, a in zip(scores, all_hit, strict=True) if not a]
    mean, lo, hi = mean_ci(scores)
    return Retrieval(
        program=name,
        n=n,
        answer=mean,
        answer_ci95=(lo, hi),
        any_supporting=sum(any_hit) / n,
        all_supporting=sum(all_hit) / n,
        answer_when_all=sum(with_all) / len(with_all) if with_all else None,
        answer_otherwise=sum(without) / len(without) if without else None,
        query_words=sum(words) / n,
        query_is_question=sum(same) / n,
    )


def stored_records(db: Path, candidate: str) -> dict[str, dict[str, Any]]:
    """The score cache's records of `candidate`, by example id (the last one kept per example)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = con.execute("SELECT example_id, record FROM scores WHERE candidate = ?", (candidate,)).fetchall()
    finally:
        con.close()
    return {ex_id: json.loads(record) for ex_id, record in rows}


def analyse(run_dir: Path, data_root: str | None = None) -> tuple[list[Retrieval], list[tuple[str, str, str]]]:
    """The start's and the chosen program's numbers on the run's test split, and up to five questions
    whose query changed (question, start query, chosen query)."""
    summary = json.loads((run_dir / "summary.json").read_text())
    task = get_task(summary["task"])
    splits = summary["splits"]
    parts = task_splits(
        task,
        n_train=splits["train"],
        n_val=splits["val"],
        n_test=splits["test"],
        seed=int(summary["seed"]),
        root=data_root,
    )
    program = task.make_program(data_root)
    if not isinstance(program, MultiHopQA):
        raise SystemExit(f"{run_dir}: task {summary['task']!r} is not the two-stage HotPotQA program")
    db = run_dir / "run.sqlite"
    start = stored_records(db, summary["start_candidate"])
    chosen = stored_records(db, summary["best_candidate"])
    out = [retrieval("start", program, parts.test, start), retrieval("chosen", program, parts.test, chosen)]
    changed = []
    for ex in parts.test:
        a = (start.get(ex.id) or {}).get("outputs", {}).get("search_query")
        b = (chosen.get(ex.id) or {}).get("outputs", {}).get("search_query")
        if a and b and a != b and len(changed) < 5:
            changed.append((ex.inputs["question"], a, b))
    return out, changed


def markdown(run: str, rows: list[Retrieval]) -> str:
    def pct(x: float | None) -> str:
        return "-" if x is None else f"{x:.3f}"

    lines = [
        f"run `{run}`",
        "",
        "| program | n | answer (95% CI) | any supporting passage retrieved | all retrieved | answer when all "
        "| answer otherwise | query words | query = question |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lo, hi = r.answer_ci95
        lines.append(
            f"| {r.program} | {r.n} | {r.answer:.3f} ({lo:.3f}-{hi:.3f}) | {pct(r.any_supporting)} | "
            f"{pct(r.all_supporting)} | {pct(r.answer_when_all)} | {pct(r.answer_otherwise)} | "
            f"{r.query_words:.1f} | {pct(r.query_is_question)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dirs", nargs="+", type=Path, help="run folders (summary.json, run.sqlite)")
    p.add_argument("--data-root")
    p.add_argument("--results", type=Path, default=ROOT / "docs" / "results" / "hotpot_retrieval.jsonl")
    args = p.parse_args(argv)
    for run_dir in args.run_dirs:
        if not (run_dir / "summary.json").exists():
            raise SystemExit(f"{run_dir}: no summary.json (a finished run's folder is expected)")
        rows, changed = analyse(run_dir, args.data_root)
        print(markdown(run_dir.name, rows))
        for question, a, b in changed:
            print(f"\n- {question}\n  start query:  {a}\n  chosen query: {b}")
        print()
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with open(args.results, "a") as f:
            for r in rows:
                f.write(json.dumps({"run": run_dir.name, **asdict(r)}) + "\n")


if __name__ == "__main__":
    main()
