"""How instruction proposals fare against the task's contract, per task and proposer (issue 15, item 3).

    .venv/bin/python benchmarks/proposal_contracts.py            # every compare_dspy results file
    .venv/bin/python benchmarks/proposal_contracts.py --results docs/results/compare_dspy-trec-label-seed1.jsonl

Spends nothing: it reads the rows `compare_dspy.py` wrote. A prompthone optimization row carries its
`proposals` report (`contract_report` over the run's proposal events: checked, kept as written,
repaired, rejected, and what the search chose per module); a row written before rows carried it is
read from its run folder's `summary.json` when that folder is still on this machine, and otherwise
counted under "rows without a record". Where a row was run again under the same key, the later one
counts. Prints one Markdown line per (task, proposer model) and one per proposer over all tasks.
"""

from __future__ import annotations

import argparse
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_GLOB = "docs/results/compare_dspy-*.jsonl"


#: the proposal counts of a contract report
COUNTS = ("checked", "kept", "repaired", "rejected")


@dataclass
class Tally:
    """Proposal outcomes summed over the runs of one (task, proposer)."""

    runs: int = 0
    checked: int = 0
    kept: int = 0
    repaired: int = 0
    rejected: int = 0
    chosen: Counter = field(default_factory=Counter)  # "start", "kept", "repaired", "other" per module

    def add(self, report: dict[str, Any]) -> None:
        """Count one run's contract report."""
        counts = {k: int(report.get(k, 0)) for k in COUNTS}
        self.merge(Tally(runs=1, chosen=Counter((report.get("chosen") or {}).values()), **counts))

    def merge(self, other: Tally) -> None:
        """Add `other`'s counts to these (a proposer's total over tasks)."""
        self.runs += other.runs
        for k in COUNTS:
            setattr(self, k, getattr(self, k) + getattr(other, k))
        self.chosen.update(other.chosen)


def proposal_report(row: dict[str, Any], root: Path = ROOT) -> dict[str, Any] | None:
    """The row's contract report: its own, else its run folder's summary.json, else None."""
    if row.get("proposals"):
        return row["proposals"]
    run_dir = row.get("run_dir")
    if run_dir:
        summary = Path(run_dir) if Path(run_dir).is_absolute() else root / run_dir
        summary = summary / "summary.json"
        if summary.exists():
            return json.loads(summary.read_text()).get("proposals")
    return None


def tally(paths: list[Path], root: Path = ROOT) -> tuple[dict[tuple[str, str], Tally], int]:
    """Tallies by (task, proposer model), and how many optimization rows had no record to read."""
    latest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for path in paths:
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("side") != "prompthone" or row.get("method") == "zero-shot":
                continue
            latest[(row.get("task"), row.get("splits", {}).get("seed"), row["method"], row.get("row_key"))] = row
    out: dict[tuple[str, str], Tally] = defaultdict(Tally)
    missing = 0
    for row in latest.values():
        report = proposal_report(row, root)
        if report is None:
            missing += 1
            continue
        proposer = row.get("proposer_model") or row.get("key", {}).get("proposer_model") or row.get("model", "?")
        out[(row.get("task", "?"), proposer.split("@")[0])].add(report)
    return dict(out), missing


def markdown(tallies: dict[tuple[str, str], Tally], missing: int) -> str:
    def share(n: int, of: int) -> str:
        return f"{n} ({n / of:.0%})" if of else "-"

    def line(task: str, proposer: str, t: Tally) -> str:
        chose = ", ".join(f"{k} {v}" for k, v in sorted(t.chosen.items())) or "-"
        return (
            f"| {task} | {proposer} | {t.runs} | {t.checked} | {share(t.kept, t.checked)} | "
            f"{share(t.repaired, t.checked)} | {share(t.rejected, t.checked)} | {chose} |"
        )

    lines = [
        "| task | proposer | runs | proposals checked | kept as written | repaired | rejected | the search chose |",
        "|---|---|---|---|---|---|---|---|",
    ]
    totals: dict[str, Tally] = defaultdict(Tally)
    for (task, proposer), t in sorted(tallies.items()):
        lines.append(line(task, proposer, t))
        totals[proposer].merge(t)
    for proposer, t in sorted(totals.items()):
        lines.append(line("**all tasks**", proposer, t))
    lines.append(f"\nOptimization rows without a record (run before rows kept one, folder gone): {missing}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", nargs="*", help=f"compare_dspy results files (default: {DEFAULT_GLOB})")
    args = p.parse_args(argv)
    paths = [Path(x) for x in args.results] if args.results else sorted(ROOT.glob(DEFAULT_GLOB))
    absent = [str(x) for x in paths if not x.exists()]
    if absent:
        raise SystemExit(f"--results: no such file: {', '.join(absent)}")
    print(markdown(*tally(paths)))


if __name__ == "__main__":
    main()
