"""GSM8K (grade-school math word problems, MIT): question -> integer answer, worked solution as `reasoning`.

Each upstream answer is a worked solution ending in `#### <number>`. The number (commas removed) is the
label `answer`; the solution text before it, without the `<<expr=result>>` calculator annotations (an
artifact of how the data was made, not part of the reasoning), is the label `reasoning`, handy for demos.
"""

from __future__ import annotations

import re
from pathlib import Path

from prompthone.data.benchmarks._common import choose, field
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.records import Record, read_records
from prompthone.data.root import dataset_file

GSM8K_SPLITS = ("train", "test", "test_socratic")

_ANNOTATION = re.compile(r"<<[^<>]*>>")
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def parse_gsm8k_answer(text: str) -> tuple[str, str]:
    """Split an upstream answer into (final answer without commas, reasoning without annotations)."""
    if text.count("####") != 1:
        raise ValueError(f"expected exactly one '####' before the final answer, found {text.count('####')}")
    reasoning, final = text.split("####")
    answer = final.strip().replace(",", "")
    if not _NUMBER.fullmatch(answer):
        raise ValueError(f"expected a number after '####', got {final.strip()!r}")
    return answer, _ANNOTATION.sub("", reasoning).strip()


def gsm8k_example(path: Path, rec: Record, example_id: str) -> Example:
    """One GSM8K record as an `Example` (shared with the shipped demo subset)."""
    question = field(path, rec, "question")
    try:
        answer, reasoning = parse_gsm8k_answer(field(path, rec, "answer"))
    except ValueError as e:
        raise DataError(str(e), path=path, line=rec.line, field="answer") from None
    return Example(
        id=example_id,
        inputs={"question": question},
        labels={"answer": answer, "reasoning": reasoning},
    )


def load_gsm8k(split: str = "test", *, root: str | Path | None = None) -> list[Example]:
    """GSM8K `train` (7473), `test` (1319) or `test_socratic` (1319) from `<root>/gsm8k/<split>.jsonl`.

    Ids are `gsm8k/<split>:<line>`. Labels: `answer` (e.g. "1080"), `reasoning` (the worked solution).
    """
    choose("GSM8K split", split, GSM8K_SPLITS)
    path = dataset_file(root, "gsm8k", f"{split}.jsonl")
    return [gsm8k_example(path, rec, f"gsm8k/{split}:{rec.line}") for rec in read_records(path)]


__all__ = ["GSM8K_SPLITS", "gsm8k_example", "load_gsm8k", "parse_gsm8k_answer"]
