"""Side by side with DSPy (issue 8, items 1-2; issue 15, item 5): one command per task and seed.

    make bench-dspy-env      # once: DSPy in .venv-dspy
    # at MIPROv2's light defaults, no call cap (issue 15):
    .venv/bin/python benchmarks/compare_dspy.py --task trec-label --preset light \
        --n-train 100 --n-val 100 --n-test 200 --seed 0 \
        --methods zero-shot,mipro,mipro-proposer,dspy-zero-shot,dspy-miprov2
    # at reduced sizes with a cap (issue 8):
    .venv/bin/python benchmarks/compare_dspy.py --task trec --n-train 20 --n-val 20 --n-test 60 --cap 150

Starts `llama_cpp.server` with the embedded model (one llama.cpp thread) on 127.0.0.1:`--port`, then
runs, one after another against that one server, on the same seeded train / validation / test split:

* prompthone `zero-shot`: the task's start program scored on the test split (no optimization);
* prompthone `mipro`, `opro`, `gradsum`: `prompthone.runs.runner.run_optimization` with the task
  model `openai/<alias>@<url>` (the proposer is the same model), `Budget(max_lm_calls=cap)`;
  `mipro-proposer` is `mipro` with `--proposer-model` (default the embedded 1.5B, in-process, one
  thread) proposing instructions;
* DSPy `MIPROv2` and `COPRO` (and DSPy's rendering of the same zero-shot program), in `.venv-dspy`
  through `benchmarks/dspy_side.py`: the same split, the same prompthone metric object, the same
  signature (field names and descriptions), instructions and (HotPotQA) the same BM25 index; every
  request goes through `CallCap`.

`--preset light` runs both MIPROs at their own light defaults: DSPy `MIPROv2(auto="light")` (DSPy picks
its candidates, trials, minibatch and demos) and prompthone `mipro` with `preset=light` and nothing
overridden; the `--num-candidates`, `--num-trials`, `--minibatch-size`, `--full-eval-every`,
`--max-demos` and `--lean-proposer` sizes then apply to neither. `--mipro-set KEY=VALUE` changes one
MIPRO setting of the prompthone rows for an ablation (`cover_labels=false`): a row of its own, named
`mipro [cover_labels=false]` in the table. A `mipro` row whose formats searched differ from what
prompthone's default searches on this task (`--search-formats`, or a row from under an earlier default)
is named by them, `mipro [search_formats=tags,labels]`, and stands beside the default's row.

Rows are cached. Each row has a key made of what decides its result (task, seed, method, split sizes,
model, max_tokens, cap and the method's resolved settings; never the commit or the date). A row whose
key is already in the results file is not run again. Each row's LM answers are kept in a file of its
own, `--cache-dir/<task>-seed<seed>-<method>-<key>.sqlite` (the prompthone response cache, or the DSPy
side's `CallCap` file), so a row that did not finish replays what it had paid for when run again. The
server listens on a fixed port because its URL is part of prompthone's cache keys. A new prompthone
optimization row's file starts as a copy of the zero-shot row's (the row records it as
`cache_seeded_from`): its run scores the start program on test with the same requests, which are then
not paid twice; its optimization calls and wall time are unaffected.

With `--cap N` (no cap by default), the cap is on paid calls to the model during the optimization,
all roles together (task, teacher, proposer: one model serves them all here), on both sides:
prompthone's budget stops the optimizer cleanly at the cap and keeps the best candidate so far; on
the DSPy side `CallCap` refuses the request that would go over it (DSPy has no budget of its own),
and if any request was refused the row uses the best program that had been scored on the whole
validation set before the cap, and says so. Repeated identical requests are free on both sides
(prompthone's run cache; `CallCap`'s replay). Scoring on the test split is outside the cap.

Sample efficiency: for each method, the task-model calls (task + teacher, not proposer) it had spent
when a whole-validation score first reached the best whole-validation score DSPy's MIPROv2 reached.
prompthone's come from the run's SQLite (`ph_trials` and `ph_lm_calls` matched by time); DSPy's
from `CallCap`'s marks around each `dspy.Evaluate` call.

Writes one JSON line per row to `--results` (default `docs/results/compare_dspy-<task>-seed<seed>.jsonl`;
`compare_dspy-<model>-<task>-seed<seed>.jsonl` for a `--model` other than the default) as soon as the
row is done, and prints the table in Markdown. A row that replayed an earlier session's answers shows
its optimize wall as `(resumed)`: that wall counts the last session only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import hashlib
import json
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console

from machine import cpu_model
from prompthone.evaluate import Evaluator
from prompthone.evaluate.stats import mean_ci
from prompthone.lm import LM
from prompthone.lm.availability import model_status
from prompthone.lm.local.assemble import resolve_gguf
from prompthone.lm.local.catalog import start_format_of
from prompthone.lm.settings import ONE_AT_A_TIME_ENV
from prompthone.optimize import Budget
from prompthone.optimize.format_search import for_start, format_choices
from prompthone.optimize.mipro.settings import MIPROSettings
from prompthone.program import ChainOfThought, Program
from prompthone.program.module import LEGACY_REASONING_DESCRIPTION
from prompthone.program.params import LEGACY_FORMAT, MODULE_DEFAULTS
from prompthone.program.render import DEMO_LAYOUT_REVISION
from prompthone.runs.config import parse_settings
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from prompthone.tasks import get_task
from prompthone.tasks.splits import task_splits
from sample_efficiency import best_score, calls_to_reach, prompthone_trajectory, trajectory_from_marks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from model_server import llama_server  # noqa: E402

DSPY_PYTHON = ROOT / ".venv-dspy" / "bin" / "python"
#: the embedded model served unless `--model` names another (the side by side's rows are on it)
DEFAULT_MODEL = "qwen2.5-coder-0.5b"
#: prompthone methods: the optimizer each runs (`zero-shot` runs none: it scores the start program)
PROMPTHONE_METHODS = {"zero-shot": None, "mipro": "mipro", "mipro-proposer": "mipro", "opro": "opro",
                      "gradsum": "gradsum"}  # fmt: skip
DSPY_METHODS = {"dspy-miprov2": "miprov2", "dspy-copro": "copro", "dspy-zero-shot": "none"}
ALL_METHODS = (*PROMPTHONE_METHODS, *DSPY_METHODS)
TARGET_METHOD = "dspy-miprov2"
#: how `ChainOfThought` worded its reasoning field until 2026-12-06: rows measured under it lack the key
LEGACY_REASONING = LEGACY_REASONING_DESCRIPTION
#: prompthone's MIPRO proposer max_tokens when nothing else is asked (both sides get the same)
DEFAULT_PROPOSER_MAX_TOKENS = {"preset": MIPROSettings().proposer_max_tokens, "sized": 150}


def proposer_max_tokens(args: argparse.Namespace) -> int:
    if args.proposer_max_tokens is not None:
        return int(args.proposer_max_tokens)
    return DEFAULT_PROPOSER_MAX_TOKENS["preset" if args.preset else "sized"]


def mipro_like(args: argparse.Namespace) -> dict[str, Any]:
    """The MIPRO sizes both sides get (names differ: DSPy's on the right in `dspy_settings`)."""
    return {
        "num_candidates": args.num_candidates,
        "num_trials": args.num_trials,
        "minibatch_size": args.minibatch_size,
        "full_eval_every": args.full_eval_every,
        "max_bootstrapped_demos": args.max_demos,
        "max_labeled_demos": args.max_demos,
    }


def prompthone_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method in ("mipro", "mipro-proposer"):
        searched = {} if args.search_formats is None else {"search_formats": searched_formats(args)}
        if args.preset:  # the preset as it stands: prompthone's own defaults, nothing overridden
            return {"preset": args.preset, "proposer_max_tokens": proposer_max_tokens(args), **searched,
                    **mipro_overrides(args)}  # fmt: skip
        s = {**mipro_like(args), "summary_batches": 1, "proposer_max_tokens": proposer_max_tokens(args), **searched}
        if args.lean_proposer:
            s |= {"ground_dataset": False, "ground_program": False}
        return s | mipro_overrides(args)
    if method == "opro":  # as many proposals per step as COPRO's breadth, the same proposer max_tokens
        return {"candidates_per_step": args.copro_breadth, "proposer_max_tokens": proposer_max_tokens(args)}
    if method == "gradsum":
        return {"beam_width": args.gradsum_beam, "edits_per_prompt": 1, "minibatch_size": args.minibatch_size,
                "max_gradients": args.gradsum_max_gradients}  # fmt: skip
    return {}


def mipro_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """`--mipro-set KEY=VALUE` (a JSON value, else the text): MIPRO settings changed for an ablation, such as
    `cover_labels=false`; they are part of the row's key and its name in the table (`variant`)."""
    try:
        return parse_settings(args.mipro_set)
    except ValueError as exc:
        raise SystemExit(f"--mipro-set {exc}") from None


def row_name(row: dict[str, Any], default_formats: Any = None) -> str:
    """A row's name in the tables: its method, the settings an ablation changed, and the formats its MIPRO
    searched where they are not `default_formats` (the default's, as it acts on the task's start: what
    `default_search_formats` returns), so a `--search-formats` row stands beside the default's instead of
    replacing it. A MIPRO row from before formats could be searched reads as `search_formats=off`."""
    variant = [row["variant"]] if row.get("variant") else []
    if row["method"] in ("mipro", "mipro-proposer") and "key" in row:
        searched = row["key"].get("settings", {}).get("search_formats")
        if searched != default_formats:
            variant.append(f"search_formats={format_names(searched)}")
    return f"{row['method']} [{', '.join(variant)}]" if variant else row["method"]


def format_names(value: Any) -> str:
    """A row key's `search_formats` as a short name: `off`, `tags,labels`, or `json:tags;labels:json`."""
    if not value:
        return "off"
    if isinstance(value, dict):
        return ";".join(f"{start}:{','.join(allowed)}" for start, allowed in value.items())
    return ",".join(value)


def default_search_formats(args: argparse.Namespace) -> Any:
    """The `search_formats` a row key names for this task under prompthone's default (None: nothing to search)."""
    return key_settings("mipro", argparse.Namespace(**{**vars(args), "search_formats": None})).get("search_formats")


def searched_formats(args: argparse.Namespace) -> Any:
    """`--search-formats`: `off` (no module searches its format) or the formats allowed; without it,
    prompthone's default as plain data (a mapping's lists as lists)."""
    if args.search_formats is None:
        return plain(MIPROSettings().search_formats)
    return False if args.search_formats == "off" else args.search_formats.split(",")


def plain(value: Any) -> Any:
    """A `search_formats` value as JSON reads it: tuples as lists, a mapping as a dict of those."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return list(value) if not isinstance(value, bool) else value


def key_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """The settings as a row key reads them: `search_formats` as it acts on this task's start (the
    default resolved; a mapping read at the start's format when every searching module starts in the
    same one; named only when some module searches its format), so a row keeps its key when a default
    changes what it means, and a row whose start has nothing to search keeps the key it had before
    formats could be searched."""
    settings = dict(method_settings(method, args))
    if method not in ("mipro", "mipro-proposer"):
        return settings
    if args.preset and "num_instructions" not in settings:
        # the preset's instruction pool as it stands (3 at light since MIPROv2's rule was adopted; rows from
        # before, with 6, lack the field): the same key as a row that set the count outright
        settings["num_instructions"] = MIPROSettings.build(args.preset).instructions_for(True)
    value = searched_formats(args)
    settings.pop("search_formats", None)
    searching = {f for f in start_formats(args).values() if len(format_choices(f, value)) > 1}
    if searching:
        acting = for_start(searching.pop(), value) if len(searching) == 1 else value
        settings["search_formats"] = plain(acting)
    return settings


def dspy_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method == "miprov2":
        if args.preset:
            return {"auto": args.preset}
        m = mipro_like(args)
        return {
            "num_candidates": m["num_candidates"],
            "num_trials": m["num_trials"],
            "minibatch_size": m["minibatch_size"],
            "minibatch_full_eval_steps": m["full_eval_every"],
            "max_bootstrapped_demos": m["max_bootstrapped_demos"],
            "max_labeled_demos": m["max_labeled_demos"],
            "view_data_batch_size": 10,
            "data_aware_proposer": not args.lean_proposer,
            "program_aware_proposer": not args.lean_proposer,
        }
    if method == "copro":
        return {"breadth": args.copro_breadth, "depth": args.copro_depth, "init_temperature": 1.4}
    return {}


def method_settings(method: str, args: argparse.Namespace) -> dict[str, Any]:
    if method in DSPY_METHODS:
        return dspy_settings(DSPY_METHODS[method], args)
    return prompthone_settings(method, args)


def sends_one_at_a_time(args: argparse.Namespace) -> bool:
    """`--one-at-a-time`, else whether this script starts the server: llama_cpp.server answers one request
    at a time, which a user names in PROMPTHONE_ONE_AT_A_TIME; someone else's server may serve several."""
    return args.one_at_a_time if args.one_at_a_time is not None else not args.base_url


def row_key(method: str, args: argparse.Namespace) -> dict[str, Any]:
    """What decides a row's result, and nothing else (no commit, date or path): equal keys, same row."""
    key = {
        "task": args.task, "seed": args.seed, "method": method, "model": args.model,
        "splits": {"train": args.n_train, "val": args.n_val, "test": args.n_test},
        "max_tokens": args.max_tokens, "cap": args.cap, "settings": key_settings(method, args),
    }  # fmt: skip
    if args.base_url:  # someone else's server: which one is part of what the row measured
        key["server"] = args.base_url
    if method in DSPY_METHODS:
        # "max_tokens": DSPy's limits reach llama_cpp.server as `max_tokens` (see dspy_side.CountedLM); rows
        # from before that (the limit sent only as `max_completion_tokens`, which the server ignores) lack it
        key |= {"proposer_max_tokens": proposer_max_tokens(args), "limit_sent_as": "max_tokens"}
    if method == "mipro-proposer":
        key["proposer_model"] = args.proposer_model
    if method not in DSPY_METHODS:
        formats = start_formats(args)
        if set(formats.values()) != {LEGACY_FORMAT}:  # rows from before formats were named were all "labels"
            key["start_formats"] = formats
        reasoning = start_reasoning(args)
        if set(reasoning.values()) - {LEGACY_REASONING}:  # rows from before it was keyed all had the old wording
            key["start_reasoning"] = reasoning
        follow_up = start_follow_up(args)
        if follow_up:  # rows from before it was keyed had no module that follows up
            key["start_follow_up"] = follow_up
    if method not in DSPY_METHODS and method != "zero-shot" and DEMO_LAYOUT_REVISION > 1:
        # an optimizer's candidates carry demos; a task's start program has none (its zero-shot row stands)
        key["demo_layout_revision"] = DEMO_LAYOUT_REVISION
    return key


def start_formats(args: argparse.Namespace) -> dict[str, str]:
    """The prompt format each module of the task's start program is in on `--model` (the model's start format
    from the catalog, or prompthone's default for the kind of module, unless the task names one): a row
    measured in other formats is another row."""
    return dict(_start_formats(args.task, args.data_root, args.model))


def start_reasoning(args: argparse.Namespace) -> dict[str, str]:
    """How each chain-of-thought module of the task's start program words its reasoning field: a row
    whose start asked for its reasoning otherwise sent other prompts, so it is another row."""
    return dict(_start_reasoning(args.task, args.data_root, args.model))


def start_follow_up(args: argparse.Namespace) -> list[str]:
    """The start program's modules that ask once more for an output a reply lacked (`follow_up`): a row
    whose start asks sends more calls where a reply is unreadable, so it is another row."""
    return [name for name, module in _start_program(args.task, args.data_root, args.model).named_modules().items()
            if module.follow_up]  # fmt: skip


@functools.cache
def _start_program(task: str, data_root: str | None, model: str) -> Program:
    # once per task: row keys are asked for several times a row, and a program may load a corpus (HotPotQA)
    return start_program(task, data_root, model)


def start_program(task: str, data_root: str | None, model: str) -> Program:
    """The task's start program as a run on the embedded `model` starts it (in the model's start format)."""
    program = get_task(task).make_program(data_root)
    program.adopt_start_formats(start_format_of(model))
    return program


def _start_formats(task: str, data_root: str | None, model: str) -> tuple[tuple[str, str], ...]:
    modules = _start_program(task, data_root, model).named_modules().items()
    return tuple((name, module.format) for name, module in modules)


def _start_reasoning(task: str, data_root: str | None, model: str) -> tuple[tuple[str, str], ...]:
    modules = _start_program(task, data_root, model).named_modules().items()
    return tuple(
        (name, next(f.description for f in m.signature.outputs if f.name == "reasoning"))
        for name, m in modules
        if isinstance(m, ChainOfThought)
    )


def key_hash(key: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]


def cache_path(method: str, args: argparse.Namespace) -> Path:
    """The file that keeps this row's LM answers, named so that a person can tell which row it is."""
    slug = args.task.replace("/", "-")
    return Path(args.cache_dir) / f"{slug}-seed{args.seed}-{method}-{key_hash(row_key(method, args))}.sqlite"


def cached_rows(results: Path) -> dict[str, dict[str, Any]]:
    """The rows already in the results file, by row key (rows written before keys existed have none)."""
    if not results.exists():
        return {}
    rows = [json.loads(line) for line in results.read_text().splitlines() if line.strip()]
    return {r["row_key"]: r for r in rows if r.get("row_key")}


def entries(db: Path, table: str) -> int:
    """How many answers a cache file held before the row ran (0: every call of the row was made now)."""
    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        con.close()


def run_plan(db: Path) -> dict[str, Any]:
    """The sizes a prompthone run planned (its "plan" step event: validation size, trials, minibatch, ...)."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        for (data,) in con.execute("SELECT data FROM ph_events WHERE kind = 'step' ORDER BY id"):
            info = json.loads(data)
            if info.get("stage") == "plan":
                return {k: v for k, v in info.items() if k not in ("stage", "storage", "study")}
        return {}
    finally:
        con.close()


def checkpoint(db: Path) -> None:
    """Fold a WAL-mode cache's log into the file itself, so that the file alone (what is committed) holds
    every answer of the row."""
    if db.exists():
        con = sqlite3.connect(db)
        try:
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()


def seed_from_zero_shot(method: str, args: argparse.Namespace, cache: Path) -> Path | None:
    """Start a new prompthone run's answer file as a copy of the zero-shot row's, and say from where.

    Every prompthone run scores its start program on the test split, with the very requests the
    zero-shot row made; without this the run pays for them again (400 calls, ~16 min, on hotpotqa-500).
    The zero-shot file holds test answers only, so the optimization itself still pays for every call
    (its calls and wall time are unchanged); a request the server now answers differently is simply paid.
    A row whose file exists (an earlier session's) is left as it is.
    """
    if method not in PROMPTHONE_METHODS or method == "zero-shot" or cache.exists():
        return None
    source = cache_path("zero-shot", args).resolve()
    if not source.exists():
        return None
    checkpoint(source)
    shutil.copyfile(source, cache)
    return source


async def run_zero_shot(url: str, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    """The task's start program on the test split, through the same server, split and metric as the runs."""
    task = get_task(args.task)
    parts = task_splits(
        task, n_train=args.n_train, n_val=args.n_val, n_test=args.n_test, seed=args.seed, root=args.data_root
    )
    lm = LM(f"openai/{args.alias}@{url}", cache=cache)
    program = start_program(args.task, args.data_root, args.model)
    evaluator = Evaluator(program, task.metric(), lm, concurrency=args.concurrency, max_tokens=args.max_tokens)
    t0 = time.perf_counter()
    res = await evaluator.evaluate(None, parts.test)
    u = lm.usage.as_dict()
    lo, hi = res.ci95
    return {
        "method": "zero-shot",
        "side": "prompthone",
        "settings": {},
        "test": {"score": res.mean, "ci95": [lo, hi], "n": res.n, "parse_failures": res.n_parse_failures},
        "calls": {},
        "cache_hits": {"task": int(u["cache_hits"])},
        "tokens": 0,
        "test_calls": int(u["paid_calls"]),
        "trajectory": None,
        "best_val": None,
        "stopped_by": "no optimization",
        "wall_s_optimization": 0.0,
        "wall_s_total": time.perf_counter() - t0,
    }


async def run_prompthone(method: str, url: str, args: argparse.Namespace, out_dir: Path, cache: Path) -> dict[str, Any]:
    os.environ["PROMPTHONE_RESPONSE_CACHE"] = str(cache.resolve())  # the runner's shared cache: this row's own
    spec = RunSpec(
        task=args.task,
        optimizer=PROMPTHONE_METHODS[method],
        model=f"openai/{args.alias}@{url}",
        proposer_model=args.proposer_model if method == "mipro-proposer" else None,
        threads=1,  # an embedded proposer (mipro-proposer) runs one llama.cpp thread, as the server does
        settings=prompthone_settings(method, args),
        n_train=args.n_train,
        n_val=args.n_val,
        n_test=args.n_test,
        seed=args.seed,
        data_root=args.data_root,
        concurrency=args.concurrency,
        max_tokens=args.max_tokens,
        # the server serves the model under --alias, which the catalog does not know: name its start format
        start_format=start_format_of(args.model) or MODULE_DEFAULTS,
        budget=Budget(max_lm_calls=args.cap),
    )
    t0 = time.perf_counter()
    out = await run_optimization(spec, out_dir=out_dir / "runs", console=Console())
    assert isinstance(out, RunOutcome)
    traj = prompthone_trajectory(out.run_dir / "run.sqlite", roles=("task", "teacher"))
    plan = run_plan(out.run_dir / "run.sqlite")
    if spec.optimizer == "mipro":  # the sizes the preset resolved to, next to the plan the run made of them
        m = MIPROSettings.build(**spec.settings)
        plan |= {
            "instructions": m.instructions_for(True), "demo_sets": m.n_demo_sets,
            "max_bootstrapped_demos": m.max_bootstrapped_demos, "max_labeled_demos": m.max_labeled_demos,
        }  # fmt: skip
    u = out.usage
    lo, hi = out.final_test.ci95
    slo, shi = out.start_test.ci95
    return {
        "method": method,
        "side": "prompthone",
        "settings": out.result.info.get("settings", spec.settings),
        "plan": plan,
        "test": {"score": out.final_test.mean, "ci95": [lo, hi], "n": out.final_test.n,
                 "parse_failures": out.final_test.n_parse_failures},
        "start_test": {"score": out.start_test.mean, "ci95": [slo, shi], "n": out.start_test.n,
                       "parse_failures": out.start_test.n_parse_failures},
        "calls": {role: int(u[role]["paid_calls"]) for role in ("task", "teacher", "proposer") if role in u},
        "cache_hits": {role: int(u[role]["cache_hits"]) for role in ("task", "teacher", "proposer") if role in u},
        "proposer_model": spec.proposer_model or spec.model,
        "tokens": sum(int(u[r]["prompt_tokens"] + u[r]["completion_tokens"]) for r in u),
        "test_calls": int(out.test_usage.get("paid_calls", 0)),
        "trajectory": traj,
        "best_val": out.result.best_score,
        "stopped_by": out.result.stopped_by,
        "wall_s_optimization": out.optimize_wall_s,
        "wall_s_total": time.perf_counter() - t0,
        "run_dir": str(out.run_dir),
        "proposals": out.proposals,
        "chosen": chosen_prompts(out),
    }  # fmt: skip


def chosen_prompts(out: RunOutcome) -> dict[str, dict[str, Any]]:
    """What the search chose per module, kept in the row (the run folder may be gone by the time the table is
    read): the instruction, its format and the number of demos (whether the instruction is the start's, a
    proposal kept as written or a repaired one is in the row's `proposals`)."""
    return {
        m: {"instruction": p.instruction, "format": p.format, "demos": len(p.demos)} for m, p in out.result.best.items()
    }


def run_dspy(method: str, url: str, args: argparse.Namespace, cache: Path) -> dict[str, Any]:
    name = DSPY_METHODS[method]
    job = {
        "job": "optimize", "method": name, "task": args.task, "data_root": args.data_root, "base_url": url,
        "model": args.alias, "n_train": args.n_train, "n_val": args.n_val, "n_test": args.n_test,
        "seed": args.seed, "cap": args.cap, "concurrency": args.concurrency, "max_tokens": args.max_tokens,
        "proposer_max_tokens": proposer_max_tokens(args), "settings": dspy_settings(name, args),
        "cache_path": str(cache.resolve()),
    }  # fmt: skip
    python = Path(args.dspy_python)
    t0 = time.perf_counter()
    log = Path(args.out) / f"{args.task.replace('/', '-')}-seed{args.seed}-{method}.stderr.log"
    print(f"  DSPy's progress: {log}", flush=True)
    with open(log, "w") as err:  # written as it runs, so a long optimization can be watched
        proc = subprocess.run(
            [str(python), str(ROOT / "benchmarks" / "dspy_side.py")],
            input=json.dumps(job),
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"the DSPy side failed ({proc.returncode}); see {log}:\n{log.read_text()[-3000:]}")
    r = json.loads(proc.stdout.strip().splitlines()[-1])
    mean, lo, hi = mean_ci(r["test_scores"])
    paid = r["usage_optimization"]["paid"]
    tok = r["usage_optimization"]["tokens"]
    traj = trajectory_from_marks(r["marks"], args.n_val, role="task")
    return {
        "method": method,
        "side": "dspy",
        "dspy": r["dspy"],
        "settings": job["settings"],
        "test": {"score": mean, "ci95": [lo, hi], "n": len(r["test_scores"]), "parse_failures": r["test_failures"]},
        "calls": {"task": int(paid.get("task", 0)), "proposer": int(paid.get("proposer", 0))},
        "replayed": r["usage_optimization"]["replayed"],
        "from_file": r["usage_optimization"].get("from_file", {}),
        "test_from_file": r["usage_test_scoring"].get("from_file", {}),
        "tokens": int(sum(tok.values())),
        "test_calls": int(sum(r["usage_test_scoring"]["paid"].values())),
        "trajectory": traj,
        "best_val": best_score(traj),
        "stopped_by": r["stopped_by"] + (f" (scored: {r['fallback']})" if r.get("fallback") else ""),
        "best_program": r["best_program"],
        "wall_s_optimization": r["wall_s_optimization"],
        "wall_s_total": time.perf_counter() - t0,
    }


def fmt_score(t: dict[str, Any]) -> str:
    return f"{t['score']:.3f} ({t['ci95'][0]:.3f}-{t['ci95'][1]:.3f}), n={t['n']}"


def markdown(rows: list[dict[str, Any]], target: float | None, default_formats: Any = None) -> str:
    head = (
        "| method | test score (95% CI), n | test parse failures | optimization calls: task / teacher / proposer "
        "| tokens | best val | task calls to reach DSPy MIPROv2's best val | optimize wall | stopped by |\n"
        "|---|---|---|---|---|---|---|---|---|\n"
    )
    lines = []
    for r in rows:
        c = r.get("calls", {})
        calls = f"{c.get('task', 0)} / {c.get('teacher', '-')} / {c.get('proposer', 0)}" if c else "0"
        reach = "-"
        if target is not None and r.get("trajectory"):
            n = calls_to_reach(r["trajectory"], target)
            reach = str(n) if n is not None else "not reached"
        best = f"{r['best_val']:.3f}" if r.get("best_val") is not None else "-"
        wall = optimize_wall(r)
        failures = r["test"].get("parse_failures", 0)
        lines.append(
            f"| {row_name(r, default_formats)} | {fmt_score(r['test'])} | {failures} | {calls} | "
            f"{r.get('tokens', 0):,} | {best} | {reach} | {wall} | {r.get('stopped_by', '-')} |"
        )
    return head + "\n".join(lines) + choices_markdown(rows, default_formats)


def optimize_wall(row: dict[str, Any]) -> str:
    """The optimization's wall time, marked `resumed` where the row's answer file held answers of an earlier
    session (beyond the zero-shot row's test answers it may start from): that wall counts only what the
    last session paid, so it is not comparable with a row run in one go."""
    if not row.get("wall_s_optimization") or row.get("method") in ("zero-shot", "dspy-zero-shot"):
        return "-"  # nothing optimized (DSPy's zero-shot row times an empty compile)
    resumed = row.get("cache_entries_at_start") and not row.get("cache_seeded_from")
    return f"{row['wall_s_optimization'] / 60:.1f} min" + (" (resumed)" if resumed else "")


def choices_markdown(rows: list[dict[str, Any]], default_formats: Any = None) -> str:
    """What each prompthone optimization chose per module, and how its instruction proposals fared against
    the task's contract (issue 15, items 3 and 6); rows from before these were recorded are left out.
    The contract counts are the run's, over all its modules, so they stand on the run's first line only
    (repeated on every module's line they read as each module's)."""
    lines = []
    for r in rows:
        chosen, report = r.get("chosen"), r.get("proposals") or {}
        if not chosen:
            continue
        shares = (
            f"{report.get('checked', 0)} checked: {report.get('kept', 0)} kept / {report.get('repaired', 0)} repaired"
            f" / {report.get('rejected', 0)} rejected"
        )
        name = row_name(r, default_formats)
        for i, (m, c) in enumerate(chosen.items()):
            which = (report.get("chosen") or {}).get(m, "-")
            text = c["instruction"].replace("|", "\\|").replace("\n", " ")
            run_shares = shares if i == 0 else ""
            lines.append(f"| {name} | {m} | {which} | {c['format']} | {c['demos']} | {run_shares} | {text} |")
    if not lines:
        return ""
    return (
        "\n\n| method | module | instruction chosen | format | demos | the run's proposals (contract) | instruction |\n"
        "|---|---|---|---|---|---|---|\n" + "\n".join(lines)
    )


def default_results_path(args: argparse.Namespace) -> Path:
    """Where rows go without `--results`: one file per task and seed, and one per model besides the default
    model's, so that a report never shows one model's row in place of another's (rows are named by method)."""
    slug = args.task.replace("/", "-")
    model = "" if args.model == DEFAULT_MODEL else f"{args.model}-"
    return ROOT / "docs" / "results" / f"compare_dspy-{model}{slug}-seed{args.seed}.jsonl"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", required=True, help="built-in task: trec, hotpotqa, ...")
    p.add_argument("--methods", default=",".join(ALL_METHODS), help=f"comma-separated, of {', '.join(ALL_METHODS)}")
    p.add_argument("--model", default=DEFAULT_MODEL, help="embedded model name (GGUF) to serve")
    p.add_argument("--alias", default="qwen0.5b", help="the model's name on the server")
    p.add_argument("--n-train", type=int, default=20)
    p.add_argument("--n-val", type=int, default=20)
    p.add_argument("--n-test", type=int, default=60)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-root")
    p.add_argument("--cap", type=int, default=None, help="paid model calls per optimization, all roles (default: none)")
    p.add_argument(
        "--preset",
        choices=["light", "medium", "heavy"],
        help="both MIPROs at their own defaults for this size: DSPy MIPROv2(auto=...), prompthone mipro preset=...",
    )
    p.add_argument(
        "--proposer-model",
        default="local/qwen2.5-coder-1.5b",
        help="the proposer of the mipro-proposer row (an embedded model runs in-process, one thread)",
    )
    p.add_argument("--max-tokens", type=int, default=32, help="task-model max_tokens, both sides")
    p.add_argument(
        "--proposer-max-tokens",
        type=int,
        default=None,
        help=f"both sides (default: {DEFAULT_PROPOSER_MAX_TOKENS['preset']} with --preset, as prompthone's MIPRO, "
        f"else {DEFAULT_PROPOSER_MAX_TOKENS['sized']})",
    )
    p.add_argument(
        "--port", type=int, default=8377, help="the server's port: fixed, since cached answers key on its URL"
    )
    p.add_argument(
        "--base-url",
        help="an OpenAI-compatible server already running (serving --alias) instead of starting llama_cpp.server",
    )
    p.add_argument(
        "--one-at-a-time",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="name the server in PROMPTHONE_ONE_AT_A_TIME for the prompthone rows, as the README tells a user of "
        "llama_cpp.server to (requests sent one at a time, a candidate's examples in a row, so the server reuses "
        "its KV cache; the order changes, never a request). Default: on for the server this script starts, off "
        "with --base-url. Recorded in each row, not its key",
    )
    p.add_argument("--cache-dir", default=str(ROOT / "benchmarks" / "cache"), help="one LM answer file per row")
    p.add_argument("--concurrency", type=int, default=2, help="requests in flight (prompthone) = DSPy num_threads")
    p.add_argument("--n-ctx", type=int, default=4096)
    p.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="llama.cpp threads of the model server (both sides share it; recorded in each row, not its key)",
    )
    p.add_argument(
        "--server-prompt-cache-mb",
        type=int,
        default=0,
        help="the server's RAM cache of evaluated prompts, in MiB (0: off; tests/llama_server_main.py): pays off on "
        "multi-stage programs whose modules carry long demos. Both sides share it; recorded in each row, not its key",
    )
    p.add_argument("--num-candidates", type=int, default=3, help="MIPRO: instruction and demo-set candidates")
    p.add_argument("--num-trials", type=int, default=6)
    p.add_argument("--minibatch-size", type=int, default=10)
    p.add_argument("--full-eval-every", type=int, default=3)
    p.add_argument("--max-demos", type=int, default=2, help="MIPRO: bootstrapped and labelled demos, each")
    p.add_argument(
        "--mipro-set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a MIPRO setting changed for an ablation (JSON value; repeatable), e.g. cover_labels=false: part of "
        "the row's key, shown as `mipro [cover_labels=false]`",
    )
    p.add_argument(
        "--search-formats",
        default=None,
        help="prompthone mipro rows: let the search also choose each module's prompt format among these "
        "(comma-separated, e.g. labels,json; the start's format is always a choice; `off`: none): setting "
        "search_formats; default: prompthone's own default",
    )
    p.add_argument(
        "--lean-proposer",
        action="store_true",
        help="MIPRO proposals without the dataset summary and program description, both sides (fewer, "
        "shorter proposer calls on a tiny budget)",
    )
    p.add_argument("--gradsum-beam", type=int, default=2, help="GRAD-SUM beam width")
    p.add_argument("--gradsum-max-gradients", type=int, default=3, help="GRAD-SUM gradients per prompt")
    p.add_argument("--copro-breadth", type=int, default=3, help="COPRO breadth = OPRO candidates per step")
    p.add_argument("--copro-depth", type=int, default=2)
    p.add_argument("--dspy-python", default=str(DSPY_PYTHON))
    p.add_argument("--out", default="prompthone-runs/compare-dspy")
    p.add_argument("--results", default=None, help="JSON lines (default docs/results/compare_dspy-TASK-seedSEED.jsonl)")
    p.add_argument("--label", default="", help="a note stored with every row (e.g. 'tiny proof run')")
    p.add_argument("--report", action="store_true", help="only print the table of the rows in --results")
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(ALL_METHODS))
    if unknown:
        raise SystemExit(f"unknown method(s) {unknown}; known: {', '.join(ALL_METHODS)}")
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = Path(args.results) if args.results else default_results_path(args)
    console = Console()
    if args.report:
        if not results.exists():
            raise SystemExit(f"{results}: no results file; run the benchmark first, or pass --results")
        print_table(
            [json.loads(line) for line in results.read_text().splitlines() if line.strip()],
            console,
            default_search_formats(args),
        )
        return
    if args.mipro_set:  # a mistyped setting stops here, not after the server has started
        try:
            MIPROSettings.build(**prompthone_settings("mipro", args))
        except (TypeError, ValueError) as exc:
            raise SystemExit(f"--mipro-set: {exc}") from None
    done = cached_rows(results)
    todo = []
    for method in methods:
        key = key_hash(row_key(method, args))
        if key in done:
            console.print(f"{method}: row {key} is already in {results}; not run again")
        else:
            todo.append(method)
    if "mipro-proposer" in todo:
        status = model_status(args.proposer_model)
        if not status.ready:
            raise SystemExit(f"--proposer-model {args.proposer_model}: {status.note}")
    if not todo:
        print_table(list(done.values()), console, default_search_formats(args))
        return
    if any(m in DSPY_METHODS for m in todo) and not Path(args.dspy_python).exists():
        raise SystemExit(
            f"--dspy-python {args.dspy_python} not found: run `make bench-dspy-env` first (DSPy lives in its own venv)"
        )
    gguf = None if args.base_url else resolve_gguf(args.model)[0]
    one_at_a_time = sends_one_at_a_time(args)
    meta = {
        "label": args.label,
        "command": " ".join(["python", *sys.argv]),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
        "task": args.task,
        "model": args.model,
        "splits": {"train": args.n_train, "val": args.n_val, "test": args.n_test, "seed": args.seed},
        "cap": args.cap,
        "preset": args.preset,
        "server": (
            {} if args.base_url else {"threads": args.server_threads, "prompt_cache_mb": args.server_prompt_cache_mb}
        )
        | {"one_at_a_time": one_at_a_time},
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
    }
    rows: list[dict[str, Any]] = list(done.values())
    results.parent.mkdir(parents=True, exist_ok=True)
    server = (
        contextlib.nullcontext(args.base_url)
        if args.base_url
        else llama_server(
            gguf,
            alias=args.alias,
            n_ctx=args.n_ctx,
            threads=args.server_threads,
            timeout_s=600,
            port=args.port,
            prompt_cache_bytes=args.server_prompt_cache_mb << 20,
        )
    )
    with server as url:
        if one_at_a_time:  # read when the prompthone rows build their LMs; the DSPy side never reads it
            os.environ[ONE_AT_A_TIME_ENV] = url
        for method in todo:
            load0 = os.getloadavg()
            key = row_key(method, args)
            cache = cache_path(method, args).resolve()
            cache.parent.mkdir(parents=True, exist_ok=True)
            seeded = seed_from_zero_shot(method, args, cache)
            held = entries(cache, "answers" if method in DSPY_METHODS else "responses")
            console.rule(f"{method} on {args.task}, seed {args.seed}")
            whence = f"the zero-shot row's test answers, from {seeded.name}" if seeded else "from an earlier session"
            console.print(f"  LM answers kept in {cache}" + (f" ({held} {whence})" if held else ""))
            if method == "zero-shot":
                row = asyncio.run(run_zero_shot(url, args, cache))
            elif method in PROMPTHONE_METHODS:
                row = asyncio.run(run_prompthone(method, url, args, out_dir, cache))
            else:
                try:
                    row = run_dspy(method, url, args, cache)
                except RuntimeError as exc:  # keep the other rows; the failure is reported, not hidden
                    console.print(f"[red]{method} failed[/]: {exc}")
                    continue
            if method in ("mipro", "mipro-proposer") and args.mipro_set:
                row["variant"] = ", ".join(args.mipro_set)
            row |= {
                "row_key": key_hash(key), "key": key,
                "cache_file": str(cache.relative_to(ROOT) if cache.is_relative_to(ROOT) else cache),
                "cache_entries_at_start": held, "cache_seeded_from": seeded and seeded.name,
                "loadavg_start": load0, "loadavg_end": os.getloadavg(), **meta,
            }  # fmt: skip
            checkpoint(cache)
            rows.append(row)
            with open(results, "a") as f:
                f.write(json.dumps(row, default=str) + "\n")
            console.print(
                f"{method}: test {fmt_score(row['test'])}, calls {row['calls']}, best val {row['best_val']}, "
                f"stopped by {row['stopped_by']}, {row['wall_s_total']:.0f} s"
            )
    print_table(rows, console, default_search_formats(args))


def print_table(rows: list[dict[str, Any]], console: Console, default_formats: Any = None) -> None:
    """The Markdown table; the later row wins where a method (and ablation) was run more than once."""
    latest = {row_name(r, default_formats): r for r in rows}
    start = next((r["start_test"] for r in rows if r.get("start_test")), None)
    if start is not None:  # the start program on test, as every prompthone run scored it before optimizing
        latest.setdefault("zero-shot", {"method": "zero-shot", "test": start, "calls": {}, "trajectory": None})
    order = ["zero-shot", "dspy-zero-shot", *(m for m in PROMPTHONE_METHODS if m != "zero-shot"), "dspy-miprov2",
             "dspy-copro"]  # fmt: skip
    rows = sorted(
        (r for r in latest.values() if r["method"] in order),
        key=lambda r: (order.index(r["method"]), row_name(r, default_formats)),
    )
    target_row = latest.get(TARGET_METHOD)
    target = target_row["best_val"] if target_row else None
    console.print(f"\nDSPy MIPROv2's best validation score (the sample-efficiency target): {target}")
    print(markdown(rows, target, default_formats))


if __name__ == "__main__":
    main()
