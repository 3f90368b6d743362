"""Proposer calls: every LM call a proposer makes goes through here, so each one is recorded.

A proposal call is an ordinary `LM.complete` on the setup's proposer LM (so usage, budget and the
response cache count it like any other call) plus a `ProposalRecord` appended to the caller's log
and a `"proposal"` event. Calls at temperature > 0 carry an explicit `sample_index`, so several
samples of one prompt are distinct yet replay exactly from the cache on a re-run with the same seed.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from prompthone.lm.client import LM
from prompthone.optimize.base import OptimizationSetup


@dataclass(frozen=True)
class ProposalRecord:
    """One proposer call: what it was for, how it was sampled, what came back and what was kept."""

    purpose: str  # "dataset_observe", "dataset_summary", "program", "module_role", "instruction", ...
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
) -> tuple[str, ProposalRecord]:
    """Ask the proposer LM (or `lm`) one question; return the raw reply and its record.

    The record's `kept` is None here: the caller fills it in by calling `keep()` once it has cleaned
    the reply, because only the caller knows what a usable answer looks like.
    """
    setup.budget.check()
    lm = lm or setup.proposer_lm
    assert lm is not None  # OptimizationSetup defaults it to the task LM
    completion = await lm.complete(
        [{"role": "user", "content": prompt}],
        temperature=temperature,
        max_tokens=max_tokens,
        seed=setup.seed,
        sample_index=sample_index,
    )
    record = ProposalRecord(
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
    )
    return completion.text, record


def keep(
    setup: OptimizationSetup,
    record: ProposalRecord,
    kept: str | None,
    *,
    log: ProposalLog | None,
    note: str = "",
    contract: str = "",
    contract_reason: str = "",
) -> ProposalRecord:
    """Finish a record with what was kept (None: rejected), log it and emit a `proposal` event.

    `contract` (with `contract_reason`) is the outcome of the task-contract check (`proposers.contract`)
    for instruction proposals; it goes on the event so a benchmark can count how many proposals kept
    the contract, were repaired or were rejected, and why."""
    final = ProposalRecord(**{**record.to_dict(), "kept": kept, "note": note, "contract": contract})
    if log is not None:
        log.append(final)
    emit_proposal(
        setup,
        purpose=final.purpose,
        module=final.module,
        sample_index=final.sample_index,
        temperature=final.temperature,
        kept=kept,
        cached=final.cached,
        reply=final.reply,
        note=note,
        contract=contract,
        contract_reason=contract_reason,
    )
    return final


def emit_proposal(
    setup: OptimizationSetup,
    *,
    purpose: str,
    module: str | None,
    sample_index: int,
    temperature: float,
    kept: str | None,
    cached: bool,
    reply: str,
    note: str = "",
    contract: str = "",
    contract_reason: str = "",
) -> None:
    """Emit one `proposal` event. Methods that call their proposer LM themselves (OPRO, GRAD-SUM) use it
    directly, so every method's proposals are counted from the same kind of event."""
    setup.emit(
        "proposal",
        purpose=purpose,
        module=module,
        sample_index=sample_index,
        temperature=temperature,
        accepted=kept is not None,
        cached=cached,
        text=kept if kept is not None else reply[:200],
        note=note,
        **({"contract": contract, "contract_reason": contract_reason} if contract else {}),
    )
