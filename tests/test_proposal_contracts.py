"""benchmarks/proposal_contracts.py: the contract shares it prints are the sums of the rows' own reports."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

import proposal_contracts as pc


def _row(method: str, key: str, report: dict | None, **extra) -> dict:
    return {"side": "prompthone", "method": method, "task": "t", "splits": {"seed": 0}, "row_key": key,
            "model": "openai/small@http://x", "proposals": report, **extra}  # fmt: skip


def test_latest_row_per_key_counts_and_a_run_folder_stands_in_for_an_old_row(tmp_path: Path) -> None:
    rep = {"checked": 4, "kept": 2, "repaired": 1, "rejected": 1, "chosen": {"m": "kept"}}
    old_dir = tmp_path / "runs" / "old"
    old_dir.mkdir(parents=True)
    (old_dir / "summary.json").write_text(json.dumps({"proposals": {**rep, "chosen": {"m": "start"}}}))
    rows = [
        _row("mipro", "a", {**rep, "checked": 99}),  # run again under the same key: the later row counts
        _row("mipro", "a", rep),
        _row("mipro", "b", None, run_dir=str(old_dir)),  # no report of its own: its summary.json
        _row("mipro", "c", None, run_dir=str(tmp_path / "gone")),  # neither: counted as missing
        _row("mipro-proposer", "d", rep, proposer_model="local/big"),
        {"side": "dspy", "method": "dspy-miprov2", "task": "t", "row_key": "e"},
        _row("zero-shot", "f", None),
    ]
    path = tmp_path / "r.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    tallies, missing = pc.tally([path], root=tmp_path)
    assert missing == 1
    small, big = tallies[("t", "openai/small")], tallies[("t", "local/big")]
    assert (small.runs, small.checked, small.kept, small.repaired, small.rejected) == (2, 8, 4, 2, 2)
    assert dict(small.chosen) == {"kept": 1, "start": 1}
    assert (big.runs, big.checked) == (1, 4)
    text = pc.markdown(tallies, missing)
    assert "| t | openai/small | 2 | 8 | 4 (50%) | 2 (25%) | 2 (25%) | kept 1, start 1 |" in text
    assert "| **all tasks** | local/big | 1 | 4 | 2 (50%) |" in text
