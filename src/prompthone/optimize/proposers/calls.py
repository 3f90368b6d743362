"""The one path for proposer calls: every proposer, meta-prompt, gradient, summary, attribution and edit
call of every method goes through `propose` (or `propose_samples` for several samples of one prompt).

A call here checks the budget, asks the proposer LM with an explicit seed and `sample_index` (several
samples of one prompt at temperature > 0 are distinct yet replay exactly from the response cache),
and returns a `ProposalRecord`; `keep` then finishes the record with what the caller made of the reply,
appends it to the caller's log (if any) and emits one `proposal` event. So each proposer LM call the
store records (`ph_lm_calls`, role "proposer") has one `proposal` event carrying the same `cache_key`.

The request an LM call sends (messages, temperature, max_tokens, seed, sample_index) is what the
response cache keys on: a method keeps its requests as they were (OPRO and GRAD-SUM ask with seed 0,
MIPRO with the run's seed), so stored runs and benchmark caches replay.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from prompthone.lm.client import LM
from prompthone.lm.errors import BudgetExhausted, LMError
from prompthone.lm.types import Completion
from prompthone.optimize.base import OptimizationSetup


@dataclass(frozen=True)
class ProposalRecord:
    """One proposer call: what it was for, how it was sampled, what came back and what was kept."""

    # what the call was for: "dataset_observe", "dataset_summary", "program", "module_role", "instruction"
    # (MIPRO); "opro_instruction" (OPRO's meta-prompt); "gradsum_attribution", "gradsum_gradient",
    # "gradsum_summary", "gradsum_edit" (GRAD-SUM)
    purpose: str
    module: str | None
    sample_index: int
    temperature: float
    prompt: str
    reply: str
    kept: str | None  # the cleaned text that was used, None if rejected
    cached: bool
    prompt_tokens: int
    completion_tokens: int
    note: str = ""
    finish_reason: str = ""  # "length" when the reply hit the token cap
    contract: str = ""  # the contract check's outcome for instruction proposals: kept, repaired, rejected
    cache_key: str = ""  # the LM call's response-cache key, as `ph_lm_calls.cache_key` records it

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


ProposalLog = list[ProposalRecord]


async def propose(
    setup: OptimizationSetup,
    prompt: str,
    *,
    purpose: str,
    module: str | None = None,
    temperature: float = 0.7,
    sample_index: int = 0,
    max_tokens: int = 256,
    lm: LM | None = None,
    seed: int | None = None,
    check_budget: bool = True,
) -> tuple[str, ProposalRecord]:
    """Ask the proposer LM (or `lm`) one question; return the raw reply and its record.

    `seed` defaults to the run's seed. `check_budget=False` is for a call the caller runs together with
    others after checking the budget once for all of them: a check inside `asyncio.gather` would stop
    one call and leave its siblings running. The record's `kept` is None here: the caller fills it in
    with `keep()` once it has cleaned the reply, because only the caller knows what a usable answer
    looks like.
    """
    if check_budget:
        setup.budget.check()
    completion = await _ask(setup, prompt, lm, temperature, max_tokens, seed, sample_index)
    return completion.text, _record(purpose, module, sample_index, temperature, prompt, completion)


async def propose_samples(
    setup: OptimizationSetup,
    prompt: str,
    *,
    n: int,
    first_index: int,
    purpose: str,
    module: str | None = None,
    temperature: float,
    max_tokens: int,
    seed: int | None = None,
) -> list[tuple[str, ProposalRecord] | Exception]:
    """`n` samples of one prompt, sample k with `sample_index` first_index + k, after one budget check.

    A failed sample comes back as its exception, so one timeout does not throw away the others; if every
    sample failed, the first error is raised, and a permanent one (a refused key: every later call
    would fail alike) or a budget refusal (`BudgetExhausted`) is raised whatever the others did."""
    setup.budget.check()
    replies = await gather_samples(_ask(setup, prompt, None, temperature, max_tokens, seed, first_index + k)
                                   for k in range(n))  # fmt: skip
    return [
        r if isinstance(r, Exception) else (r.text, _record(purpose, module, first_index + k, temperature, prompt, r))
        for k, r in enumerate(replies)
    ]


async def gather_samples(calls: Iterable[Awaitable[Completion]]) -> list[Completion | Exception]:
    """Run sample calls at once, with the failure rules of `propose_samples` (also used by the OPRO numeric
    experiment, which samples outside any run)."""
    replies = await asyncio.gather(*calls, return_exceptions=True)
    for r in replies:
        if isinstance(r, BaseException) and not isinstance(r, Exception):
            raise r  # cancellation and the like are not a failed sample
    for r in replies:
        if isinstance(r, BudgetExhausted) or (isinstance(r, LMError) and r.permanent):
            raise r  # the run's budget refused a sample, or every later call would fail alike: a stop
    if replies and all(isinstance(r, Exception) for r in replies):
        raise replies[0]
    return list(replies)


async def _ask(
    setup: OptimizationSetup,
    prompt: str,
    lm: LM | None,
    temperature: float,
    max_tokens: int,
    seed: int | None,
    sample_index: int,
) -> Completion:
    lm = lm or setup.proposer_lm
    assert lm is not None  # OptimizationSetup defaults it to the task LM
    return await lm.complete(
        [{"role": "user", "content": prompt}],
        temperature=temperature,
        max_tokens=max_tokens,
        seed=setup.seed if seed is None else seed,
        sample_index=sample_index,
    )


def _record(
    purpose: str, module: str | None, sample_index: int, temperature: float, prompt: str, completion: Completion
) -> ProposalRecord:
    return ProposalRecord(
        purpose=purpose,
        module=module,
        sample_index=sample_index,
        temperature=temperature,
        prompt=prompt,
        reply=completion.text,
        kept=None,
        cached=completion.cached,
        prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens,
        finish_reason=completion.finish_reason,
        cache_key=completion.cache_key,
    )


def keep(
    setup: OptimizationSetup,
    record: ProposalRecord,
    kept: str | None,
    *,
    log: ProposalLog | None = None,
    note: str = "",
    contract: str = "",
    contract_reason: str = "",
) -> ProposalRecord:
    """Finish a record with what was kept (None: rejected), log it and emit its `proposal` event.

    `contract` (with `contract_reason`) is the outcome of the task-contract check (`proposers.contract`)
    for instruction proposals; it goes on the event so a benchmark can count how many proposals kept
    the contract, were repaired or were rejected, and why."""
    final = ProposalRecord(**{**record.to_dict(), "kept": kept, "note": note, "contract": contract})
    if log is not None:
        log.append(final)
    setup.emit(
        "proposal",
        purpose=final.purpose,
        module=final.module,
        sample_index=final.sample_index,
        temperature=final.temperature,
        accepted=kept is not None,
        cached=final.cached,
        text=kept if kept is not None else final.reply[:200],
        note=note,
        **({"contract": contract, "contract_reason": contract_reason} if contract else {}),
        cache_key=final.cache_key,
    )
    return final
