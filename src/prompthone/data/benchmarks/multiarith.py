"""MultiArith (Roy & Roth 2015): arithmetic word problems with whole-number answers.

Answers are stored upstream as floats (39.0); the label `answer` is written as the model would write
it ("39"), so exact-match and numeric metrics agree. The upstream equation is kept as `equation`.
"""

from __future__ import annotations

from pathlib import Path

from prompthone.data.benchmarks._common import field
from prompthone.data.errors import DataError
from prompthone.data.example import Example
from prompthone.data.records import read_records
from prompthone.data.root import dataset_file


def load_multiarith(*, root: str | Path | None = None) -> list[Example]:
    """All 600 problems from `<root>/multiarith/MultiArith.json`; ids are `multiarith:<iIndex>`."""
    path = dataset_file(root, "multiarith", "MultiArith.json")
    out: list[Example] = []
    seen: dict[int, int] = {}
    for rec in read_records(path):
        index = field(path, rec, "iIndex", int)
        if index in seen:
            raise DataError(
                f"duplicate iIndex {index} (first at line {seen[index]})",
                path=path,
                line=rec.line,
                field="iIndex",
            )
        seen[index] = rec.line
        solutions = field(path, rec, "lSolutions", list)
        if len(solutions) != 1 or isinstance(solutions[0], bool) or not isinstance(solutions[0], int | float):
            raise DataError(f"expected one number, got {solutions!r}", path=path, line=rec.line, field="lSolutions")
        value = solutions[0]
        answer = str(int(value)) if float(value).is_integer() else repr(float(value))
        equations = field(path, rec, "lEquations", list)
        out.append(
            Example(
                id=f"multiarith:{index}",
                inputs={"question": field(path, rec, "sQuestion").strip()},
                labels={"answer": answer, "equation": " ; ".join(map(str, equations))},
            )
        )
    return out


__all__ = ["load_multiarith"]
