"""Issue 15's table: prompthone against DSPy at MIPROv2's light defaults, every task and seed, and the targets.

    .venv/bin/python benchmarks/dspy_targets.py            # the table and the verdicts, spending nothing

`compare_dspy.py` writes one results file per task and seed (`docs/results/compare_dspy-TASK-seedS.jsonl`),
where ablations, replays and rows of earlier defaults sit beside each other. This report picks, for each
task and seed of the side by side, the row each method's command gives *today*: it rebuilds the row key
from the documented command (`SIDE_BY_SIDE`) with the current code, so a default that changed what a
row means points at another key, and takes the latest row under that key (a row run again counts as
its last run). A task or seed without a results file, or a method without its row, shows as "not run".

The targets (issue 15): `mipro` at or above DSPy MIPROv2 on the mean over tasks and seeds and, on every
one, at least MIPROv2's lower 95% bound; the zero-shot start at least DSPy's rendering on every task;
`mipro`'s optimization at most half MIPROv2's wall time. Wall times come only from rows that paid for their
whole optimization (an answer file holding at most the zero-shot test answers at the start: a replayed or
resumed row's wall is what its last session paid) on a machine running nothing else (`ran_alone`); the
newest such row of the key is used even when a replay came after it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import compare_dspy as cd  # noqa: E402

#: the side by side's command per task, without --seed and --methods (docs/benchmarks.md, "At DSPy's own
#: light defaults"); settings outside a row's key (threads, n_ctx, the server's prompt cache) are left out
SIDE_BY_SIDE: dict[str, str] = {
    "trec-label": "--preset light --n-train 100 --n-val 100 --n-test 200",
    "bbh/sports_understanding": "--preset light --n-train 25 --n-val 100 --n-test 125 --max-tokens 256",
    "gsm8k": "--preset light --n-train 100 --n-val 100 --n-test 200 --max-tokens 384",
    "hotpotqa-500": "--preset light --n-train 100 --n-val 100 --n-test 200 --max-tokens 64",
}
#: the table's columns: prompthone's rows, then DSPy's
METHODS = ("zero-shot", "dspy-zero-shot", "mipro", "mipro-proposer", "dspy-miprov2")


@dataclass(frozen=True)
class Cell:
    """One method's row on one task and seed: its test score and, where it paid for the whole optimization,
    its wall time."""

    score: float
    lo: float
    hi: float
    n: int
    git: str
    wall_s: float | None


def results_paths(task: str, seed: int, results_dir: Path) -> list[Path]:
    """The task and seed's results file and its companions (`...-seedS-wall.jsonl`: a row measured again
    apart, such as a wall time on a quiet machine)."""
    stem = f"compare_dspy-{task.replace('/', '-')}-seed{seed}"
    return [results_dir / f"{stem}.jsonl", *sorted(results_dir.glob(f"{stem}-*.jsonl"))]


def seeds_of(task: str, results_dir: Path) -> list[int]:
    """The seeds with a results file for this task."""
    prefix = f"compare_dspy-{task.replace('/', '-')}-seed"
    seeds = []
    for p in results_dir.glob(f"{prefix}*.jsonl"):
        tail = p.stem[len(prefix) :]
        if tail.isdigit():
            seeds.append(int(tail))
    return sorted(seeds)


def row_key_hash(task: str, seed: int, method: str) -> str:
    """The key hash `compare_dspy.py` gives this method's row of the side by side under the current code."""
    args = cd.parse_args(["--task", task, "--seed", str(seed), "--methods", method, *SIDE_BY_SIDE[task].split()])
    return cd.key_hash(cd.row_key(method, args))


#: how far above the server's own llama.cpp threads the load average may be for a wall time to count: the
#: benchmark's client and DSPy's side add a little; another model run beside it adds 1-2
QUIET_MARGIN = 0.75


def paid_in_full(row: dict[str, Any]) -> bool:
    """Whether the row's wall time covers its whole optimization: it started from an empty answer file or
    one holding only the zero-shot row's test answers (`cache_seeded_from`), and it paid for some calls."""
    at_start = row.get("cache_entries_at_start") or 0
    fresh = at_start == 0 or bool(row.get("cache_seeded_from"))
    return fresh and any((row.get("calls") or {}).values())


def ran_alone(row: dict[str, Any]) -> bool:
    """Whether nothing else loaded the machine: the 1-minute load average at the row's start and the 1-, 5-
    and 15-minute ones at its end (the last quarter hour of the run, so a job beside it in the middle shows)
    at most the server's threads plus `QUIET_MARGIN` (rows without these figures do not count)."""
    start, end = row.get("loadavg_start"), row.get("loadavg_end")
    if not start or not end:
        return False
    limit = (row.get("server") or {}).get("threads", 1) + QUIET_MARGIN
    return max(start[0], *end) <= limit


def cell(rows: Sequence[dict[str, Any]], key: str) -> Cell | None:
    """The latest row under `key`, with the wall time of the newest row of that key that paid in full alone."""
    same = [r for r in rows if r.get("row_key") == key and r.get("test")]  # rows in the order measured
    if not same:
        return None
    last = same[-1]
    paid = [r for r in same if paid_in_full(r) and ran_alone(r) and r.get("wall_s_optimization")]
    wall = paid[-1]["wall_s_optimization"] if paid and last["method"] not in ("zero-shot", "dspy-zero-shot") else None
    t = last["test"]
    return Cell(t["score"], t["ci95"][0], t["ci95"][1], t["n"], last.get("git", "?"), wall)


def load_rows(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def collect(results_dir: Path, keys: Any = row_key_hash) -> dict[tuple[str, int], dict[str, Cell | None]]:
    """Every task and seed of the side by side with a results file: each method's cell (None: not run)."""
    table: dict[tuple[str, int], dict[str, Cell | None]] = {}
    for task in SIDE_BY_SIDE:
        for seed in seeds_of(task, results_dir):
            # in the order they were measured, so the latest row of a key is the last one whichever file holds it
            rows = sorted(
                (r for path in results_paths(task, seed, results_dir) for r in load_rows(path)),
                key=lambda r: r.get("date_utc", ""),
            )
            table[(task, seed)] = {m: cell(rows, keys(task, seed, m)) for m in METHODS}
    return table


def verdicts(table: dict[tuple[str, int], dict[str, Cell | None]]) -> list[str]:
    """One line per target, from the pairs where both sides have a row; what is missing is said."""
    out = []
    pairs = [(k, c["mipro"], c["dspy-miprov2"]) for k, c in table.items() if c["mipro"] and c["dspy-miprov2"]]
    missing = [f"{t} seed {s}" for (t, s), c in table.items() if not (c["mipro"] and c["dspy-miprov2"])]
    if pairs:
        ours = sum(p.score for _, p, _ in pairs) / len(pairs)
        theirs = sum(d.score for _, _, d in pairs) / len(pairs)
        per_task: dict[str, list[tuple[float, float]]] = {}
        for (task, _), p, d in pairs:
            per_task.setdefault(task, []).append((p.score, d.score))
        task_ours = sum(sum(a for a, _ in v) / len(v) for v in per_task.values()) / len(per_task)
        task_theirs = sum(sum(b for _, b in v) / len(v) for v in per_task.values()) / len(per_task)
        met = ours >= theirs and task_ours >= task_theirs
        out.append(
            f"mipro vs MIPROv2, mean over {len(pairs)} task-seed pairs: {ours:.3f} vs {theirs:.3f}; mean over "
            f"{len(per_task)} tasks (seeds averaged): {task_ours:.3f} vs {task_theirs:.3f}: "
            f"{'MET' if met else 'MISSED'}"
        )
        below = [f"{t} seed {s} ({p.score:.3f} < {d.lo:.3f})" for (t, s), p, d in pairs if p.score < d.lo]
        out.append(
            "mipro at least MIPROv2's lower 95% bound on every pair: "
            + ("MET" if not below else "MISSED on " + ", ".join(below))
        )
        ratios = [(k, p.wall_s / d.wall_s) for k, p, d in pairs if p.wall_s and d.wall_s]
        if ratios:
            worst = max(r for _, r in ratios)
            listed = ", ".join(f"{t} seed {s} {r:.3f}x" for (t, s), r in ratios)
            verdict = "MET" if worst <= 0.5 else "MISSED"
            out.append(f"mipro wall / MIPROv2 wall (rows paid in full, run alone): {listed}: {verdict}")
        else:
            out.append("mipro wall / MIPROv2 wall: no pair where both rows paid in full, run alone")
        out.append(paired_line([p.score - d.score for _, p, d in pairs]))
    else:
        out.append("mipro vs MIPROv2: no task-seed pair has both rows")
    if missing:
        out.append("without both MIPRO rows: " + ", ".join(missing))
    starts = [
        (k, c["zero-shot"], c["dspy-zero-shot"]) for k, c in table.items() if c["zero-shot"] and c["dspy-zero-shot"]
    ]
    if starts:
        behind = [f"{t} seed {s} ({z.score:.3f} < {d.score:.3f})" for (t, s), z, d in starts if z.score < d.score]
        out.append(
            f"zero-shot start at least DSPy's rendering ({len(starts)} pairs): "
            + ("MET" if not behind else "MISSED on " + ", ".join(behind))
        )
    no_start = [f"{t} seed {s}" for (t, s), c in table.items() if not (c["zero-shot"] and c["dspy-zero-shot"])]
    if no_start:
        out.append("without both zero-shot rows: " + ", ".join(no_start))
    return out


def sign_test(higher: int, lower: int) -> float:
    """Two-sided exact sign test: the chance of a split at least this uneven if either side is as likely
    to be higher on a pair (ties left out)."""
    n = higher + lower
    if n == 0:
        return 1.0
    k = min(higher, lower)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n)


def paired_line(diffs: Sequence[float]) -> str:
    """How far apart the two MIPROs are pair by pair, and whether the split could be chance: a miss on the
    mean by less than the pairs' scatter is not evidence that one side is behind."""
    higher = sum(d > 0 for d in diffs)
    lower = sum(d < 0 for d in diffs)
    return (
        f"mipro - MIPROv2 per pair: mean {sum(diffs) / len(diffs):+.3f} (from {min(diffs):+.3f} to {max(diffs):+.3f}); "
        f"mipro higher on {higher} of {len(diffs)} pairs, lower on {lower} "
        f"(two-sided sign test p = {sign_test(higher, lower):.2f})"
    )


def markdown(table: dict[tuple[str, int], dict[str, Cell | None]]) -> str:
    head = "| task | seed | " + " | ".join(METHODS) + " | mipro / MIPROv2 wall |\n|" + "---|" * (len(METHODS) + 3)
    lines = [head]
    for (task, seed), cells in table.items():
        shown = []
        for m in METHODS:
            c = cells[m]
            shown.append("not run" if c is None else f"{c.score:.3f} ({c.lo:.3f}-{c.hi:.3f}) n={c.n} @{c.git}")
        p, d = cells["mipro"], cells["dspy-miprov2"]
        wall = (
            f"{p.wall_s / 60:.1f} / {d.wall_s / 60:.1f} min ({p.wall_s / d.wall_s:.3f}x)"
            if p and d and p.wall_s and d.wall_s
            else "-"
        )
        lines.append(f"| {task} | {seed} | " + " | ".join(shown) + f" | {wall} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results-dir", default=str(ROOT / "docs" / "results"), help="where compare_dspy.py's rows are")
    args = p.parse_args(argv)
    table = collect(Path(args.results_dir))
    print(markdown(table))
    print()
    for line in verdicts(table):
        print(f"- {line}")


if __name__ == "__main__":
    main()
