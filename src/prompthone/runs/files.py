"""A run's folder, and the files it leaves there for people: `summary.json`, `best_candidate.json`,
`best_prompts.txt` (an optimization) or `summary.json`, `results.jsonl`, `prompts.txt` (an evaluation).

The folder is made only once everything that can be wrong with the spec has been found, and only a new
one: two runs never share a folder.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prompthone.data.example import Example
from prompthone.evaluate import EvalResult
from prompthone.lm import LM
from prompthone.program import Candidate, Program, render_prompts
from prompthone.runs.spec import RunOutcome, RunSpec, public_settings


def new_run_dir(out_dir: Path, spec: RunSpec) -> Path:
    """A new run's folder name: method, task and a UTC time stamp to the millisecond, so runs sort by start."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S-%f")[:-3]
    return out_dir / f"{spec.optimizer}-{spec.task_name.replace('/', '-')}-{stamp}"


class RunFolderError(ValueError):
    """The run folder cannot be made where `--out` says; the message names the path and why."""


def make_run_dir(run_dir: Path) -> Path:
    """Create a new run's folder, and only a new one: two runs started in the same millisecond get two
    folders (`-2`, `-3`, ...), never one. Fails with `RunFolderError` before anything is spent."""
    parent = run_dir.parent
    for i in range(1, 100):
        path = run_dir if i == 1 else run_dir.with_name(f"{run_dir.name}-{i}")
        try:
            parent.mkdir(parents=True, exist_ok=True)
            path.mkdir()
            return path
        except FileExistsError:
            if not parent.is_dir():
                break
            continue
        except OSError as exc:
            raise RunFolderError(_folder_problem(parent, exc)) from None
    raise RunFolderError(_folder_problem(parent, NotADirectoryError(f"{parent} is not a folder")))


def _folder_problem(out_dir: Path, exc: OSError) -> str:
    blocker = next((p for p in (out_dir, *out_dir.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None or isinstance(exc, NotADirectoryError):
        return f"--out {out_dir}: {blocker or out_dir} is a file, not a folder; give a folder for the run folders"
    reason = exc.strerror or str(exc)
    return f"--out {out_dir}: cannot create a run folder there ({reason}); give a folder you can write to"


def write_outcome(outcome: RunOutcome, program: Program, *, metric_name: str) -> dict[str, Any]:
    """Leave files a person can open: summary, best candidate, its prompts, every trial."""
    spec, r, run_dir = outcome.spec, outcome.result, outcome.run_dir
    summary = {
        "task": spec.task,
        "optimizer": spec.optimizer,
        "settings": public_settings(spec.settings),
        "model": spec.model,
        "proposer_model": spec.proposer_model or spec.model,
        "teacher_model": spec.teacher_model or spec.model,
        "judge_model": (spec.judge_model or spec.proposer_model or spec.model) if spec.judge else None,
        "metric": metric_name,
        "seed": spec.seed,
        "splits": {"train": spec.n_train, "val": spec.n_val, "test": spec.n_test},
        **{
            key: {"score": r.mean, "ci95": r.ci95, "n": r.n}
            for key, r in (("start_test", outcome.start_test), ("final_test", outcome.final_test))
            if r.n
        },
        "best_val": r.best_score,
        "start_val": r.start_score,
        "best_candidate": r.best.hash,
        "start_candidate": Candidate.default(program).hash,
        "prompt_formats": {
            "task_model": spec.start_format,  # what the modules that name no format start in (see RunSpec)
            "start": {m: p.format for m, p in Candidate.default(program).items()},
            "best": {m: p.format for m, p in r.best.items()},
        },
        "stopped_by": r.stopped_by,
        "usage_by_role": outcome.usage,
        "usage_test_scoring": outcome.test_usage,
        "wall_s": outcome.wall_s,
        "optimize_wall_s": outcome.optimize_wall_s,
        "proposals": outcome.proposals,
    }
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run_dir / "best_candidate.json").write_text(r.best.to_json(indent=2))
    (run_dir / "best_prompts.txt").write_text(render_prompts(program, r.best).as_text())
    return summary


def write_evaluation(
    out_dir: Path, task: str, lm: LM, program: Program, result: EvalResult, wall: float, examples: Sequence[Example]
) -> Path:
    """A new `eval-<task>-<stamp>` folder with every example's result (and its labels), the summary and the
    prompts that were scored."""
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = out_dir / f"eval-{task.replace('/', '-')}-{stamp}"
    run_dir.mkdir(parents=True, exist_ok=True)
    by_id = {e.id: e for e in examples}
    with open(run_dir / "results.jsonl", "w") as f:
        for r in result.records:
            row = {**r.to_dict(), "labels": dict(by_id[r.example_id].to_dict()["labels"])}
            f.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
    prompts = render_prompts(program, Candidate.default(program))
    lo, hi = result.ci95
    summary = {
        "task": task,
        "model": lm.model,
        "score": result.mean,
        "ci95": [lo, hi],
        "n": result.n,
        "parse_failures": result.n_parse_failures,
        "errors": result.n_errors,
        "usage": lm.usage.as_dict(),
        "wall_s": wall,
        "candidate": json.loads(Candidate.default(program).to_json()),
    }
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, ensure_ascii=False))
    (run_dir / "prompts.txt").write_text(prompts.as_text())
    return run_dir
