"""Run configs: every example config loads; mistakes name the file, key, value and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest

from prompthone.optimize.registry import OPTIMIZERS
from prompthone.runs.config import ConfigFileError, load_config

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples").glob("*.yaml"))


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "run.yaml"
    p.write_text(text)
    return p


def test_a_full_config_becomes_a_run_spec(tmp_path):
    spec = load_config(
        write(
            tmp_path,
            """
task: trec
optimizer: mipro
settings: {preset: light}
models: {task: local/qwen2.5-coder-0.5b, proposer: local/qwen2.5-coder-1.5b}
splits: {train: 20, val: 30, test: 40}
seed: 7
budget: {max_lm_calls: 500, max_wall_minutes: 2, prices: {"openai/gpt-4o-mini": [0.15, 0.6]}}
""",
        )
    )
    assert (spec.task, spec.optimizer, spec.seed) == ("trec", "mipro", 7)
    assert (spec.n_train, spec.n_val, spec.n_test) == (20, 30, 40)
    assert spec.proposer_model == "local/qwen2.5-coder-1.5b" and spec.settings == {"preset": "light"}
    assert spec.budget.max_lm_calls == 500 and spec.budget.max_wall_s == 120
    assert spec.budget.prices["openai/gpt-4o-mini"] == (0.15, 0.6)


@pytest.mark.parametrize(
    ("text", "needles"),
    [
        ("task: trec\noptimizer: mipro\nsplits: {train: 0}\n", ["splits.train", "greater than or equal to 1", "got 0"]),
        ("task: nope\noptimizer: mipro\n", ["task", "unknown task 'nope'", "built-in tasks"]),
        ("task: trec\noptimizer: magic\n", ["optimizer", "expected one of: mipro", "got 'magic'"]),
        ("task: trec\noptimizer: mipro\nmodels: {task: gpt4}\n", ["models.task", "unknown model string 'gpt4'"]),
        ("task: trec\noptimizer: mipro\nsed: 3\n", ["sed", "unknown key"]),
        ("optimizer: mipro\n", ["task: required"]),
        ("task: trec\noptimizer: mipro\nbudget: {max_lm_calls: many}\n", ["budget.max_lm_calls", "got 'many'"]),
        ("task: [trec\n", ["line", "not valid YAML"]),
        ("- just a list\n", ["expected a mapping"]),
    ],
)
def test_mistakes_are_named(tmp_path, text, needles):
    path = write(tmp_path, text)
    with pytest.raises(ConfigFileError) as exc:
        load_config(path)
    message = str(exc.value)
    assert str(path) in message
    for needle in needles:
        assert needle in message, message


def test_yaml_is_loaded_safely(tmp_path):
    with pytest.raises(ConfigFileError, match="not valid YAML"):
        load_config(write(tmp_path, "task: !!python/object/apply:os.system ['echo pwned']\noptimizer: mipro\n"))


def test_missing_file(tmp_path):
    with pytest.raises(ConfigFileError, match="cannot read"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_every_example_config_is_valid(path):
    spec = load_config(path)
    assert spec.optimizer in OPTIMIZERS


def test_there_is_an_example_for_each_optimizer_family():
    names = {load_config(p).optimizer for p in EXAMPLES}
    assert {"mipro", "opro", "gradsum"} <= names


def test_a_judge_block_replaces_the_metric_with_criteria_in_words(tmp_path):
    spec = load_config(
        write(
            tmp_path,
            """
task: hotpotqa
optimizer: gradsum
models: {task: local/qwen2.5-coder-0.5b, judge: local/qwen2.5-coder-1.5b, teacher: local/qwen2.5-coder-1.5b}
judge:
  task_description: Answer a multi-hop question in a few words.
  criteria: Score 1 if the answer names the same thing as the reference.
  reference_field: answer
  scale: graded
max_errors: 3
threads: 1
""",
        )
    )
    assert spec.judge == {
        "task_description": "Answer a multi-hop question in a few words.",
        "criteria": "Score 1 if the answer names the same thing as the reference.",
        "reference_field": "answer",
        "scale": "graded",
        "max_tokens": 200,
    }
    assert spec.judge_model == spec.teacher_model == "local/qwen2.5-coder-1.5b"
    assert (spec.max_errors, spec.threads) == (3, 1)


@pytest.mark.parametrize(
    ("judge", "needles"),
    [
        ("{task_description: x, criteria: y, scale: fuzzy}", ["judge.scale", "unknown judge scale", "got 'fuzzy'"]),
        ("{task_description: x}", ["judge.criteria", "required"]),
        ("{task_description: '', criteria: y}", ["judge.task_description", "at least 1 character"]),
    ],
)
def test_judge_mistakes_name_the_key(tmp_path, judge, needles):
    with pytest.raises(ConfigFileError) as err:
        load_config(write(tmp_path, f"task: trec\noptimizer: gradsum\njudge: {judge}\n"))
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize(
    ("optimizer", "settings", "needles"),
    [
        ("mipro", "{auto: light}", ["settings", "unknown MIPRO setting(s) ['auto']", "called `preset` here"]),
        ("mipro", "{preset: huge}", ["settings", "unknown preset 'huge'", "light"]),
        ("opro", "{stepz: 3}", ["settings", "unknown opro setting(s) ['stepz']", "steps"]),
        ("opro", "{steps: 0}", ["settings", "steps must be an integer >= 1"]),
    ],
)
def test_optimizer_settings_are_checked_before_anything_runs(tmp_path, optimizer, settings, needles):
    with pytest.raises(ConfigFileError) as err:
        load_config(write(tmp_path, f"task: trec\noptimizer: {optimizer}\nsettings: {settings}\n"))
    for needle in needles:
        assert needle in str(err.value)
