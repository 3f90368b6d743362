"""What a run is: the spec that goes into its stored config, and the outcome it comes back with.

A spec is plain data so that a stored config rebuilds the run (resume, report, export); the outcome holds
what the run measured, from which `files.write_outcome` writes `summary.json`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from prompthone.evaluate import EvalResult
from prompthone.lm.local.catalog import start_format_of
from prompthone.optimize.base import OptimizationResult
from prompthone.optimize.budget import Budget
from prompthone.program.params import MODULE_DEFAULTS
from prompthone.sqlurl import safe_url
from prompthone.tasks.user import task_label


@dataclass
class RunSpec:
    """What to run: everything that goes into the run's stored config."""

    #: a built-in task's name, or a user task: {program, data, metric, path} (see `prompthone.tasks.user`)
    task: str | dict[str, Any]
    optimizer: str
    model: str = "local/qwen2.5-coder-0.5b"
    proposer_model: str | None = None
    #: runs the program when bootstrapping demos; the task model when None (counted apart either way)
    teacher_model: str | None = None
    #: score with an LLM judge instead of the task's metric: `JudgeMetric` settings in words
    #: (task_description, criteria, reference_field, scale, output_fields, input_fields, max_tokens)
    judge: dict[str, Any] | None = None
    #: the judge's model; the proposer model when None
    judge_model: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    #: every setting as the optimizer read it when the run began, defaults included (None before a run is
    #: recorded, and in runs stored before it was kept); a resumed run is built from these, so a newer
    #: version whose defaults differ continues the run as it began instead of starting another search
    resolved_settings: dict[str, Any] | None = None
    #: split sizes; None for a split the task fixes (its own file) means the whole file
    n_train: int | None = 50
    n_val: int | None = 50
    n_test: int | None = 100
    seed: int = 0
    data_root: str | None = None
    concurrency: int = 8
    max_tokens: int = 384
    #: errors (e.g. judge failures) tolerated per evaluation before it fails loudly; never scored as wrong
    max_errors: int = 0
    #: llama.cpp threads for embedded models (None: the backend's default); answers do not depend on it
    threads: int | None = None
    #: seconds each attempt of an LM call may take, for every role (a slow CPU model needs more)
    timeout_s: float = 120.0
    budget: Budget = field(default_factory=Budget)
    #: the prompt format the task model reads best, for the modules that leave theirs to the model
    #: (`Module(format=None)`): one of `PROMPT_FORMATS`; `MODULE_DEFAULTS` (each module's own default: what
    #: runs stored before this key existed used); or None: the embedded catalog's entry for the task model
    #: (`EmbeddedModel.start_format`), decided when the run begins and recorded by name, so a resumed run
    #: starts where it began whatever the catalog says later
    start_format: str | None = None

    @property
    def task_name(self) -> str:
        return task_label(self.task)

    def to_config(self) -> dict[str, Any]:
        d = asdict(replace(self, budget=Budget()))  # a used budget holds its run's LMs: not plain data
        d["settings"] = public_settings(self.settings)
        if self.resolved_settings is None:
            del d["resolved_settings"]  # a config as the user gives it, or as runs stored it before
        else:
            d["resolved_settings"] = public_settings(self.resolved_settings)
        b = self.budget
        d["budget"] = {
            "max_lm_calls": b.max_lm_calls,
            "max_tokens": b.max_tokens,
            "max_cost_usd": b.max_cost_usd,
            "max_wall_s": b.max_wall_s,
            "prices": dict(b.prices),
        }
        return d

    def optimizer_settings(self) -> dict[str, Any]:
        """What the optimizer is built from: the resolved settings once a run recorded them, else the given."""
        return self.settings if self.resolved_settings is None else self.resolved_settings

    def task_start_format(self) -> str | None:
        """The format `Program.adopt_start_formats` is given for this run's task model (None: the modules'
        own defaults)."""
        fmt = self.start_format if self.start_format is not None else start_format_of(self.model)
        return None if fmt == MODULE_DEFAULTS else fmt

    def with_resolved_start_format(self) -> RunSpec:
        """This spec with its start format named (see `start_format`), as the run's stored config keeps it."""
        if self.start_format is not None:
            return self
        return replace(self, start_format=start_format_of(self.model) or MODULE_DEFAULTS)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> RunSpec:
        c = dict(config)
        c.setdefault("start_format", MODULE_DEFAULTS)  # a run stored before the key: its modules' own defaults
        budget = c.pop("budget", None) or {}
        budget["prices"] = {k: tuple(v) for k, v in (budget.get("prices") or {}).items()}
        return cls(**c, budget=Budget(**budget))


def public_settings(settings: dict[str, Any]) -> dict[str, Any]:
    """Optimizer settings as they are recorded (stored config, summary): a URL (e.g. MIPRO's `storage`)
    without its password, which the driver reads from the environment instead (PGPASSWORD, ~/.pgpass)."""
    return {k: safe_url(v) if isinstance(v, str) and "://" in v else v for k, v in settings.items()}


@dataclass
class RunOutcome:
    spec: RunSpec
    result: OptimizationResult
    start_test: EvalResult
    final_test: EvalResult
    #: role -> usage counters of the optimization alone (scoring the start and the result on test excluded)
    usage: dict[str, dict]
    wall_s: float
    run_dir: Path
    #: task-model usage of the two test evaluations (start and result)
    test_usage: dict[str, float | int] = field(default_factory=dict)
    optimize_wall_s: float = 0.0
    #: the task-contract check's counts over the run's proposals, and what the search chose
    #: (`proposers.contract.contract_report`)
    proposals: dict[str, Any] = field(default_factory=dict)
