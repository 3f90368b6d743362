"""Which prompt format should a module start in? The zero-shot start of the same programs, per format.

    make bench-dspy-env                       # once: DSPy 3.4.1 in .venv-dspy
    .venv/bin/python benchmarks/formats.py    # every row not yet in the results file, most informative first
    .venv/bin/python benchmarks/formats.py --report   # the table of what is there, spending nothing
    .venv/bin/python benchmarks/formats_answers.py    # what each format made the model answer, from the caches

For each (task, model, format) it scores the zero-shot program, on the same seeded sample of test
examples, with the same prompthone metric, under each prompthone prompt format (`PROMPT_FORMATS`: the
program's modules all switched to that format) and under DSPy's own rendering of the same signature
(`dspy`: DSPy itself runs the program, with its `ChatAdapter` and its fallback to `JSONAdapter`, from
`.venv-dspy` through `benchmarks/dspy_formats_side.py`). Both sides talk to one `llama_cpp.server`
serving the embedded model (2 llama.cpp threads; one model process at a time), at temperature 0
with the same max_tokens.

Tasks: TREC with a `label` output described as "one of: ..." (issue 15's program), SST-2, three
BIG-Bench Hard tasks of different kinds (yes/no, multiple choice, counting; direct answers), the yes/no
one again as `compare_dspy.py` runs it (`bbh-cot/`: chain of thought, 256 tokens), HotPotQA
(two modules around BM25) and GSM8K with chain of thought.

Caching, so a rerun pays for nothing twice: each step's row is appended to `--results` (JSONL, with
every example's score), and a rerun scores a (task, format) only beyond the most examples its rows
hold (`--limit` N asks for the first N; a step already recorded is skipped); every prompthone answer
is in a response-cache file and every DSPy answer in DSPy's own disk cache, both under `--cache-dir`,
so a row stopped half-way resumes where it was. The server listens on a fixed port (`--port`): it is
part of prompthone's cache keys. Rows run in the order of `--models`, then `--tasks`; within a task,
every format is scored on the first `--chunk` examples, then the next chunk, and so on (a row per
step, `partial` until the whole sample), so a run stopped early still compares every format on the
same examples.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import platform
import random
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from machine import cpu_model
from prompthone.data import Example, load_bbh, load_gsm8k, load_hotpotqa_distractor, load_sst2, load_trec
from prompthone.evaluate import EvalResult, EvaluationError, Evaluator
from prompthone.evaluate.stats import Z95, mean_ci
from prompthone.lm import LM
from prompthone.lm.local.assemble import resolve_gguf
from prompthone.lm.local.catalog import start_format_of
from prompthone.metrics import ChoiceMatch, ExactMatch, Metric, NumericMatch
from prompthone.optimize.proposers.demos import covering_sample
from prompthone.program import ChainOfThought, Demo, Predict, Program, Signature
from prompthone.program.label_sets import find_labels
from prompthone.program.module import LEGACY_REASONING_DESCRIPTION, REASONING_DESCRIPTION
from prompthone.program.params import DEFAULT_FORMAT, PROMPT_FORMATS, REASONING_FORMAT
from prompthone.program.render import DEMO_LAYOUT_REVISION
from prompthone.tasks.builtin import MATH_ANSWER, MATH_INSTRUCTION
from prompthone.tasks.programs import MultiHopQA

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from model_server import llama_server  # noqa: E402

DSPY = "dspy"
ALL_FORMATS = (*PROMPT_FORMATS, DSPY)
MODELS = {"0.5b": "qwen2.5-coder-0.5b", "1.5b": "qwen2.5-coder-1.5b"}
#: max_tokens of a one-field classification reply: DSPy's reply format (a header, the label and its
#: completion marker) needs about 20 tokens with Qwen's tokenizer; the others fewer
CLASSIFY_TOKENS = 32
TREC_LABELS = "abbreviation, description, entity, human, location, number"
#: `--reasoning`: what a chain-of-thought program's reasoning field is described as, by name; a name keeps
#: its wording for good (it is part of a row's key). "none": no description, as DSPy's `ChainOfThought`
#: renders it and as prompthone's has since 2026-12-06; "step": prompthone's description before that
#: (the rows from before the field existed)
REASONING = {
    "none": "",
    "step": LEGACY_REASONING_DESCRIPTION,
    "brief": "a few short sentences that lead to the answer",
}
#: the wording a `ChainOfThought` module gives its reasoning field when the program does not
DEFAULT_REASONING = next(name for name, wording in REASONING.items() if wording == REASONING_DESCRIPTION)


@dataclass(frozen=True)
class Bench:
    """One program to score: how to build it on both sides, its data, metric and reply length."""

    name: str
    kind: str  # "predict", "cot" (one module) or "hotpot" (two)
    load: Callable[[str | None], list[Example]]
    metric: Callable[[], Metric]
    max_tokens: int
    n: int
    inputs: dict[str, str] = field(default_factory=dict)
    outputs: dict[str, str] = field(default_factory=dict)
    instruction: str = ""
    #: where `--demos` draws labelled demos from (None: the task has no training split here)
    load_train: Callable[[str | None], list[Example]] | None = None
    #: what a `cot` program's reasoning field asks for (None: `ChainOfThought`'s own description)
    reasoning: str | None = None

    def program(self, root: str | None) -> Program:
        if self.kind == "hotpot":
            return MultiHopQA(load_hotpotqa_distractor(root=root).corpus)
        # a signature that has its own `reasoning` output keeps it: how a user words what the reasoning is
        outputs = self.outputs if self.reasoning is None else {"reasoning": self.reasoning, **self.outputs}
        sig = Signature(self.inputs, outputs, self.instruction)
        module = ChainOfThought(sig) if self.kind == "cot" else Predict(sig)
        return _Single(module, self.outputs)


class _Single(Program):
    def __init__(self, module: Any, outputs: dict[str, str]) -> None:
        self.step = module
        self._outputs = list(outputs)

    def forward(self, **inputs: Any) -> dict:
        pred = self.step(**inputs)
        return {n: pred[n] for n in self._outputs}


def _bbh(task: str, desc: str, metric: Callable[[], Metric]) -> Bench:
    return Bench(
        f"bbh/{task}", "predict", lambda root: load_bbh(task, root=root), metric, CLASSIFY_TOKENS, 100,
        {"question": ""}, {"answer": desc}, "Answer the question.",
    )  # fmt: skip


def _bbh_cot(task: str, desc: str, metric: Callable[[], Metric]) -> Bench:
    """The BBH program of `compare_dspy.py` (the built-in task's `Reason`): chain of thought, then the answer,
    with the reply length both sides give it there (256 tokens)."""
    return Bench(
        f"bbh-cot/{task}", "cot", lambda root: load_bbh(task, root=root), metric, 256, 100,
        {"question": ""}, {"answer": desc}, "Answer the question.",
    )  # fmt: skip


# fmt: off
BENCHES: dict[str, Bench] = {
    b.name: b
    for b in (
        Bench(
            "trec-label", "predict", lambda root: load_trec("test", root=root),
            lambda: ExactMatch(label_field="answer", pred_field="label"), CLASSIFY_TOKENS, 100,
            {"question": ""}, {"label": f"one of: {TREC_LABELS}"},
            "Classify the question by the type of answer it expects. The label must be exactly one of: "
            f"{TREC_LABELS}.", lambda root: load_trec("train", root=root),
        ),
        Bench(
            "sst2", "predict", lambda root: load_sst2("dev", root=root), ExactMatch, CLASSIFY_TOKENS, 100,
            {"sentence": ""}, {"answer": ""}, "Is the sentiment of the sentence positive or negative?",
            lambda root: load_sst2("train", root=root),
        ),
        _bbh("sports_understanding", "the final answer only", ExactMatch),
        _bbh("date_understanding", "the option letter, e.g. (A)", ChoiceMatch),
        _bbh("object_counting", "the final answer only", ExactMatch),
        _bbh_cot("sports_understanding", "the final answer only", ExactMatch),
        Bench("hotpotqa", "hotpot", lambda root: list(load_hotpotqa_distractor(root=root).questions),
              ExactMatch, 64, 100),
        Bench(
            "gsm8k", "cot", lambda root: load_gsm8k("test", root=root), NumericMatch, 384, 100,
            {"question": ""}, {"answer": MATH_ANSWER}, MATH_INSTRUCTION,
        ),
    )
}
# fmt: on


#: a row's sample (`--held-out`): the seeded sample every format was compared (and each model's start
#: format chosen) on, or a second one of the same size drawn from the examples outside it
FIRST_SAMPLE, HELD_OUT = "first", "held-out"


def sample(bench: Bench, root: str | None, which: str = FIRST_SAMPLE) -> list[Example]:
    """The same `n` examples for every format and model: a seeded sample, in a fixed order; `HELD_OUT`, a
    second seeded sample disjoint from it (as many as the examples left allow), to check a choice made on
    the first on examples it was not made on."""
    examples = bench.load(root)
    seeded = random.Random(f"formats:{bench.name}")
    first = examples if len(examples) <= bench.n else seeded.sample(examples, bench.n)
    if which == FIRST_SAMPLE:
        return first
    used = {ex.id for ex in first}
    rest = [ex for ex in examples if ex.id not in used]
    return random.Random(f"formats-held-out:{bench.name}").sample(rest, min(bench.n, len(rest)))


def demos_for(bench: Bench, k: int, root: str | None) -> list[dict[str, str]]:
    """`k` labelled demos from the task's training split, the same for every format and both sides: a
    seeded draw that shows distinct labels before repeating one (`covering_sample`), as MIPRO's demo
    sets do. Each is {input name: value, output name: the example's label}."""
    if k == 0:
        return []
    if bench.load_train is None or bench.kind != "predict":
        raise SystemExit(f"--demos: {bench.name} has no training split here (only one-module Predict tasks do)")
    (out_name,) = bench.outputs
    pool = [
        Demo({**{n: str(ex.inputs[n]) for n in bench.inputs}, out_name: str(ex.labels["answer"])})
        for ex in bench.load_train(root)
    ]
    return [dict(d) for d in covering_sample(pool, k, out_name, random.Random(f"formats-demos:{bench.name}"))]


# ------------------------------------------------------------------------------------------ rows
def evaluate_format(
    bench: Bench,
    fmt: str,
    examples: list[Example],
    lm: LM,
    root: str | None,
    demos: Sequence[dict[str, str]] = (),
    *,
    follow_up: bool = False,
    progress: bool = True,
) -> EvalResult:
    """The zero-shot program with every module in `fmt`, evaluated on `examples`: the one path both the
    rows (`score_prompthone`) and the answer summaries (`formats_answers.py`) take, so the two read the
    same cached replies the same way."""
    program = bench.program(root)
    for module in program.named_modules().values():
        module.format = fmt
        module.follow_up = follow_up
        module.params = module.params.with_demos(Demo(d) for d in demos)
    # max_errors=0: an example that errored (the server went away, a timeout) was not measured, so the
    # row is not written at all; a rerun picks it up from the caches
    ev = Evaluator(
        program, bench.metric(), lm, concurrency=1, max_errors=0, progress=progress,
        keep_traces=False, temperature=0.0, max_tokens=bench.max_tokens,
    )  # fmt: skip
    return ev.evaluate_sync(None, examples, description=f"{bench.name} {fmt}")


def score_prompthone(
    bench: Bench,
    fmt: str,
    examples: list[Example],
    lm: LM,
    root: str | None,
    demos: Sequence[dict[str, str]] = (),
    *,
    follow_up: bool = False,
) -> dict[str, Any]:
    paid0 = lm.usage.calls - lm.usage.cache_hits
    try:
        res = evaluate_format(bench, fmt, examples, lm, root, demos, follow_up=follow_up)
    except EvaluationError as exc:
        raise SystemExit(f"{bench.name} {fmt}: {exc}; no row written") from None
    recs = {r.example_id: r for r in res.records}
    return {
        "scores": [recs[ex.id].score or 0.0 for ex in examples],
        "parse_failures": sum(1 for r in res.records if r.status == "parse_failure" or r.parse_failures),
        "errors": res.n_errors,
        "prompt_tokens": sum(r.prompt_tokens for r in res.records),
        "completion_tokens": sum(r.completion_tokens for r in res.records),
        "calls_paid": lm.usage.calls - lm.usage.cache_hits - paid0,
        "examples_fully_cached": sum(1 for r in res.records if r.cached),
    }


def score_dspy(
    bench: Bench,
    examples: list[Example],
    url: str,
    alias: str,
    args: argparse.Namespace,
    demos: Sequence[dict[str, str]] = (),
) -> dict[str, Any]:
    job: dict[str, Any] = {
        "kind": bench.kind, "inputs": bench.inputs, "outputs": bench.outputs, "instruction": bench.instruction,
        "demos": list(demos),
        "examples": [{"id": ex.id, "inputs": dict(ex.inputs)} for ex in examples], "base_url": url,
        "model": alias, "max_tokens": bench.max_tokens, "data_root": args.data_root,
        "cache_dir": str(Path(args.cache_dir).resolve() / f"dspy-{alias}"),
    }  # fmt: skip
    if bench.kind == "hotpot":
        start = bench.program(args.data_root)
        job["hotpot"] = {
            "query_instruction": start.query.params.instruction,
            "answer_instruction": start.answer.params.instruction,
            "k": start.k,
        }
    proc = subprocess.run(
        [args.dspy_python, str(ROOT / "benchmarks" / "dspy_formats_side.py")],
        input=json.dumps(job), capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        raise SystemExit(f"the DSPy side failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    lm_errors = [v["lm_error"] for v in result["predictions"].values() if "lm_error" in v]
    if lm_errors:
        raise SystemExit(f"{len(lm_errors)} DSPy calls got no reply (first: {lm_errors[0]}); no row written")
    metric = bench.metric()
    scores, failures = [], 0
    for ex in examples:
        got = result["predictions"][ex.id]
        if "error" in got:
            failures += 1
            scores.append(0.0)
            continue
        outputs = {k: "" if v is None else str(v) for k, v in got["outputs"].items()}
        try:
            scores.append(metric.score(ex, outputs).score)
        except Exception:  # the output field is missing: DSPy's parse gave nothing usable
            failures += 1
            scores.append(0.0)
    return {"scores": scores, "parse_failures": failures, "errors": 0, "dspy": result["dspy"]}


def machine() -> str:
    return f"{cpu_model()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def git_commit() -> str:
    out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    return out.stdout.strip()


def load_rows(path: Path) -> list[dict[str, Any]]:
    """The rows of a results file, less any with errors (examples never measured, e.g. the server was down)."""
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if not r.get("errors")]


def left_to_score(
    rows: Sequence[dict[str, Any]],
    formats: Sequence[str],
    wanted: int,
    task: str,
    model: str,
    demos: int,
    reasoning: str,
    follow_up: bool,
    which: str = FIRST_SAMPLE,
) -> list[str]:
    """The formats whose rows hold fewer than `wanted` examples of this task: a run stopped early, or one
    asked for fewer with `--limit`, leaves rows that count for what they scored, no more."""
    scored: dict[tuple, int] = {}
    for r in rows:
        key = key_of(r)
        scored[key] = max(scored.get(key, 0), r["n"])
    keys = {f: row_key(task, model, f, demos, reasoning=reasoning, follow_up=follow_up, which=which) for f in formats}
    return [f for f in formats if scored.get(keys[f], 0) < wanted]


def step_recorded(rows: Sequence[dict[str, Any]], key: tuple, example_ids: list[str]) -> bool:
    """Whether a row of this key already scored exactly these examples: a resumed run skips that step
    rather than appending it again, which would put a smaller n back in the table (the latest row of a
    key is what it shows) until the run caught up."""
    return any(key_of(r) == key and r.get("example_ids") == example_ids for r in rows)


#: how prompthone reads a reply to a field that enumerates its values: 2 since rule 8 of
#: `prompthone.program.parse` (the value a reply starts with, chatter after it dropped); 1 before
LABEL_SET_PARSE_REVISION = 2


@functools.cache  # `key_of` asks for every stored row
def parse_revision(task: str, fmt: str) -> int:
    """The revision of prompthone's reply reading a row measured: it matters only where an output field
    enumerates its values (rows from before it read as 1)."""
    bench = BENCHES.get(task)
    return LABEL_SET_PARSE_REVISION if bench is not None and enumerates_values(bench) and fmt != DSPY else 1


def enumerates_values(bench: Bench) -> bool:
    """Whether an output field of the task's program lists its allowed values, which rule 8 of the parser
    reads a reply against."""
    return any(find_labels(d) for d in bench.outputs.values() if d)


def layout_revision(fmt: str, demos: int) -> int:
    """The revision of prompthone's layouts a row measured (`DEMO_LAYOUT_REVISION`; 1 before it existed):
    it matters only where prompthone renders demos."""
    return DEMO_LAYOUT_REVISION if demos and fmt != DSPY else 1


def row_key(
    task: str,
    model: str,
    fmt: str,
    demos: int = 0,
    revision: int | None = None,
    reasoning: str = "step",
    follow_up: bool = False,
    parsed: int | None = None,
    which: str = FIRST_SAMPLE,
) -> tuple[str, str, str, int, int, str, bool, int, str]:
    """A row is measured again when what it sends changed: a newer layout revision is a new row, and so
    is another wording of the reasoning field (DSPy's side renders its own, whatever it is), and so is
    a prompthone row whose modules asked again for an output their reply lacked (`--follow-up`); and
    when how its replies are read changed (`parsed`, the parse revision; the caches replay the replies)."""
    rev = layout_revision(fmt, demos) if revision is None else revision
    parse_rev = parse_revision(task, fmt) if parsed is None else parsed
    reasoning = "step" if fmt == DSPY else reasoning
    return (task, model, fmt, demos, rev, reasoning, follow_up and fmt != DSPY, parse_rev, which)


def key_of(r: dict[str, Any]) -> tuple[str, str, str, int, int, str, bool, int, str]:
    """A stored row's key (rows from before a key field existed read as its default)."""
    return row_key(r["task"], r["model"], r["format"], r.get("demos", 0), r.get("demo_layout_revision", 1),
                   r.get("reasoning", "step"), r.get("follow_up", False), r.get("parse_revision", 1),
                   r.get("sample", FIRST_SAMPLE))  # fmt: skip


def row_task(r: dict[str, Any]) -> str:
    """The task as the table names it: with `+K demos` when the row's program carried demos, and the
    reasoning field's wording when it is not the module's own."""
    name = f"{r['task']} +{r['demos']} demos" if r.get("demos") else r["task"]
    reasoning = r.get("reasoning", "step")
    bench = BENCHES.get(r["task"])
    worded_otherwise = bench is not None and bench.kind == "cot" and reasoning != DEFAULT_REASONING
    name = f"{name} [reasoning: {reasoning}]" if worded_otherwise and r["format"] != DSPY else name
    name = f"{name} [follow-up]" if r.get("follow_up") else name
    return f"{name} [{HELD_OUT}]" if r.get("sample", FIRST_SAMPLE) == HELD_OUT else name


# ----------------------------------------------------------------------------------------- table
def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: one line per (task, model), one column per format: accuracy, CI and n."""
    formats = [f for f in ALL_FORMATS if any(r["format"] == f for r in rows)]
    lines = [
        "| task | model | " + " | ".join(formats) + " |",
        "|---|---|" + "---|" * len(formats),
    ]
    seen: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in rows:  # the last row of a (task, model, format) is its latest step
        seen.setdefault((row_task(r), r["model"]), {})[r["format"]] = r
    for (task, model), by_fmt in seen.items():
        cells = []
        for f in formats:
            r = by_fmt.get(f)
            if r is None:
                cells.append("")
                continue
            pf = f", {r['parse_failures']} unparsed" if r.get("parse_failures") else ""
            cells.append(f"{100 * r['mean']:.1f} ({100 * r['lo']:.0f}-{100 * r['hi']:.0f}) n={r['n']}{pf}")
        lines.append(f"| {task} | {model} | " + " | ".join(cells) + " |")
    means = []
    for f in formats:
        vals = [by[f]["mean"] for by in seen.values() if f in by]
        complete = all(f in by for by in seen.values())
        note = "" if complete else f" ({len(vals)} rows)"
        means.append(f"{100 * sum(vals) / len(vals):.1f}{note}" if vals else "")
    lines.append("| mean | | " + " | ".join(means) + " |")
    return "\n".join(lines)


#: the tasks issue 15 names for this comparison: the ones a `Predict` (or two) answers directly, and GSM8K,
#: answered by a `ChainOfThought`; the other rows are variants (demos, wordings) that inform, not decide
DIRECT_TASKS = ("trec-label", "sst2", "bbh/sports_understanding", "bbh/date_understanding",
                "bbh/object_counting", "hotpotqa")  # fmt: skip
REASONING_TASKS = ("gsm8k",)


def _as_measured(task: str, fmt: str) -> str:
    """The table's name of a task's zero-shot row under `fmt` as a module starts by default: a
    `ChainOfThought` asks again for a missing answer (`default_follow_up`), DSPy's side is its own."""
    follows_up = BENCHES[task].kind == "cot" and fmt != DSPY
    return f"{task} [follow-up]" if follows_up else task


def _below_dspy(
    latest: dict[tuple[str, str, str], dict[str, Any]], task: str, model: str, fmt: str, name_model: bool = False
) -> str | None:
    """`task` on `model` under `fmt`, when it scores below DSPy's rendering beyond DSPy's confidence
    interval (under its lower bound); None when it does not, or a row is missing."""
    row, dspy = latest.get((_as_measured(task, fmt), model, fmt)), latest.get((task, model, DSPY))
    if row is None or dspy is None or row["mean"] >= dspy["lo"]:
        return None
    where = f"{model} {task}" if name_model else task
    return (f"{where}: {100 * row['mean']:.1f} (n={row['n']}) vs {100 * dspy['mean']:.1f} "
            f"({100 * dspy['lo']:.0f}-{100 * dspy['hi']:.0f}, n={dspy['n']})")  # fmt: skip


def paired_gap(ahead: Sequence[dict[str, Any]], behind: Sequence[dict[str, Any]]) -> tuple[float, float, float, int]:
    """How far the rows `ahead` score above the rows `behind`, example by example where both scored the same
    example: (mean difference, 95% low, 95% high, examples), the normal interval of the paired differences.
    A lead on the mean that this interval straddles zero for is one the samples cannot tell from noise."""
    diffs: list[float] = []
    for a, b in zip(ahead, behind, strict=True):
        theirs = dict(zip(b["example_ids"], b["scores"], strict=True))
        diffs += [s - theirs[i] for i, s in zip(a["example_ids"], a["scores"], strict=True) if i in theirs]
    n = len(diffs)
    if n < 2:
        return (math.nan, math.nan, math.nan, n)
    mean = sum(diffs) / n
    half = Z95 * math.sqrt(sum((d - mean) ** 2 for d in diffs) / (n - 1) / n)
    return (mean, mean - half, mean + half, n)


def start_format(model: str) -> str:
    """The format a `Predict` starts in on `model` (a row's model label, `0.5b`): the catalog's start format
    for the model, else prompthone's default."""
    return start_format_of(MODELS.get(model, model)) or DEFAULT_FORMAT


def verdict(rows: list[dict[str, Any]]) -> str:
    """Markdown: the two targets of issue 15, item 1, per model and over both. For each format, its mean over
    the directly answered tasks (the best one marked) and the tasks where it scores below DSPy's rendering
    beyond DSPy's confidence interval (GSM8K under a format is its `ChainOfThought` start in it, asking again);
    then whether the default start (each model's `start_format`, and `REASONING_FORMAT` for GSM8K) meets
    both. A mean needs every task; one over rows not yet at their whole sample shows the least n."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if not r.get("demos"):
            latest[(row_task(r), r["model"], r["format"])] = r
    formats = [f for f in ALL_FORMATS if any(k[2] == f for k in latest)]
    models = list(dict.fromkeys(r["model"] for r in rows))
    groups = [(m, [m]) for m in models] + ([("both", models)] if len(models) > 1 else [])
    lines = ["| model | format | mean of the direct tasks | below DSPy's CI |", "|---|---|---|---|"]
    calls = []
    for name, group in groups:
        several = len(group) > 1
        means: dict[str, float] = {}
        cells: dict[str, str] = {}
        for f in formats:
            got = [latest.get((_as_measured(t, f), m, f)) for m in group for t in DIRECT_TASKS]
            found = [r for r in got if r is not None]
            if len(found) < len(got):
                cells[f] = f"{len(found)} of {len(got)} tasks measured"
                continue
            means[f] = sum(r["mean"] for r in found) / len(found)
            partial = any(r.get("partial") for r in found)
            cells[f] = f"{100 * means[f]:.1f}" + (f" (n>={min(r['n'] for r in found)})" if partial else "")
        best = max(means, key=means.__getitem__) if means else None
        own = {m: start_format(m) for m in group}
        mixed = len(set(own.values())) > 1  # the models start in different formats
        for f in formats:
            tasks = () if f == DSPY else (*DIRECT_TASKS, *REASONING_TASKS)
            below = [b for m in group for t in tasks if (b := _below_dspy(latest, t, m, f, several))]
            tag = " (default)" if not mixed and f in own.values() else ""
            mean = f"**{cells[f]}**" if f == best else cells[f]
            none = "none" if f in means and f != DSPY else ""
            lines.append(f"| {name} | {f}{tag} | {mean} | {'; '.join(below) or none} |")
        start = [latest.get((_as_measured(t, own[m]), m, own[m])) for m in group for t in DIRECT_TASKS]
        starts = [b for m in group for t in DIRECT_TASKS if (b := _below_dspy(latest, t, m, own[m], several))]
        starts += [
            b for m in group for t in REASONING_TASKS if (b := _below_dspy(latest, t, m, REASONING_FORMAT, several))
        ]
        start_mean = None if None in start else sum(r["mean"] for r in start) / len(start)
        if mixed:  # each model in its own start: a row of its own
            cell = "not measured on every task" if start_mean is None else f"{100 * start_mean:.1f}"
            lines.append(f"| {name} | each model's start | {cell} | {'; '.join(starts) or 'none'} |")
        if start_mean is None or best is None:
            best_call = "not measured on every task"
        elif start_mean >= means[best]:
            best_call = "best on the mean"
        else:
            best_call = f"below `{best}` on the mean"
            ahead = [latest[(_as_measured(t, best), m, best)] for m in group for t in DIRECT_TASKS]
            gap, lo, hi, n = paired_gap(ahead, start)
            best_call += (f" by {100 * gap:.1f} points (paired over {n} examples: 95% CI "
                          f"{100 * lo:+.1f} to {100 * hi:+.1f})")  # fmt: skip
        named = ", ".join(f"`{own[m]}` on {m}" for m in group) if mixed else f"`{own[group[0]]}`"
        calls.append(f"- {name}: the default start ({named}, `{REASONING_FORMAT}` for GSM8K) is "
                     f"{best_call}; below DSPy's CI on {'; '.join(starts) or 'no task'}")  # fmt: skip
    return "\n".join([*lines, "", *calls])


def held_out_check(rows: list[dict[str, Any]]) -> str:
    """Markdown: each model's start format against every other format measured on the held-out sample
    (`--held-out`) of the directly answered tasks: the means, and the paired interval of the start's lead,
    since the start was chosen on the first sample and a lead there may be the sample's. Empty without
    held-out rows."""
    latest: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("sample") == HELD_OUT and not r.get("demos") and r["task"] in DIRECT_TASKS:
            latest[(r["task"], r["model"], r["format"])] = r
    lines = []
    for model in dict.fromkeys(k[1] for k in latest):
        start = start_format(model)
        tasks = [t for t in DIRECT_TASKS if (t, model, start) in latest]
        others = [f for f in ALL_FORMATS if f != start and all((t, model, f) in latest for t in tasks)]
        if not tasks or not others:
            continue
        mine = [latest[(t, model, start)] for t in tasks]
        n = sum(r["n"] for r in mine)
        parts = [f"start `{start}` {100 * sum(r['mean'] for r in mine) / len(mine):.1f}"]
        for f in others:
            theirs = [latest[(t, model, f)] for t in tasks]
            gap, lo, hi, paired = paired_gap(mine, theirs)
            parts.append(f"`{f}` {100 * sum(r['mean'] for r in theirs) / len(theirs):.1f} (the start ahead by "
                         f"{100 * gap:+.1f}, 95% CI {100 * lo:+.1f} to {100 * hi:+.1f}, {paired} paired)")  # fmt: skip
        lines.append(f"- {model}, held-out sample ({len(tasks)} tasks: {', '.join(tasks)}; {n} examples): "
                     + "; ".join(parts))  # fmt: skip
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ main
def reasoning_of(task: str, args: argparse.Namespace) -> str:
    """`--reasoning` where the task's program reasons; a program without a reasoning field keeps "step"
    (the name its rows were keyed by before the field existed)."""
    return args.reasoning if BENCHES[task].kind == "cot" else "step"


def bench_for(task: str, args: argparse.Namespace) -> Bench:
    """The task's program with the reasoning field `--reasoning` words, where the program reasons."""
    bench = BENCHES[task]
    return replace(bench, reasoning=REASONING[args.reasoning]) if bench.kind == "cot" else bench


def which_sample(args: argparse.Namespace) -> str:
    return HELD_OUT if args.held_out else FIRST_SAMPLE


def held_out_field(args: argparse.Namespace) -> dict[str, str]:
    """A held-out row says so; a row of the first sample has no field (as every row had before it existed)."""
    return {"sample": HELD_OUT} if args.held_out else {}


def steps_of(n: int, chunk: int) -> list[int]:
    return [*range(chunk, n, chunk), n]


def run_task(
    task: str, model: str, formats: list[str], lm: LM, url: str, args: argparse.Namespace, steps: Sequence[int] = ()
) -> None:
    """Every format on the first `--chunk` examples, then on the first 2 * chunk, ...: at any stop the
    formats have been scored on the same examples (a paired comparison), and each step replays the
    earlier examples from the caches. A row per step is appended; the last one (all examples) is final.
    `steps` (sizes) runs only those steps.
    """
    bench = bench_for(task, args)
    whole = sample(bench, args.data_root, which_sample(args))
    examples = whole[: args.limit]
    demos = demos_for(bench, args.demos, args.data_root)
    results = Path(args.results)
    recorded = load_rows(results)  # read once: the rows this call appends are steps it will not meet again
    for k in steps or steps_of(len(examples), args.chunk):
        part = examples[:k]
        for fmt in formats:
            key = row_key(task, model, fmt, len(demos), reasoning=reasoning_of(task, args), follow_up=args.follow_up,
                          which=which_sample(args))  # fmt: skip
            if step_recorded(recorded, key, [ex.id for ex in part]):
                continue  # a stopped run's earlier steps: their rows stand, and the table keeps their latest n
            t0, load0 = time.perf_counter(), os.getloadavg()[0]
            if fmt == DSPY:
                out = score_dspy(bench, part, url, f"qwen2.5-coder-{model}", args, demos)
            else:
                out = score_prompthone(bench, fmt, part, lm, args.data_root, demos, follow_up=args.follow_up)
            mean, lo, hi = mean_ci(out["scores"])
            row = {
                "task": task, "model": model, "format": fmt, "demos": len(demos), "reasoning": reasoning_of(task, args),
                "follow_up": args.follow_up and fmt != DSPY, **held_out_field(args),
                "demo_layout_revision": layout_revision(fmt, len(demos)),
                "parse_revision": parse_revision(task, fmt), "n": len(part),
                "partial": k < len(whole),  # of the task's whole sample: a `--limit` run's last step is partial too
                "mean": mean, "lo": lo, "hi": hi, **out, "max_tokens": bench.max_tokens,
                "wall_s": round(time.perf_counter() - t0, 1), "load_avg_start": load0,
                "example_ids": [ex.id for ex in part], "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "commit": git_commit(), "machine": machine(),
                "command": " ".join(sys.argv),
            }  # fmt: skip
            with results.open("a") as fh:
                fh.write(json.dumps(row) + "\n")
            print(f"{row_task(row)} {model} {fmt}: {100 * mean:.1f}% ({100 * lo:.1f}-{100 * hi:.1f}) n={len(part)} "
                  f"unparsed={out['parse_failures']} wall={row['wall_s']}s", flush=True)  # fmt: skip
        print(table(load_rows(results)), flush=True)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="0.5b,1.5b", help=f"comma-separated, from {list(MODELS)}")
    p.add_argument("--tasks", default=",".join(BENCHES), help=f"comma-separated, from {list(BENCHES)}")
    p.add_argument("--formats", default=",".join(ALL_FORMATS), help=f"comma-separated, from {list(ALL_FORMATS)}")
    p.add_argument("--results", default=str(ROOT / "docs" / "results" / "formats.jsonl"))
    p.add_argument(
        "--cache-dir",
        default=str(ROOT / "benchmarks" / "cache" / "formats"),
        help="prompthone's and DSPy's answers (kept in the repository, so a clone replays what was paid for)",
    )
    p.add_argument("--data-root", default=None)
    p.add_argument("--port", type=int, default=18439, help="the model server's port (part of the cache keys)")
    p.add_argument("--threads", type=int, default=2, help="llama.cpp threads")
    p.add_argument("--dspy-python", default=str(ROOT / ".venv-dspy" / "bin" / "python"))
    p.add_argument("--chunk", type=int, default=20, help="score every format on this many more examples at a time")
    p.add_argument("--interleave", action="store_true", help="the tasks take turns, a chunk at a time")
    p.add_argument("--limit", type=int, default=None, help="only the first N examples of each sample (smoke runs)")
    p.add_argument(
        "--demos",
        type=int,
        default=0,
        help="give each program this many labelled demos from the training split (label-covering, seeded; the "
        "same on both sides): formats compared where MIPRO works, with demos (one-module Predict tasks)",
    )
    p.add_argument(
        "--reasoning",
        default=DEFAULT_REASONING,
        choices=list(REASONING),
        help="how chain-of-thought programs describe their reasoning field: "
        + "; ".join(f"{k}: {v!r}" for k, v in REASONING.items())
        + f" (default {DEFAULT_REASONING}: the module's own)",
    )
    p.add_argument(
        "--follow-up",
        action="store_true",
        help="build prompthone's modules with follow_up=True (ask once more for an output a reply lacked)",
    )
    p.add_argument(
        "--held-out",
        action="store_true",
        help="score a second seeded sample of each task, disjoint from the first (on which each model's start "
        "format was chosen): rows marked [held-out], and `--report` checks the choice on them",
    )
    p.add_argument("--report", action="store_true", help="print the table of the results file and stop")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    results = Path(args.results)
    if args.report:
        print(table(load_rows(results)))
        print()
        print(verdict(load_rows(results)))
        if check := held_out_check(load_rows(results)):
            print()
            print(check)
        return
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    formats = [f.strip() for f in args.formats.split(",") if f.strip()]
    checks = (("--models", models, MODELS), ("--tasks", tasks, BENCHES), ("--formats", formats, ALL_FORMATS))
    for what, got, allowed in checks:
        bad = [x for x in got if x not in allowed]
        if bad:
            raise SystemExit(f"{what}: unknown {bad}; expected some of {list(allowed)}")
    if DSPY in formats and not Path(args.dspy_python).exists():
        raise SystemExit(f"--dspy-python {args.dspy_python} does not exist; run `make bench-dspy-env` first")
    Path(args.cache_dir).mkdir(parents=True, exist_ok=True)
    results.parent.mkdir(parents=True, exist_ok=True)
    rows = load_rows(results)
    for model in models:
        which = which_sample(args)
        wanted = {t: len(sample(BENCHES[t], args.data_root, which)[: args.limit]) for t in tasks}
        left = {
            t: left_to_score(
                rows, formats, wanted[t], t, model, args.demos, reasoning_of(t, args), args.follow_up, which
            )
            for t in tasks
        }
        todo = [t for t in tasks if left[t]]
        if not todo:
            continue
        gguf, _ = resolve_gguf(MODELS[model])
        alias = f"qwen2.5-coder-{model}"
        with llama_server(gguf, alias=alias, n_ctx=4096, threads=args.threads, timeout_s=600, port=args.port) as url:
            cache = Path(args.cache_dir) / f"responses-{alias}.sqlite"
            lm = LM(f"openai/{alias}@{url}", cache=str(cache), max_concurrency=1, timeout_s=600)
            if args.interleave:  # the tasks take turns, a chunk at a time
                for k in sorted({k for t in todo for k in steps_of(wanted[t], args.chunk)}):
                    for task in todo:
                        if k in steps_of(wanted[task], args.chunk):
                            run_task(task, model, left[task], lm, url, args, steps=[k])
            else:
                for task in todo:
                    run_task(task, model, left[task], lm, url, args)
    print(table(load_rows(results)))


if __name__ == "__main__":
    main()
