"""The LM steps of GRAD-SUM, each a prompt template plus the reading of its reply.

- attribution: which module of a multi-module program is at fault for a failed example;
- gradient: how that module's instruction should change, from one failed example (prompt, input,
  output, score and the metric's feedback or the judge's reasoning);
- summary: many gradients of one module folded into one general direction;
- edit: a new instruction written along a direction (or, in the ablation, along a few raw gradients),
  checked against the task's contract (`proposers.contract`, shared with MIPRO and OPRO): an edit that
  talks about the instruction or is cut off is re-sampled, one that drops the start's allowed labels or
  answer form gets the start's contract sentences appended.

Each step asks the proposer through the shared call path (`proposers.calls.propose`), so every call is
cached, counted and recorded like any other, and returns the call's `ProposalRecord`: the optimizer
emits the records in a fixed order once a batch of concurrent calls is done (`keep`), so a run's events
do not depend on which call finished first. The caller checks the budget once before each batch.
Templates live in `prompthone/templates/gradsum_*.txt`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prompthone.evaluate import ExampleRecord
from prompthone.optimize.base import OptimizationSetup
from prompthone.optimize.proposers.calls import ProposalRecord, propose
from prompthone.optimize.proposers.contract import REJECTED, Contract, guard, runs_to_cutoff
from prompthone.program import Module, ModuleCall
from prompthone.program.values import format_value, label_key, label_of
from prompthone.templates import render_template

#: default caps on proposer replies (tokens): short answers keep a small local proposer fast
GRADIENT_TOKENS = 120
SUMMARY_TOKENS = 160
EDIT_TOKENS = 256
ATTRIBUTION_TOKENS = 60
#: an edit rejected by the contract check is re-sampled up to this many times in all
EDIT_ATTEMPTS = 2
#: re-sample `a` of an edit uses sample index `index + a * RESAMPLE_STRIDE`, clear of every first sample
RESAMPLE_STRIDE = 100_000
#: GRAD-SUM's proposer calls have always been made with seed 0; the response caches are keyed on it
SEED = 0
#: how the edit prompt states the start's contract (nothing when the start has none)
CONTRACT_LINE = "\nKeep this requirement of the step's first instruction, word for word: {statement}"


@dataclass(frozen=True)
class Failure:
    """One example scored below the top score, with the module it was attributed to and why.

    `how` says how the module was chosen: "single module", "parse failure" / "error" (a call of that
    module failed to parse or errored), "lm" (the proposer named it), "last" (the setting) or
    "fallback" (the proposer's reply named no module, so the last module called was taken).
    """

    example_id: str
    record: ExampleRecord
    trace: tuple[ModuleCall, ...]
    module: str
    how: str
    call: ProposalRecord | None = None  # the proposer call that named the module ("lm"), if one did


@dataclass(frozen=True)
class Gradient:
    """A textual gradient: how one module's instruction should change, written from one failure."""

    module: str
    example_id: str
    text: str


_RUN = re.compile(r"(.{1,3}?)\1{7,}", re.DOTALL)


def clip(text: str, max_chars: int) -> str:
    """Shorten long values (retrieved passages, runaway replies) in proposer prompts: small proposers read
    slowly. A run of one short piece repeated (`0000...`) is written once with a note first."""
    text = _RUN.sub(lambda m: m.group(1) * 3 + "...(repeated)", text.strip())
    return text if len(text) <= max_chars else text[: max_chars - 15].rstrip() + " ...[cut]"


def _values_text(values: Mapping[str, Any], max_chars: int, indent: str = "  ") -> str:
    lines = []
    for k, v in values.items():
        text = clip(format_value(v), max_chars).replace("\n", "\n" + indent + "  ")
        lines.append(f"{indent}{label_of(k)}: {text}")
    return "\n".join(lines) or f"{indent}(none)"


def trace_text(trace: Sequence[ModuleCall], max_chars: int, focus: str | None = None) -> str:
    """The module calls of one run as numbered steps, each with its inputs and raw reply."""
    lines = []
    for i, call in enumerate(trace, 1):
        mark = "  <- the step to improve" if focus is not None and call.module == focus else ""
        lines.append(f"Step {i}: {call.module}{mark}")
        lines.append("  Inputs:")
        lines.append(_values_text(call.inputs, max_chars, indent="    "))
        if call.status == "error":
            lines.append(f"  Reply: (the call failed: {call.error})")
        else:
            reply = clip(call.raw, max_chars).replace("\n", "\n    ")
            lines.append(f"  Reply:\n    {reply}")
            if call.status == "parse_failure" and call.failure is not None:
                lines.append(f"  (this reply could not be read: {call.failure.reason})")
    return "\n".join(lines)


def _final_output(record: ExampleRecord, max_chars: int) -> str:
    shown = {k: v for k, v in record.outputs.items() if v is not None and k != "reasoning"}
    if not shown:
        return "(no output could be read)"
    return "; ".join(f"{label_of(k)}: {clip(format_value(v), max_chars)}" for k, v in shown.items())


def _score_text(record: ExampleRecord) -> str:
    score = record.counted_score if record.counted_score is not None else 0.0
    what = " (the reply could not be read)" if record.status == "parse_failure" else ""
    return f"{score:.2f}{what}"


def task_line(description: str | None) -> str:
    """The task description as the proposer templates show it (an empty line when there is none)."""
    return f"\nThe system's task: {' '.join(description.split())}\n" if description else ""


def _feedback(record: ExampleRecord, max_chars: int) -> str:
    return clip(record.feedback or "(no feedback: the score is all there is)", max_chars)


# -- attribution ------------------------------------------------------------------------------------
def attribute_without_lm(trace: Sequence[ModuleCall], module_names: Sequence[str]) -> tuple[str, str] | None:
    """The module at fault when it is evident: the only module, or the first call that failed to parse.

    Returns (module, how) or None when only a judgment of the outputs can tell.
    """
    if len(module_names) == 1:
        return module_names[0], "single module"
    for call in trace:
        if call.status in ("parse_failure", "error"):
            return call.module, call.status.replace("_", " ")
    called = list(dict.fromkeys(c.module for c in trace))
    if len(called) == 1:
        return called[0], "single module"
    return None


def read_module_name(text: str, names: Sequence[str]) -> str | None:
    """The module a reply names on its `Step:` line (else the only module it mentions), or None."""
    keys = {label_key(n): n for n in names}
    for m in reversed(list(re.finditer(r"step\s*(?:\*\*)?\s*:\s*(.+)", text, re.IGNORECASE))):
        value = m.group(1).strip().strip("`*'\". ")
        if label_key(value) in keys:
            return keys[label_key(value)]
        hits = [n for n in names if re.search(rf"\b{re.escape(n)}\b", value)]
        if len(hits) == 1:
            return hits[0]
    hits = [n for n in names if re.search(rf"\b{re.escape(n)}\b", text)]
    return hits[0] if len(hits) == 1 else None


async def attribute_with_lm(
    setup: OptimizationSetup,
    record: ExampleRecord,
    trace: Sequence[ModuleCall],
    names: Sequence[str],
    *,
    max_chars: int,
    task: str | None = None,
) -> tuple[str, str, ProposalRecord]:
    """Ask the proposer which step went wrong, given the whole trace; the last step if it names none.
    Returns (module, how, the call's record)."""
    called = [n for n in dict.fromkeys(c.module for c in trace) if n in names] or list(names)
    prompt = render_template(
        "gradsum_attribution",
        task=task_line(task),
        trace=trace_text(trace, max_chars),
        final_output=_final_output(record, max_chars),
        score=_score_text(record),
        feedback=_feedback(record, max_chars),
        names=", ".join(called),
    )
    reply, call = await propose(setup, prompt, purpose="gradsum_attribution", temperature=0.0,
                                max_tokens=ATTRIBUTION_TOKENS, seed=SEED, check_budget=False)  # fmt: skip
    name = read_module_name(reply, called)
    if name is None:
        return called[-1], "fallback", call
    return name, "lm", call


# -- gradient, summary, edit ------------------------------------------------------------------------
async def write_gradient(
    setup: OptimizationSetup, failure: Failure, instruction: str, *, max_chars: int, task: str | None = None
) -> tuple[Gradient | None, ProposalRecord]:
    """One textual gradient for `failure.module` (None if the proposer wrote nothing), and the call's record."""
    prompt = render_template(
        "gradsum_gradient",
        task=task_line(task),
        module=failure.module,
        instruction=instruction,
        trace=trace_text(failure.trace, max_chars, focus=failure.module if len(failure.trace) > 1 else None),
        final_output=_final_output(failure.record, max_chars),
        score=_score_text(failure.record),
        feedback=_feedback(failure.record, max_chars),
    )
    reply, call = await propose(setup, prompt, purpose="gradsum_gradient", module=failure.module, temperature=0.0,
                                max_tokens=GRADIENT_TOKENS, seed=SEED, check_budget=False)  # fmt: skip
    text = reply.strip()
    return (Gradient(failure.module, failure.example_id, text) if text else None), call


def gradient_list(gradients: Sequence[Gradient]) -> str:
    return "\n".join(f"- {' '.join(g.text.split())}" for g in gradients)


async def summarize(
    setup: OptimizationSetup, module: str, instruction: str, gradients: Sequence[Gradient], *, task: str | None = None
) -> tuple[str | None, ProposalRecord]:
    """Fold the gradients of one module into one general direction (None if the reply is empty), and the
    call's record."""
    prompt = render_template(
        "gradsum_summary",
        task=task_line(task),
        module=module,
        instruction=instruction,
        gradients=gradient_list(gradients),
    )
    reply, call = await propose(setup, prompt, purpose="gradsum_summary", module=module, temperature=0.0,
                                max_tokens=SUMMARY_TOKENS, seed=SEED, check_budget=False)  # fmt: skip
    return reply.strip() or None, call


def _fields(fields: Sequence[Any]) -> str:
    return "; ".join(f"{f.label} ({f.description})" if f.description else f.label for f in fields) or "(nothing)"


@dataclass(frozen=True)
class EditAttempt:
    """One edit call: its record, and what the contract check made of it."""

    call: ProposalRecord
    kept: str | None
    contract: str = ""  # "kept", "repaired", "rejected"; "" when the reply held no usable instruction
    reason: str = ""


@dataclass(frozen=True)
class Edit:
    """The new instruction of an edit (None: no usable one) and every call made for it."""

    text: str | None
    attempts: tuple[EditAttempt, ...]


async def edit_instruction(
    setup: OptimizationSetup,
    module_name: str,
    module: Module,
    instruction: str,
    feedback: str,
    *,
    temperature: float,
    sample_index: int,
    max_chars: int = 2000,
    task: str | None = None,
    contract: Contract | None = None,
    attempts: int = EDIT_ATTEMPTS,
) -> Edit:
    """A new instruction for `module` written along `feedback` (text None if no reply holds one).

    An edit the contract check rejects is re-sampled, at most `attempts` calls in all; a reply with no
    usable instruction, or the current one unchanged, ends the edit as before (no re-sample)."""
    contract = contract or Contract()
    prompt = render_template(
        "gradsum_edit",
        task=task_line(task),
        module=module_name,
        inputs=_fields(module.signature.inputs),
        outputs=_fields(module.signature.outputs),
        contract=CONTRACT_LINE.format(statement=contract.statement) if contract else "",
        instruction=instruction,
        feedback=feedback.strip(),
    )
    tried: list[EditAttempt] = []
    for a in range(max(1, attempts)):
        index = sample_index + a * RESAMPLE_STRIDE
        reply, call = await propose(
            setup, prompt, purpose="gradsum_edit", module=module_name, temperature=temperature,
            max_tokens=EDIT_TOKENS, sample_index=index, seed=SEED, check_budget=False,
        )  # fmt: skip
        new = read_instruction(reply)
        if new is None or len(new) > max_chars:
            tried.append(EditAttempt(call, None, "", "no usable instruction in the reply"))
            break
        verdict = guard(new, contract, cut_off=runs_to_cutoff(reply, new, call.finish_reason))
        text = verdict.text
        if text is not None and text == instruction.strip():
            tried.append(EditAttempt(call, None, verdict.status, "the current instruction unchanged"))
            break
        tried.append(EditAttempt(call, text, verdict.status, verdict.reason))
        if verdict.status != REJECTED:
            return Edit(text, tuple(tried))
    return Edit(None, tuple(tried))


_LEAD_IN = re.compile(r"^(?:here(?:'s| is)|sure|certainly|the (?:new|improved)|new instruction|improved instruction)"
                      r"[^\n]*:\s*\n", re.IGNORECASE)  # fmt: skip


def read_instruction(text: str) -> str | None:
    """The instruction in an edit reply: between <instruction> tags, else the reply minus a lead-in line.

    A reply cut off after the opening tag keeps what follows it; code fences, surrounding quotes and the
    `<<< >>>` markers the prompt used are removed. Returns None when nothing is left.
    """
    t = (text or "").strip()
    tagged = re.findall(r"<instruction>(.*?)</instruction>", t, re.IGNORECASE | re.DOTALL)
    if tagged:
        t = tagged[-1]
    elif re.search(r"<instruction>", t, re.IGNORECASE):
        t = re.split(r"<instruction>", t, flags=re.IGNORECASE)[-1]
    else:
        t = _LEAD_IN.sub("", t, count=1)
    t = re.sub(r"</?instruction>", "", t, flags=re.IGNORECASE)
    t = re.sub(r"^```\w*\s*|\s*```$", "", t.strip())
    t = t.strip().removeprefix("<<<").removesuffix(">>>").strip()
    if len(t) >= 2 and t[0] == t[-1] and t[0] in "\"'":
        t = t[1:-1].strip()
    return t or None
