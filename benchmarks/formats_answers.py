"""What each prompt format made the model answer, read back from `formats.py`'s answer caches.

    .venv/bin/python benchmarks/formats_answers.py                       # every measured row
    .venv/bin/python benchmarks/formats_answers.py --tasks bbh/object_counting --models 1.5b

Spends nothing and starts no model: the latest row of each (task, model, prompthone format) in the
results file is evaluated again through `formats.evaluate_format`, the rows' own path, against an LM
that answers only from the response cache (a request not in it is an error, never a model call). A
score is a count of right answers; this says what the wrong ones were, which is what a choice of
format has to explain:

- `answers`: the most common answers and their share (a model that answers `entity` to every TREC
  question scores the share of entity questions, whatever the format's reading);
- on object counting (`NUMERIC_TASKS`), the mean signed error of the answers that are numbers
  and how many were too high and too low (a format that makes the model over-count shows here);
- `label-set reads`: replies whose value rule 8 of `prompthone.program.parse` settled (the allowed
  value the reply starts with, chatter after it dropped), on tasks whose output enumerates its values.

Each line is checked against its row: the replayed score must equal the row's, or the script stops
and says which row no longer replays (its replies are not in the cache, or the reading changed
without a new parse revision).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import formats as fm
from prompthone.data import Example
from prompthone.evaluate import EvaluationError, ExampleRecord
from prompthone.lm import LM
from prompthone.lm.backend import Backend
from prompthone.lm.errors import ConfigError, LMError
from prompthone.lm.openai_backend import OpenAIBackend
from prompthone.lm.types import Generation, Request
from prompthone.metrics.numbers import answer_number
from prompthone.program import Signature
from prompthone.program.params import PROMPT_FORMATS
from prompthone.program.parse import parse_reply

#: tasks whose answer is a number: their wrong answers are summarized as a signed error
NUMERIC_TASKS = ("bbh/object_counting",)


class CacheOnly(Backend):
    """Answers nothing itself: it stands where `formats.py`'s server stood (same identity, so the same
    cache keys) and refuses any request the cache did not answer."""

    kind = "openai"

    def __init__(self, alias: str, port: int) -> None:
        super().__init__(alias)
        self._identity = OpenAIBackend(alias, base_url=f"http://127.0.0.1:{port}/v1").identity()

    def identity(self) -> str:
        return self._identity

    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        raise ConfigError("this reply is not in the answer cache (formats_answers.py never calls a model)")


@dataclass(frozen=True)
class Answers:
    """One row's answers, summarized."""

    task: str
    model: str
    format: str
    n: int
    score: float
    parse_failures: int
    common: list[tuple[str, int]]
    signed_error: float | None  # mean (answer - gold) over answers that are numbers; None off numeric tasks
    too_high: int
    too_low: int
    numbers: int
    label_set_reads: int | None  # None where the output enumerates no values


def summarize(
    task: str, model: str, fmt: str, records: Sequence[ExampleRecord], examples: Sequence[Example]
) -> Answers:
    """What a row's records say beyond the score: the most common answers, the signed error on a numeric
    task, and how many values rule 8 settled."""
    bench = fm.BENCHES[task]
    out_name = next(iter(bench.outputs))
    gold = {ex.id: ex.labels.get("answer") for ex in examples}
    answers = [str(r.outputs.get(out_name, "")).strip() for r in records if r.status == "scored"]
    errors = []
    if task in NUMERIC_TASKS:
        for r in records:
            got = answer_number(str(r.outputs.get(out_name, "")))
            want = answer_number(str(gold[r.example_id]))
            if r.status == "scored" and got is not None and want is not None:
                errors.append(got - want)
    enumerates = fm.enumerates_values(bench)
    settled = 0
    if enumerates:
        sig = Signature(bench.inputs, bench.outputs, bench.instruction)
        for r in records:
            if r.raw:
                read = parse_reply(sig, r.raw, format=fmt)
                settled += any(how.endswith("+label-set") for how in read.how.values())
    scores = [r.counted_score or 0.0 for r in records]
    return Answers(
        task=task, model=model, format=fmt, n=len(records), score=sum(scores) / max(len(scores), 1),
        parse_failures=sum(1 for r in records if r.status == "parse_failure"),
        common=Counter(a.casefold() for a in answers).most_common(3),
        signed_error=sum(errors) / len(errors) if errors else None,
        too_high=sum(1 for e in errors if e > 0), too_low=sum(1 for e in errors if e < 0), numbers=len(errors),
        label_set_reads=settled if enumerates else None,
    )  # fmt: skip


def latest_rows(rows: Sequence[dict[str, Any]], tasks: Sequence[str], models: Sequence[str]) -> list[dict[str, Any]]:
    """The latest row of each prompthone format under the current revisions, with no demos, the module's
    own reasoning wording and no follow-up: the rows `formats.py --report` judges."""
    latest: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r["task"] not in tasks or r["model"] not in models or r["format"] not in PROMPT_FORMATS:
            continue
        current = fm.row_key(r["task"], r["model"], r["format"])
        if fm.key_of(r) == current:
            latest[current] = r
    order = {f: i for i, f in enumerate(PROMPT_FORMATS)}
    return sorted(latest.values(), key=lambda r: (tasks.index(r["task"]), models.index(r["model"]), order[r["format"]]))


def replay(row: dict[str, Any], cache_dir: Path, port: int, root: str | None) -> Answers:
    bench = fm.BENCHES[row["task"]]
    by_id = {ex.id: ex for ex in fm.sample(bench, root)}
    examples = [by_id[i] for i in row["example_ids"]]
    alias = f"qwen2.5-coder-{row['model']}"
    cache = cache_dir / f"responses-{alias}.sqlite"
    if not cache.exists():
        raise SystemExit(f"{cache}: no answer cache for {row['model']}; run formats.py first")
    lm = LM(CacheOnly(alias, port), cache=str(cache), max_retries=0)
    what = f"{row['task']} {row['model']} {row['format']} (n={row['n']}, {row['date']})"
    try:
        res = fm.evaluate_format(bench, row["format"], examples, lm, root, progress=False)
    except (EvaluationError, LMError) as exc:  # a config error (not cached) stops the evaluation outright
        raise SystemExit(f"{what}: does not replay from {cache}: {exc}") from None
    answers = summarize(row["task"], row["model"], row["format"], res.records, examples)
    if abs(answers.score - row["mean"]) > 1e-9:
        raise SystemExit(f"{what}: replays to {answers.score:.3f}, the row says {row['mean']:.3f}")
    return answers


def markdown(found: Sequence[Answers]) -> str:
    lines = [
        "| task | model | format | n | score | unparsed | most common answers | signed error (numbers) "
        "| too high / too low | label-set reads |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for a in found:
        common = ", ".join(f"{v or '(empty)'} {100 * c / a.n:.0f}%" for v, c in a.common)
        err = "" if a.signed_error is None else f"{a.signed_error:+.1f} ({a.numbers})"
        high_low = "" if a.signed_error is None else f"{a.too_high} / {a.too_low}"
        reads = "" if a.label_set_reads is None else str(a.label_set_reads)
        lines.append(
            f"| {a.task} | {a.model} | {a.format} | {a.n} | {100 * a.score:.1f} | {a.parse_failures} | {common} "
            f"| {err} | {high_low} | {reads} |"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default=",".join(fm.MODELS), help=f"comma-separated, from {list(fm.MODELS)}")
    direct = [t for t, b in fm.BENCHES.items() if b.kind == "predict"]
    p.add_argument("--tasks", default=",".join(direct), help=f"comma-separated, from {direct}")
    p.add_argument("--results", default=str(fm.ROOT / "docs" / "results" / "formats.jsonl"))
    p.add_argument("--cache-dir", default=str(fm.ROOT / "benchmarks" / "cache" / "formats"))
    p.add_argument("--port", type=int, default=18439, help="the port formats.py's server had (part of the keys)")
    p.add_argument("--data-root", default=None)
    args = p.parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    for what, got, allowed in (("--models", models, list(fm.MODELS)), ("--tasks", tasks, direct)):
        bad = [x for x in got if x not in allowed]
        if bad:
            raise SystemExit(f"{what}: unknown {bad}; expected some of {allowed}")
    rows = latest_rows(fm.load_rows(Path(args.results)), tasks, models)
    if not rows:
        raise SystemExit(f"{args.results}: no prompthone rows for {tasks} on {models}")
    found = [replay(r, Path(args.cache_dir), args.port, args.data_root) for r in rows]
    print(markdown(found))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
