"""Datasets shipped inside the package, loadable with no data root: small, licensed subsets for the demo.

They live in the package (not under the data root) so `pip install prompthone` is enough to run the README
demo and to try every command. Provenance, selection rules and checksums: `shipped/PROVENANCE.md`;
licenses: `shipped/LICENSE.*`.

- `load_trec_mini()`: 80 TREC training questions drawn with a fixed seed (task `trec-mini`, the demo's).
- `load_gsm8k_mini()`: 60 short GSM8K training problems (task `gsm8k-mini`).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from prompthone.data.benchmarks._common import field
from prompthone.data.benchmarks.gsm8k import gsm8k_example
from prompthone.data.benchmarks.trec import trec_example
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.records import Record, read_records

GSM8K_MINI_FILE = "gsm8k_train_easy60.jsonl"
TREC_MINI_FILE = "trec_train_sample80.jsonl"


def shipped_path(name: str) -> Path:
    """Filesystem path of a shipped file (the package is installed unzipped, as setuptools does)."""
    return Path(str(resources.files("prompthone.data").joinpath("shipped", name)))


def _source_line(path: Path, rec: Record) -> int:
    line = field(path, rec, "source_line", int)
    if line < 1:
        raise DataError(f"expected a positive line number, got {line}", path=path, line=rec.line, field="source_line")
    return line


def load_gsm8k_mini() -> list[Example]:
    """The 60 shipped GSM8K problems: input `question`; labels `answer` (digits only) and `reasoning`.

    Ids are `gsm8k/train:<line in the upstream train.jsonl>`, the same as `load_gsm8k("train")` gives.
    """
    path = shipped_path(GSM8K_MINI_FILE)
    return [gsm8k_example(path, rec, f"gsm8k/train:{_source_line(path, rec)}") for rec in read_records(path)]


def load_trec_mini() -> list[Example]:
    """The 80 shipped TREC questions: input `question`; labels `answer` (coarse class word) and `fine`.

    Each record keeps the upstream line as it is (`text`, decoded from ISO-8859-1), parsed like
    `load_trec("train")`, with the same ids (`trec/train:<line in TREC.train>`).
    """
    path = shipped_path(TREC_MINI_FILE)
    out = []
    for rec in read_records(path):
        line = _source_line(path, rec)
        out.append(trec_example(path, rec.line, field(path, rec, "text"), f"trec/train:{line}"))
    return out


__all__ = ["GSM8K_MINI_FILE", "TREC_MINI_FILE", "load_gsm8k_mini", "load_trec_mini", "shipped_path"]
