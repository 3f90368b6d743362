"""A run records every optimizer setting it used, defaults included, and a resumed run is built from that
record: a newer version whose defaults differ continues the run as it began."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from prompthone.lm import run_sync
from prompthone.optimize import OptimizationResult, Optimizer, Run
from prompthone.optimize.registry import OPTIMIZERS, make_optimizer
from prompthone.optimize.settings import MethodSettings
from prompthone.program import PromptParams
from prompthone.runs.runner import run_optimization, with_resolved_settings
from prompthone.runs.spec import RunSpec
from prompthone.store import RunStore
from runlib import INSTRUCTIONS, fake_gsm8k_env, fake_gsm8k_spec

#: what this version's default would be; a test changes it to play a newer version
DEFAULTS: dict[str, Any] = {"tried": 2}


@dataclass(frozen=True)
class TriedSettings(MethodSettings):
    method = "tried-instructions"

    tried: int = field(default_factory=lambda: DEFAULTS["tried"])
    minibatch: int = 4


class TriedInstructions(Optimizer):
    """Scores the first `tried` of a fixed list of instructions on validation; notes what it was built with."""

    name = "tried-instructions"
    settings_class = TriedSettings
    built: ClassVar[list[TriedSettings]] = []

    async def _optimize(self, run: Run) -> OptimizationResult:
        type(self).built.append(self.settings)
        setup = run.setup
        await run.score(setup.start, setup.valset, full=True)
        (module,) = list(setup.start)
        for text in INSTRUCTIONS[: self.settings.tried]:
            cand = setup.start.with_module(module, PromptParams(text, setup.start[module].demos))
            await run.score(cand, setup.valset, full=True)
        return run.result()


def spec(url: str, root, **kw: Any) -> RunSpec:
    return dataclasses.replace(fake_gsm8k_spec(url, root), optimizer="tried-instructions", **kw)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setitem(OPTIMIZERS, "tried-instructions", TriedInstructions)
    monkeypatch.setitem(DEFAULTS, "tried", 2)
    TriedInstructions.built.clear()
    with fake_gsm8k_env(tmp_path, monkeypatch, latency_ms=0) as found:
        yield found


def test_a_resumed_run_keeps_the_settings_it_began_with_when_a_default_changes(env, monkeypatch):
    tmp, url, _ = env
    first = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "runs"))
    config = RunStore(first.run_dir).run_row()["config"]
    assert config["settings"] == {}  # what the user gave stays apart from what was resolved
    assert config["resolved_settings"] == {"tried": 2, "minibatch": 4}
    assert len(first.result.trials) == 1 + 2

    monkeypatch.setitem(DEFAULTS, "tried", 4)  # a newer version: the default changed
    resumed = run_sync(run_optimization(resume=first.run_dir))
    fresh = run_sync(run_optimization(spec(url, tmp / "data"), out_dir=tmp / "new"))
    assert [s.tried for s in TriedInstructions.built] == [2, 2, 4]
    assert [t.candidate.hash for t in resumed.result.trials] == [t.candidate.hash for t in first.result.trials]
    assert len(fresh.result.trials) == 1 + 4
    assert RunStore(first.run_dir).run_row()["config"]["resolved_settings"]["tried"] == 2


def test_a_run_stored_before_settings_were_resolved_resumes_with_the_given_ones(env, monkeypatch):
    """Runs recorded by an earlier version have no `resolved_settings`: they are built from `settings`."""
    tmp, url, _ = env
    given = spec(url, tmp / "data", settings={"tried": 1})
    old = RunSpec.from_config(given.to_config())
    assert old.resolved_settings is None and "resolved_settings" not in given.to_config()
    monkeypatch.setitem(DEFAULTS, "tried", 3)
    assert with_resolved_settings(old).resolved_settings == {"tried": 1, "minibatch": 4}


def test_an_optimizer_without_a_settings_dataclass_records_what_it_was_given(env):
    tmp, url, _ = env
    resolved = with_resolved_settings(fake_gsm8k_spec(url, tmp / "data", settings={"minibatch": 3}))
    assert resolved.resolved_settings == {"minibatch": 3}


@pytest.mark.parametrize("name", sorted(n for n, entry in OPTIMIZERS.items() if isinstance(entry, str)))
def test_every_builtin_optimizer_is_rebuilt_from_its_recorded_settings(name):
    """What a run records (JSON) builds the same settings again: tuples read back as lists, presets and
    defaults written out."""
    made = make_optimizer(name).settings
    recorded = json.loads(json.dumps(made.to_dict()))
    rebuilt = make_optimizer(name, **recorded).settings
    assert json.dumps(rebuilt.to_dict(), sort_keys=True) == json.dumps(made.to_dict(), sort_keys=True)
    assert type(rebuilt) is type(made)
