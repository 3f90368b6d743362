"""The task's contract: what the start instruction and the output field descriptions require of the
output, and the one check every proposed instruction passes before it is scored.

Small proposers rewrite instructions into something more general and drop what the task needs: a
TREC classifier's "The label must be exactly one of: abbreviation, description, entity, human,
location, number." became "You are an expert in generating human-like responses.", and the search
chose it. They also talk about the instruction instead of writing one ("The original instruction
does not contain any errors ...") or stop mid-sentence ("The feedback says: 1. It").

`Contract.of` derives the contract deterministically: enumerated label sets ("one of: a, b, c", a
list after a colon, "positive or negative") and the answer's form ("a number", "the option letter")
from the start instruction's sentences and the output fields' descriptions. `guard` then keeps a
proposal that states the whole contract, repairs one that drops part of it by appending the start's
contract sentences verbatim, and rejects (for a re-sample) one that is talk about an instruction or
about the program's code, that states no task (a header and the labels), or that is cut off. It is
conservative by construction: a proposal naming every allowed label is never changed
for its labels, and a start without a contract lets every proposal through. MIPRO's proposals, OPRO's
proposals and GRAD-SUM's edits all go through `guard`; every outcome is recorded as a `contract`
field on `proposal` events, which `contract_report` counts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from prompthone.program.label_sets import find_labels, label_pattern, sentences
from prompthone.program.signature import Field

#: statuses a checked proposal gets: kept as written, repaired, or rejected (to be re-sampled)
KEPT, REPAIRED, REJECTED = "kept", "repaired", "rejected"

#: answer forms: (name, where the start requires it, how a proposal shows it kept it)
FORMS: tuple[tuple[str, re.Pattern[str], re.Pattern[str]], ...] = (
    (
        "a number",
        re.compile(
            r"\b(?:a|one|single)\s+(?:whole\s+|single\s+)?(?:number|integer)\b|\bnumeric\b|\bnumber\s+only\b"
            r"|\bonly\s+(?:a|the)\s+number\b|\bintegers?\b|\bdigits?\b",
            re.I,
        ),
        re.compile(r"\b(?:numbers?|numeric|numerical|numerals?|integers?|digits?)\b", re.I),
    ),
    (
        "the option letter",
        re.compile(r"\b(?:option|choice|answer)\s+letter\b|\bletter\s+of\s+the\b|\(A\)", re.I),
        re.compile(r"\bletters?\b|\([A-Z]\)", re.I),
    ),
)

#: a word in any script (an instruction in Chinese is one "word" here, and never a format word)
_WORD = re.compile(r"[^\W\d_]+")


@dataclass(frozen=True)
class Contract:
    """What every instruction for one module must keep: `labels` (all of them named), or `forms` (the
    answer's form words) when there is no label set. `statement` is what a repair appends: the start
    instruction's contract sentences verbatim, or a sentence made from the field description."""

    labels: tuple[str, ...] = ()
    forms: tuple[str, ...] = ()
    statement: str = ""
    #: the output fields' names and labels, in lower case: words that alone state no task
    fields: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.labels or self.forms)

    @classmethod
    def of(
        cls, instruction: str, outputs: Iterable[Field] = (), *, optional: Iterable[str] = ("reasoning",)
    ) -> Contract:
        """The contract of a module that starts from `instruction` with these output fields
        (`optional` outputs, such as chain-of-thought reasoning, state no contract)."""
        skip = set(optional)
        labels: list[str] = []
        forms: list[str] = []
        statements: list[str] = []

        def take(source: str, statement: str) -> None:
            found = find_labels(source)
            new = [x for x in found if x.lower() not in {y.lower() for y in labels}]
            needs = [name for name, where, _ in FORMS if where.search(_without_lists(source)) and name not in forms]
            if new or needs:
                labels.extend(new)
                forms.extend(needs)
                if statement not in statements:
                    statements.append(statement)

        for sentence in sentences(instruction):
            take(sentence, sentence)
        for f in outputs:
            if f.name in skip or not f.description:
                continue
            desc = f.description.strip().rstrip(".")
            take(desc, f"The {f.label.lower()} must be {desc}.")
        words = dict.fromkeys(w.lower() for f in outputs for w in _WORD.findall(f"{f.name} {f.label}"))
        return cls(tuple(labels), () if labels else tuple(forms), " ".join(statements), tuple(words))

    def missing(self, text: str) -> list[str]:
        """What `text` leaves out: the labels it does not name, or (with no label set) the forms."""
        if self.labels:
            return [x for x in self.labels if not label_pattern(x).search(text)]
        return [name for name, _, kept in FORMS if name in self.forms and not kept.search(text)]

    def repair(self, text: str) -> str:
        """`text` with the start's contract sentences appended, so the proposal's own wording stays."""
        t = text.rstrip()
        if not self.statement or self.statement in t:
            return t
        sep = "" if not t else (" " if t[-1] in ".!?\"')”’]" else ". ")
        return f"{t}{sep}{self.statement}"

    def to_dict(self) -> dict[str, Any]:
        return {"labels": list(self.labels), "forms": list(self.forms), "statement": self.statement}


def _without_lists(text: str) -> str:
    """`text` minus an enumeration it holds, so a label called "number" is not read as a form."""
    found = find_labels(text)
    for x in found:
        text = label_pattern(x).sub(" ", text)
    return text


# -- talk about an instruction, and text that stops mid-sentence -------------------------------------
_META_TALK = [
    re.compile(
        r"\b(?:the|this|that|my|your|our)\s+(?:original|current|given|previous|above|old|new|revised|improved|"
        r"updated|proposed|existing|initial|starting|rewritten|modified)\s+(?:instruction|prompt)s?\b",
        re.I,
    ),
    re.compile(
        r"\b(?:the|this|that)\s+(?:instruction|prompt)\s+(?:is|was|does|did|doesn't|does\s+not|should|could|"
        r"would|needs|lacks|contains|scored|scores|achieves|achieved|performs|performed|works|worked|seems|"
        r"fails|failed|has|had|assumes|assumed|implies|means|tries|aims|ensures)\b",
        re.I,
    ),
    re.compile(r"\bthe\s+(?:feedback|reviewers?|evaluation\s+feedback)\b", re.I),
    re.compile(
        r"\b(?:I|[Ww]e)(?:'ve|\s+have)?\s+(?:revised|rewritten|rewrote|changed|updated|improved|modified|added|"
        r"removed)\b"
    ),
    re.compile(r"\b(?:re)?writ(?:e|ing)\s+(?:a|an|the)\s+(?:new\s+|better\s+)?(?:instruction|prompt)\b", re.I),
    # advice on editing it: "This would make the instruction more challenging" (chosen by a MIPRO search
    # on trec-label, seed 0, JSON start)
    re.compile(r"\b(?:make|makes|making|made)\s+(?:the|this|that)\s+(?:instruction|prompt)\b", re.I),
    # a reply that presents what follows: 'Here is a step that would be costly ...: "Instruct ..." This
    # instruction assumes ...' (chosen by a MIPRO search on trec-label, seed 0, at 271897a)
    re.compile(
        r"\bhere(?:\s+is|'s)\s+(?:a|an|the|my|your)\s+(?:\w+\s+){0,2}?(?:instruction|prompt|step|version|"
        r"rewrite|revision)s?\b",
        re.I,
    ),
]
_DANGLING_WORDS = re.compile(
    r"\b(?:a|an|the|and|or|but|nor|of|your|their|its|than|whether|because|such|each|every|both|e\.g\.|i\.e\.)$",
    re.I,
)
_DANGLING_ITEM = re.compile(r"[.:!?]\s+\d+[.)]\s+\S+(?:\s+\S+)?$")
_CLOSED = ".!?\"')”’]`*"


def talks_about_instruction(text: str) -> bool:
    """True when `text` discusses an instruction (the original one, the feedback, what was changed)
    rather than instructing the model."""
    return any(p.search(text) for p in _META_TALK)


def looks_truncated(text: str, *, cut_off: bool = False) -> bool:
    """True when `text` stops mid-sentence: a trailing colon, comma or open bracket, a dangling list item
    ("... says: 1. It"), a last word that cannot end a sentence ("the", "and"), an unclosed quote; or,
    with `cut_off` (the reply hit the token cap and the text runs to its end), no closing punctuation."""
    t = text.rstrip()
    if not t:
        return False
    if t[-1] in ":;,(-–—" or _DANGLING_WORDS.search(t) or (_DANGLING_ITEM.search(t) and t[-1] not in _CLOSED):
        return True
    if t.count("(") > t.count(")") or t.count('"') % 2 or t.count("“") > t.count("”"):
        return True
    return cut_off and t[-1] not in _CLOSED


def runs_to_cutoff(reply: str, text: str, finish_reason: str) -> bool:
    """True when the reply stopped at the token cap and `text` (taken from it) reaches the reply's end,
    so the cut fell inside the instruction rather than in chatter after it."""
    if finish_reason != "length":
        return False
    tail = re.findall(r"\w+", text)[-3:]
    return bool(tail) and re.findall(r"\w+", reply)[-len(tail) :] == tail


# -- text about the program's code, and text that states no task -------------------------------------
_CODE_TALK = [
    # "Step 1: Initialize a `Predict` object with the given signature and an instruction." (chosen for its
    # demos by a MIPRO search on trec-label: the 0.5B proposer retells the program code it is shown)
    re.compile(r"\b(?:Predict|ChainOfThought|Signature|Module)`?(?:\(|\s+(?:object|module|class|instance)\b)"),
    re.compile(
        r"\b(?:initiali[sz]e|instantiate|subclass)\s+(?:a|an|the)?\s*`?\w+`?\s+(?:object|module|class|instance)s?\b",
        re.I,
    ),
    re.compile(r"\bsignature\b[^.\n]{0,40}\b(?:instructions?|fields?)\b", re.I),
    # "... facilitating the generation of an MIPRO credit-assignment problem." (chosen for the query step on
    # hotpotqa-500: the proposer read a docstring of the program)
    re.compile(r"\b(?:dspy|prompthone|MIPRO(?:v2)?|OPRO|COPRO|GRAD-?SUM)\b", re.I),
    re.compile(r"\bself\.\w+|\bdef\s+\w+\s*\(|\b\w+\.\w+\("),
    # "Incorporate error checking, such as using the `isinstance()` function to validate that the input is a
    # question ..." (chosen by a MIPRO search on trec-label, seed 2): advice to a programmer, not the model
    re.compile(r"\b[A-Za-z_]\w*\(\)|`\w+`\s+(?:function|method)\b"),
]
#: words that, with the output fields' names and the allowed labels, make up a header or a format line
#: ("**Good Output:** Label (one of: ...)") rather than a task
_NO_TASK_WORDS = {
    "a", "an", "the", "of", "one", "is", "are", "be", "must", "exactly", "only", "either", "or", "and", "these",
    "following", "allowed", "possible", "valid", "good", "bad", "correct", "expected", "sample", "example",
    "examples", "output", "outputs", "input", "inputs", "format", "field", "fields", "value", "values", "here",
}  # fmt: skip


def talks_about_program(text: str) -> bool:
    """True when `text` retells the program's code (its classes, signature, calls) instead of telling the
    model what to do: small proposers shown the program's source echo it."""
    return any(p.search(text) for p in _CODE_TALK)


def states_no_task(text: str, contract: Contract) -> bool:
    """True when `text` holds nothing but the output's names, its allowed labels and format words: a header
    such as "**Good Output:** Label (one of: ...)" keeps every label, yet asks nothing of the model."""
    for label in contract.labels:
        text = label_pattern(label).sub(" ", text)
    words = {w.lower() for w in _WORD.findall(text)}
    return not words - _NO_TASK_WORDS - set(contract.fields)


# -- the check -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Verdict:
    """The outcome of `guard`: the instruction to use (None: rejected), its status and why."""

    text: str | None
    status: str
    reason: str = ""


def guard(text: str, contract: Contract, *, cut_off: bool = False) -> Verdict:
    """Check one proposed instruction against the task's contract.

    Rejected (re-sample it) when it talks about an instruction or the program's code instead of being an
    instruction, states no task, or stops mid-sentence; repaired (the start's contract sentences
    appended) when it drops labels or the answer's form; else kept as written.
    """
    if talks_about_instruction(text):
        return Verdict(None, REJECTED, "talks about an instruction instead of being one")
    if talks_about_program(text):
        return Verdict(None, REJECTED, "retells the program's code instead of instructing the model")
    if states_no_task(text, contract):
        return Verdict(None, REJECTED, "states no task: only the output's names, labels or format")
    if looks_truncated(text, cut_off=cut_off):
        return Verdict(None, REJECTED, "stops mid-sentence (truncated)")
    gone = contract.missing(text) if contract else []
    if gone and contract.statement:
        what = "labels" if contract.labels else "the answer's form"
        return Verdict(
            contract.repair(text), REPAIRED, f"dropped {what} {', '.join(gone)}; the start's contract appended"
        )
    return Verdict(text, KEPT)


# -- counting ------------------------------------------------------------------------------------------
@dataclass
class ContractReport:
    """Counts over `proposal` events: how many proposals kept the contract as written, were repaired or
    rejected by the check (with the reasons), and what the search chose."""

    checked: int = 0
    kept: int = 0
    repaired: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)  # module -> "start", "kept", "repaired" or "other"

    @property
    def kept_share(self) -> float | None:
        """The share of checked proposals that kept the contract as written."""
        return self.kept / self.checked if self.checked else None

    def to_dict(self) -> dict[str, Any]:
        return {**vars(self), "kept_share": self.kept_share}


def contract_report(
    events: Iterable[Mapping[str, Any]],
    chosen: Mapping[str, str] | None = None,
    start: Mapping[str, str] | None = None,
) -> ContractReport:
    """Count the contract outcomes of `proposal` events (`kind`/`data` rows of a run store, or the data
    dicts themselves). With `chosen` (module -> the chosen instruction) and `start` (module -> the
    start's), also say for each module whether the search chose the start, a proposal kept as written,
    a repaired one, or something else."""
    out = ContractReport()
    used: dict[tuple[Any, str], str] = {}
    for ev in events:
        data = ev.get("data", ev) if "kind" in ev else ev
        if "kind" in ev and ev["kind"] != "proposal":
            continue
        status = data.get("contract")
        if not status:
            continue
        out.checked += 1
        if status == KEPT:
            out.kept += 1
        elif status == REPAIRED:
            out.repaired += 1
        elif status == REJECTED:
            out.rejected += 1
        if status in (REPAIRED, REJECTED):
            why = str(data.get("contract_reason", "")).split(";")[0]
            out.reasons[why] = out.reasons.get(why, 0) + 1
        if data.get("accepted") and data.get("text"):
            used[(data.get("module"), _norm(str(data["text"])))] = status
    for module, text in (chosen or {}).items():
        if start is not None and _norm(text) == _norm(start.get(module, "")):
            out.chosen[module] = "start"
        else:
            out.chosen[module] = used.get((module, _norm(text)), "other")
    return out


def _norm(text: str) -> str:
    return " ".join(text.split())


def contracts_for(modules: Mapping[str, Any], instructions: Mapping[str, str]) -> dict[str, Contract]:
    """The contract of each module of a program (`named_modules()`), from its start `instructions`."""
    return {
        name: Contract.of(
            instructions.get(name, ""), mod.signature.outputs, optional=getattr(mod, "optional_outputs", ())
        )
        for name, mod in modules.items()
    }


__all__: Sequence[str] = [
    "FORMS",
    "KEPT",
    "REJECTED",
    "REPAIRED",
    "Contract",
    "ContractReport",
    "Verdict",
    "contract_report",
    "contracts_for",
    "guard",
    "looks_truncated",
    "runs_to_cutoff",
    "states_no_task",
    "talks_about_instruction",
    "talks_about_program",
]
