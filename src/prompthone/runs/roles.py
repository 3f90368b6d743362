"""One LM per role (task, proposer, teacher, judge), so that every call is counted and recorded by role.

Roles sent to the same endpoint share one bound on requests in flight; the backends are built before a
run folder is made, so a wrong model never leaves one behind.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prompthone.lm import LM, LMError, RequestSlots, ResponseCache, make_backend, thread_options
from prompthone.lm.backend import Backend
from prompthone.lm.scripted import ScriptedBackend
from prompthone.lm.types import Completion
from prompthone.optimize.budget import Budget
from prompthone.runs.spec import RunSpec


def role_models(spec: RunSpec) -> dict[str, str]:
    """The model string of each role the run uses."""
    proposer = spec.proposer_model or spec.model
    models = {"task": spec.model, "proposer": proposer, "teacher": spec.teacher_model or spec.model}
    if spec.judge is not None:
        models["judge"] = spec.judge_model or proposer
    return models


def role_backends(spec: RunSpec) -> dict[str, Backend]:
    """Each role's backend, built (a model string checked, a GGUF file found, a key read) before anything is
    written: a wrong model must never leave a run folder behind. A `ConfigError` names the role."""
    backends: dict[str, Backend] = {}
    for role, model in role_models(spec).items():
        try:
            backends[role] = make_backend(model, **thread_options(model, spec.threads))
        except LMError as exc:
            exc.role = exc.role or role
            raise
    return backends


def role_lms(
    spec: RunSpec, cache: ResponseCache | bool, backends: Mapping[str, Backend] | None = None
) -> dict[str, LM]:
    """One LM object per role (they share the cache and, for embedded models, the loaded weights), so the
    store, the budget and the summary count task, proposer, teacher and judge calls apart.

    `spec.concurrency` bounds the requests in flight per endpoint, never above what the backend serves
    at once (one for an embedded model): roles sent to the same server or model share one bound, and
    everything that calls a role (several evaluations, e.g. MIPRO's trials in flight) shares its bound.
    `backends` (from `role_backends`) are used instead of building new ones.
    """
    backends = dict(backends) if backends is not None else role_backends(spec)
    slots: dict[str, RequestSlots] = {}
    lms: dict[str, LM] = {}
    for role, backend in backends.items():
        endpoint = backend.identity()
        if endpoint not in slots:
            slots[endpoint] = RequestSlots.for_backend(backend, spec.concurrency)
        lms[role] = LM(backend, cache=cache, slots=slots[endpoint], timeout_s=spec.timeout_s, role=role)
    return lms


def planned_lms(spec: RunSpec) -> dict[str, LM]:
    """One LM per role that can never be called: a dry run estimates from the plan alone, so it works
    before the models are installed or the servers are up (`prompthone.lm.availability` says which)."""

    def refuse(request: Any) -> Exception:
        return RuntimeError("a dry run makes no LM call")

    return {role: LM(ScriptedBackend(refuse, name=model), cache=False) for role, model in role_models(spec).items()}


def usage_since(lms: dict[str, LM], before: dict[str, dict]) -> dict[str, dict]:
    """Each role's usage counters since `before`: the optimization alone, test scoring left out."""
    out = {}
    for role, lm in lms.items():
        now, was = lm.usage.as_dict(), before.get(role, {})
        out[role] = {k: now[k] - was.get(k, 0) for k in now}
    return out


def call_cost(budget: Budget, lm: LM, c: Completion) -> float:
    """What one call cost in USD at the budget's prices (a cached answer costs nothing), as the store records it."""
    if c.cached:
        return 0.0
    p_in, p_out = budget.prices.get(lm.model, (0.0, 0.0))
    return (c.prompt_tokens * p_in + c.completion_tokens * p_out) / 1e6
