"""SST-2 (sentence-level binary Stanford Sentiment Treebank): `sentence` -> "positive" / "negative".

Labels are words, not 0/1, because the program's output is text: a model asked for the sentiment says
"positive", and a metric compares words. Sentences stay as upstream has them (lowercased, PTB tokens).
"""

from __future__ import annotations

from pathlib import Path

from prompthone.data.benchmarks._common import choose, text_lines
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.root import dataset_file

SST2_SPLITS = ("train", "dev", "test")
SST2_LABELS = {"0": "negative", "1": "positive"}


def load_sst2(split: str = "dev", *, root: str | Path | None = None) -> list[Example]:
    """SST-2 `train` (6920), `dev` (872) or `test` (1821) from `<root>/sst2/stsa.binary.<split>`.

    Each line is `<0|1> <sentence>`; ids are `sst2/<split>:<line>`, the label is `answer`.
    """
    choose("SST-2 split", split, SST2_SPLITS)
    path = dataset_file(root, "sst2", f"stsa.binary.{split}")
    out: list[Example] = []
    for n, line in text_lines(path, expected="lines of '<0|1> <sentence>'"):
        code, _, sentence = line.partition(" ")
        if code not in SST2_LABELS:
            raise DataError(
                f"expected label 0 or 1 at the start of the line, got {code!r}",
                path=path,
                line=n,
                field="label",
            )
        if not sentence.strip():
            raise DataError("expected a sentence after the label", path=path, line=n, field="sentence")
        out.append(
            Example(
                id=f"sst2/{split}:{n}",
                inputs={"sentence": sentence.strip()},
                labels={"answer": SST2_LABELS[code]},
            )
        )
    return out


__all__ = ["SST2_LABELS", "SST2_SPLITS", "load_sst2"]
