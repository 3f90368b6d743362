"""What a MIPRO run will cost, before anything is spent (`prompthone optimize --dry-run`).

Calls are upper bounds for a cold cache: every trial is counted as paid, although a repeated
configuration on the same minibatch (and the start's first trial) is served by the score cache.
Tokens are approximations (see `proposers.cost`).

The optimizer is read through the `MIPROShape` protocol (its settings, plan and what it searches), so
this module does not import `mipro.optimizer`, which calls it.
"""

from __future__ import annotations

import math
from typing import Protocol

from prompthone.optimize.base import Estimate, OptimizationSetup
from prompthone.optimize.mipro.settings import MIPROSettings
from prompthone.optimize.proposers.cost import approx_tokens, run_tokens
from prompthone.optimize.proposers.grounding import format_example, program_source

PROPOSAL_REPLY_SHARE = 0.5  # proposer replies use about half their max_tokens


class MIPROShape(Protocol):
    """What the estimate reads of a MIPRO-family optimizer."""

    settings: MIPROSettings
    searches_instructions: bool
    searches_demos: bool
    proposes_in_trials: bool

    def plan(self, setup: OptimizationSetup) -> dict[str, int]: ...

    def _needs_bootstrap(self) -> bool: ...


def estimate_mipro(opt: MIPROShape, setup: OptimizationSetup, est: Estimate) -> None:
    """Calls and tokens per role: task (scoring), teacher (bootstrapping), proposer (grounding and
    instructions)."""
    s = opt.settings
    plan = opt.plan(setup)
    n_mod, val, trials, minibatch = plan["modules"], plan["val"], plan["trials"], plan["minibatch"]
    if minibatch < val:
        full_evals = 1 + trials // s.full_eval_every + 1  # start, every N trials, final
        runs = val * full_evals + trials * minibatch
    else:
        runs = val * (1 + trials)
    n_demos = (s.max_bootstrapped_demos + s.max_labeled_demos) if opt.searches_demos else 0
    p, c, calls_per_run = run_tokens(setup, n_demos)
    est.add("task", runs * calls_per_run, runs * p, runs * c)

    teacher_runs = 0
    if opt._needs_bootstrap():
        teacher_runs = max(0, len(setup.trainset) - s.teacher_labeled)
    tp, tc, _ = run_tokens(setup, min(s.teacher_labeled, s.max_labeled_demos) if s.teacher_labeled else 0)
    est.add("teacher", teacher_runs * calls_per_run, teacher_runs * tp, teacher_runs * tc)

    reply = s.proposer_max_tokens * PROPOSAL_REPLY_SHARE
    est.add("proposer", 0)

    def add(calls: float, prompt_tokens: float) -> None:
        est.per_call("proposer", calls, prompt_tokens, reply)

    grounded = opt.searches_instructions or opt.proposes_in_trials
    if grounded and s.ground_dataset and setup.trainset:
        batches = min(s.summary_batches, math.ceil(len(setup.trainset) / 10))
        shown = sum(approx_tokens(format_example(e)) for e in list(setup.trainset)[:10])
        add(batches, 150 + shown + 100)
        add(1, 150 + 100)
    if grounded and s.ground_program:
        add(1 + n_mod, 150 + approx_tokens(program_source(setup.program)))
    instruction_prompt = 250 + (150 if s.ground_dataset else 0) + (200 if s.ground_program else 0)
    if s.ground_demos:
        instruction_prompt += 3 * p / max(1, calls_per_run) / max(1, n_demos + 1)
    if opt.searches_instructions:
        add(n_mod * (opt.n_instructions() - 1), instruction_prompt)
    if opt.proposes_in_trials:
        add(n_mod * trials, instruction_prompt + 40 * s.history_size)
