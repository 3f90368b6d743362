"""Run configs: a YAML file that says what to optimize, with what, within what budget.

Validated before anything runs; an error names the file, the key, the value and what was expected.
Loaded with `yaml.safe_load` only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from prompthone.lm.errors import ConfigError
from prompthone.lm.model_string import parse_model_string
from prompthone.optimize.budget import Budget
from prompthone.optimize.registry import OPTIMIZERS, SettingError, make_optimizer
from prompthone.runs.spec import RunSpec
from prompthone.runs.splits import check_inputs, splits_for
from prompthone.tasks import get_task


class ConfigFileError(ValueError):
    """A config file that cannot be run as written."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Models(_Strict):
    task: str = "local/qwen2.5-coder-0.5b"
    proposer: str | None = None
    teacher: str | None = None
    judge: str | None = None

    @field_validator("task", "proposer", "teacher", "judge")
    @classmethod
    def _model_string(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                parse_model_string(v)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return v


class Splits(_Strict):
    train: int = Field(50, ge=1)
    val: int = Field(50, ge=1)
    test: int = Field(100, ge=1)


class JudgeConfig(_Strict):
    """An LLM-judge metric written in words (replaces the task's own metric)."""

    task_description: str = Field(min_length=1)
    criteria: str = Field(min_length=1)
    #: the example label shown to the judge as the reference answer (none: judged on the criteria alone)
    reference_field: str | None = None
    #: "binary" (0-1), "graded" (1-5) or "LOW-HIGH"
    scale: str = "binary"
    output_fields: list[str] | None = None
    input_fields: list[str] | None = None
    max_tokens: int = Field(200, ge=1)

    @field_validator("scale")
    @classmethod
    def _scale(cls, v: str) -> str:
        from prompthone.metrics.judge import JudgeScale

        JudgeScale.parse(v)
        return v


class BudgetConfig(_Strict):
    max_lm_calls: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    max_cost_usd: float | None = Field(None, gt=0)
    max_wall_minutes: float | None = Field(None, gt=0)
    #: model string -> [USD per 1M prompt tokens, USD per 1M completion tokens]
    prices: dict[str, tuple[float, float]] = Field(default_factory=dict)


class UserDataConfig(_Strict):
    """The user's examples: a JSONL, JSON, CSV or TSV file and which of its fields are inputs and labels.

    `path` is cut into train / val / test by the seeded split. Users often have fixed splits (a test set
    everyone reports on): `train`, `val` and `test` name files used as those splits, whole, or as a seeded
    sample when `splits:` gives that split's size; the splits not named are cut from `path`.
    """

    path: str | None = Field(None, min_length=1)
    train: str | None = Field(None, min_length=1)
    val: str | None = Field(None, min_length=1)
    test: str | None = Field(None, min_length=1)
    inputs: list[str] | dict[str, str]
    labels: list[str] | dict[str, str] = Field(default_factory=list)
    id_field: str | None = None
    label_types: dict[str, Literal["str", "int", "float", "bool"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _files(self) -> UserDataConfig:
        missing = [name for name in ("train", "val", "test") if getattr(self, name) is None]
        if missing and self.path is None:
            given = [name for name in ("train", "val", "test") if name not in missing]
            raise ValueError(
                "expected `path` (one file, split by seed) or a file for each split: train, val and test"
                + (f"; got {', '.join(given)} but no {', '.join(missing)} and no path" if given else "")
            )
        return self


class UserTaskConfig(_Strict):
    """A program of the user's own (`module:attribute`), their data, and a metric."""

    program: str = Field(pattern=r"^[\w.]+:[\w.]+$")
    data: UserDataConfig
    metric: str = "exact_match"
    name: str | None = None
    #: folder put on sys.path to import the program and metric (default: the config file's folder)
    path: str | None = None


class RunConfig(_Strict):
    task: str | UserTaskConfig
    optimizer: str
    settings: dict[str, Any] = Field(default_factory=dict)
    models: Models = Field(default_factory=Models)
    splits: Splits = Field(default_factory=Splits)
    seed: int = 0
    data_root: str | None = None
    concurrency: int = Field(8, ge=1)
    max_tokens: int = Field(384, ge=1)
    max_errors: int = Field(0, ge=0)
    threads: int | None = Field(None, ge=1)
    #: seconds each attempt of an LM call may take, every role (CLI: --timeout)
    timeout_s: float = Field(120.0, gt=0)
    #: prompt format of the modules that name none (CLI: --start-format); None: the task model's catalog entry
    start_format: Literal["labels", "recap", "tags", "json", "module"] | None = None
    judge: JudgeConfig | None = None
    budget: BudgetConfig = Field(default_factory=BudgetConfig)

    @field_validator("task")
    @classmethod
    def _task(cls, v: str | UserTaskConfig) -> str | UserTaskConfig:
        if not isinstance(v, str):
            return v
        try:
            get_task(v)
        except KeyError as exc:
            raise ValueError(str(exc).strip("'\"")) from None
        return v

    @field_validator("optimizer")
    @classmethod
    def _optimizer(cls, v: str) -> str:
        if v not in OPTIMIZERS:
            raise ValueError(f"expected one of: {', '.join(OPTIMIZERS)}")
        return v

    @field_validator("settings")
    @classmethod
    def _settings(cls, v: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        """Build the optimizer once, so a misspelt or out-of-range setting stops the run before it starts."""
        optimizer = info.data.get("optimizer")
        if optimizer is not None:
            try:
                make_optimizer(optimizer, **v)
            except SettingError as exc:  # reported under settings.<key>
                context = {"message": str(exc), "key": exc.key}
                raise PydanticCustomError("optimizer_setting", "{message}", context) from None
            except (TypeError, ValueError) as exc:
                raise ValueError(str(exc)) from None
        return v

    def to_spec(self) -> RunSpec:
        b = self.budget
        # a split read from its own file is used whole unless `splits:` sizes it
        fixed = {n for n in ("train", "val", "test") if not isinstance(self.task, str) and getattr(self.task.data, n)}
        sizes = {n: None if n in fixed and n not in self.splits.model_fields_set else getattr(self.splits, n)
                 for n in ("train", "val", "test")}  # fmt: skip
        return RunSpec(
            task=self.task if isinstance(self.task, str) else self.task.model_dump(),
            optimizer=self.optimizer,
            model=self.models.task,
            proposer_model=self.models.proposer,
            teacher_model=self.models.teacher,
            judge_model=self.models.judge,
            judge=self.judge.model_dump(exclude_none=True) if self.judge else None,
            settings=dict(self.settings),
            n_train=sizes["train"],
            n_val=sizes["val"],
            n_test=sizes["test"],
            seed=self.seed,
            data_root=self.data_root,
            concurrency=self.concurrency,
            max_tokens=self.max_tokens,
            max_errors=self.max_errors,
            threads=self.threads,
            timeout_s=self.timeout_s,
            start_format=self.start_format,
            budget=Budget(
                max_lm_calls=b.max_lm_calls,
                max_tokens=b.max_tokens,
                max_cost_usd=b.max_cost_usd,
                max_wall_s=b.max_wall_minutes * 60 if b.max_wall_minutes else None,
                prices=dict(b.prices),
            ),
        )


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """`KEY=VALUE` settings as a command line gives them (`--set`): the value read as JSON when it is JSON
    (`false`, `3`, `["labels"]`), else kept as the text. Raises ValueError naming an item without `=`."""
    settings: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"expects KEY=VALUE, got {item!r}")
        try:
            settings[key] = json.loads(value)
        except json.JSONDecodeError:
            settings[key] = value
    return settings


def load_config(path: str | Path) -> RunSpec:
    """Read and validate a run config, or raise `ConfigFileError` saying what to change."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigFileError(f"{p}: cannot read the config file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigFileError(f"{p}:{where} is not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{p}: expected a mapping of keys (task, optimizer, models, ...), got {type(data).__name__}"
        )
    try:
        spec = RunConfig.model_validate(data).to_spec()
    except ValidationError as exc:
        lines = []
        user_task = isinstance(data.get("task"), dict)
        for err in exc.errors():
            loc = list(err["loc"])
            if loc[:1] == ["task"] and len(loc) > 1:  # `task` is a name or a mapping: report the branch given
                if (loc[1] == "UserTaskConfig") != user_task:
                    continue
                del loc[1]
            key = ".".join(str(x) for x in loc)
            value = err.get("input")
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "optimizer_setting":
                setting = err["ctx"]["key"]
                key, value = f"{key}.{setting}", (data.get("settings") or {}).get(setting)
                msg = msg.split(": ", 1)[-1].removesuffix(f", got {value!r}")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; see examples/ for every key)"
            elif err["type"] == "string_pattern_mismatch" and key == "task.program":
                msg = "expected 'module:attribute', e.g. my_pipeline:RAG"
            lines.append(f"  {key}: {msg} (got {value!r})" if err["type"] != "missing" else f"  {key}: required")
        raise ConfigFileError(f"{p}: invalid config\n" + "\n".join(lines)) from None
    if isinstance(spec.task, dict):
        spec.task = _resolve_user_task(spec.task, p.resolve().parent)
        try:  # import the program and the metric and read the data now, not minutes into the run
            task = get_task(spec.task)
            program = task.make_program(None)
            task.metric()
            parts = splits_for(spec, task)  # SplitSizeError names the file and the splits keys
            first = (parts.train or parts.val or parts.test)[:1]
            if first:
                check_inputs(program, first[0], spec)
        except (ValueError, TypeError, OSError) as exc:  # UserTaskError, DataError, ...
            raise ConfigFileError(f"{p}: {exc}") from None
    return spec


def _resolve_user_task(task: dict[str, Any], config_dir: Path) -> dict[str, Any]:
    """Absolute paths (relative ones are read from the config file's folder), so that the stored config
    rebuilds the task from anywhere: resume, report, export."""
    task = {k: v for k, v in task.items() if v is not None}
    task["path"] = str((config_dir / task.get("path", ".")).resolve())
    data = dict(task["data"])
    for key in ("path", "train", "val", "test"):
        if data.get(key):
            data[key] = str((config_dir / data[key]).resolve())
    task["data"] = {k: v for k, v in data.items() if v not in (None, {}, [])} | {"inputs": data["inputs"]}
    return task
