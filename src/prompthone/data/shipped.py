"""The demo dataset shipped inside the package: 60 short GSM8K problems (MIT), loadable with no data root.

It lives in the package (not under the data root) so `pip install prompthone` is enough to run the README
demo. Provenance, selection rule and checksum: `shipped/PROVENANCE.md`; license: `shipped/LICENSE.gsm8k`.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from prompthone.data.benchmarks._common import field
from prompthone.data.benchmarks.gsm8k import gsm8k_example
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.records import read_records

DEMO_FILE = "gsm8k_train_easy60.jsonl"


def demo_path() -> Path:
    """Filesystem path of the shipped demo file (the package is installed unzipped, as setuptools does)."""
    return Path(str(resources.files("prompthone.data").joinpath("shipped", DEMO_FILE)))


def load_demo() -> list[Example]:
    """The 60 demo problems: input `question`; labels `answer` (digits only) and `reasoning`.

    Ids are `gsm8k/train:<line in the upstream train.jsonl>`, the same as `load_gsm8k("train")` gives.
    """
    path = demo_path()
    out: list[Example] = []
    for rec in read_records(path):
        line = field(path, rec, "source_line", int)
        if line < 1:
            raise DataError(
                f"expected a positive line number, got {line}", path=path, line=rec.line, field="source_line"
            )
        out.append(gsm8k_example(path, rec, f"gsm8k/train:{line}"))
    return out


__all__ = ["DEMO_FILE", "demo_path", "load_demo"]
