"""Issue 16, part 2: an optimizer keeps no per-run state on itself. One optimizer object runs two setups
at once (`asyncio.gather`), and each result (trials, best, info, events) is what that setup gives when
run alone. Scripted LMs over the parity world of test_mipro_world.py."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from prompthone.lm.types import Request
from prompthone.optimize import OptimizationResult, OptimizationSetup
from prompthone.optimize.registry import OPTIMIZERS, make_optimizer
from test_mipro_world import PROPOSALS, make_setup, parity_examples, proposer_answer

SMALL_MIPRO = {"num_trials": 6, "num_candidates": 3, "minibatch_size": 6, "full_eval_every": 2, "parallel_trials": 2}
SETTINGS: dict[str, dict[str, Any]] = {
    "mipro": SMALL_MIPRO,
    "mipro-0shot": SMALL_MIPRO,
    "bayesian-bootstrap": SMALL_MIPRO,
    "mipro++": SMALL_MIPRO,
    "labeled-fewshot": {"k": 3},
    "bootstrap-fewshot": {"max_bootstrapped_demos": 2, "max_labeled_demos": 2},
    "bootstrap-random-search": {"num_candidate_sets": 4, "max_bootstrapped_demos": 2, "max_labeled_demos": 2},
    "opro": {"steps": 3, "candidates_per_step": 3, "val_every": 1, "train_batch": 8},
    "gradsum": {"iterations": 2, "beam_width": 2, "edits_per_prompt": 2, "minibatch_size": 6},
    "gradsum-nosum": {"iterations": 2, "beam_width": 2, "edits_per_prompt": 2, "minibatch_size": 6},
}
METHODS = [name for name, entry in OPTIMIZERS.items() if isinstance(entry, str) and entry.startswith("prompthone.")]


def proposer(req: Request) -> str:
    """MIPRO's grounding and proposals as in the parity world; OPRO's and GRAD-SUM's instructions picked
    by sample index, so that different samples make different candidates."""
    p = req.messages[-1][1]
    pick = PROPOSALS[req.sample_index % len(PROPOSALS)]
    if "<INS>" in p:
        return f"<INS>{pick}</INS>"
    if "Rewrite the instruction in your own words" in p:
        return f"<instruction>{pick}</instruction>"
    answer = proposer_answer(req)
    return answer if answer != "?" else "Say whether the number is even or odd, in one word."


def setups(events: dict[str, list]) -> dict[str, OptimizationSetup]:
    """Two different runs: other seeds, other data. Fresh LMs and score caches each time it is called."""
    out = {}
    for name, seed, offset in (("a", 1, 0), ("b", 7, 100)):
        data = parity_examples(32, offset)
        setup, _, _ = make_setup(seed=seed, train=data[:12], val=data[12:], proposer=proposer, delay_s=0.001,
                                 events=events.setdefault(name, []))  # fmt: skip
        out[name] = setup
    return out


def account(result: OptimizationResult, events: list) -> str:
    """Everything a run shows, as one comparable text."""
    trail = [(t.index, t.candidate.hash, t.score, t.n, t.full, t.info) for t in result.trials]
    seen = [(kind, {k: v for k, v in data.items() if k != "trial"}) for kind, data in events]
    whole = [result.best.hash, result.best_score, result.start_score, result.stopped_by, trail, result.info, seen]
    return json.dumps(whole, sort_keys=True, default=str)


def test_every_registered_method_is_covered() -> None:
    assert sorted(METHODS) == sorted(SETTINGS)


@pytest.mark.parametrize("method", METHODS)
async def test_one_optimizer_runs_two_setups_at_once_as_each_runs_alone(method: str) -> None:
    optimizer = make_optimizer(method, **SETTINGS[method])
    alone_events: dict[str, list] = {}
    alone = {}
    for name, setup in setups(alone_events).items():
        alone[name] = account(await optimizer.optimize(setup), alone_events[name])
    assert alone["a"] != alone["b"]  # two really different runs

    both_events: dict[str, list] = {}
    both = setups(both_events)
    results = await asyncio.gather(*(optimizer.optimize(s) for s in both.values()))
    together = {name: account(r, both_events[name]) for name, r in zip(both, results, strict=True)}
    assert together == alone
    assert not [k for k in vars(optimizer) if k != "settings"]  # nothing of a run was left on the object
