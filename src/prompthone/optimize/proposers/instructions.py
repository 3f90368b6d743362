"""Grounded instruction proposals: the proposer LM writes candidate instructions for one module.

Each proposal prompt can show: a summary of the data, a description of the program, the module's
role, a few demos of the module done right (bootstrapped), a tip drawn at random, and earlier
instructions with their scores. Which parts are shown, the tip and the temperature are a
`ProposalOptions`, so a meta-optimizer (MIPRO++) can tune them.

Replies are cleaned before use: small proposers wrap instructions in quotes and labels, continue
into made-up examples, or write code (a 0.5B model once proposed `Predict("...") -> description`).
`clean_instruction` strips the wrapping and rejects what cannot serve as an instruction, and a
rejected proposal is re-sampled with the next sample index. Last comes the task-contract check
(`proposers.contract`, shared with OPRO and GRAD-SUM): talk about an instruction and cut-off text are
rejected too; a proposal that drops the start's allowed labels or answer form gets the start's
contract sentences appended. The proposal prompt shows the fields' descriptions and that contract.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cache

from prompthone.optimize.base import OptimizationSetup
from prompthone.optimize.proposers.calls import ProposalLog, keep, propose
from prompthone.optimize.proposers.contract import REJECTED, Contract, contracts_for, guard, runs_to_cutoff
from prompthone.optimize.proposers.grounding import shorten
from prompthone.optimize.proposers.overlap import copies_run, shingles
from prompthone.program import Demo, Module
from prompthone.program.signature import Field
from prompthone.program.values import label_key, label_of
from prompthone.templates import load_template, render_template

#: Tips a proposal may carry, drawn at random per proposal (the paper's set; our wording).
TIPS: dict[str, str] = {
    "none": "",
    "creative": "Feel free to be inventive: a fresh angle on the task is welcome. ",
    "simple": "Keep it short, plain and direct. ",
    "descriptive": "Be detailed: spell out what a good output looks like. ",
    "high_stakes": "Frame the task as one where a mistake would be costly, so the model must be careful. ",
    "persona": 'Start by giving the model a fitting role, e.g. "You are an expert ...". ',
}

MIN_WORDS = 4
MAX_CHARS = 900
#: how the proposal prompt states the start's contract (empty when the start has none)
CONTRACT_LINE = "\nWhatever else you change, the new instruction must keep this requirement, word for word: {statement}"

_LABEL = re.compile(
    r"^\s*(?:[#>*_\s]*)(?:(?:new|proposed|improved|revised|final|better|updated|suggested)\s+)?"
    r"(?:instruction|prompt)s?(?:\s*\d+)?\s*(?:for (?:this|the) step)?\s*[:：]\s*(?:\*\*|__)?\s*",
    re.I,
)
_CODE = [
    re.compile(r"\b[A-Za-z_][\w.]*\(\s*(?:[\"']|\w+\s*=)"),  # a call with a string or keyword argument
    re.compile(r"->|=>"),
    re.compile(r"^\s*(?:def|class|import|from\s+\S+\s+import|return)\b", re.M),
    re.compile(r"^\s*[{\[]"),
    re.compile(r"\b(?:dspy|prompthone)\b", re.I),
]
_STOP_LINES = re.compile(
    r"^\s*(?:[#*_>\s]*)(?:examples?|explanation|note|input|output|rationale)\b\s*\d*\s*[:：]", re.I
)
_META = re.compile(  # "Write an instruction that...": the request echoed back, not an instruction
    r"^\W*(?:write|create|generate|compose|propose)\s+(?:a|an|the)\s+(?:new\s+|better\s+)?(?:instruction|prompt)", re.I
)
_QUOTES = [('"', '"'), ("'", "'"), ("“", "”"), ("‘", "’"), ("`", "`"), ("«", "»")]


@cache
def _prompt_shingles() -> frozenset[tuple[str, ...]]:
    """Five-word runs of the proposal prompts' fixed wording and of the tips: a reply that repeats one
    is echoing a request ("no code, no list of fields, no examples") rather than answering it. The
    module-role prompt counts too: its "helps the program reach a right final answer" comes back in
    role descriptions, and a proposer that pastes the role into its instruction carries it along."""
    fixed = [
        re.sub(r"\{[a-z_]+\}", "\n", load_template(name)) for name in ("proposer_instruction", "proposer_module_role")
    ]
    fixed.append(re.sub(r"\{[a-z_]+\}", "\n", CONTRACT_LINE))
    return frozenset(shingles("\n".join([*fixed, *TIPS.values()])))


def _describes_step(text: str, module: str) -> bool:
    """True when `text` names the step as the program does (`"answer"`, `the answer step`)."""
    name = re.escape(module)
    quoted = rf"[\"'“‘`]{name}[\"'”’`]"
    return bool(re.search(quoted, text) or re.search(rf"\bthe\s+{name}\s+step\b", text, re.I))


def clean_instruction(text: str, *, field_labels: Iterable[str] = ()) -> tuple[str | None, str]:
    """(instruction, "") when `text` can serve as an instruction, else (None, reason).

    Strips code fences (with their language tag, closed or not), a leading label ("Instruction:",
    "**New instruction:**", "Step 2:"), wrapping quotes and markdown emphasis; cuts at a line that
    starts an example or a field (`Question:`, `Answer:`, `Example:`), since a proposer that goes on
    past the instruction is inventing a demo. Rejects empty or very short text, code, echoes of the
    proposal prompt's own wording, and text longer than `MAX_CHARS` after cutting at a sentence end.
    """
    t = text.strip()
    t = re.sub(r"^\s*(?:step\s*\d+\s*[:.)-]?)\s*(?:\n|$)", "", t, flags=re.I)
    # A fenced block, closed or cut off by the token limit: keep its body, without the language tag
    # (a code model opens with ```python; a bare `replace` used to leave "python" as the first word).
    fence = re.match(r"```[\w+-]*[ \t]*\n(.*?)(?:\n?```|$)", t, re.S)
    if fence:
        t = fence.group(1).strip()
    t = t.replace("```", "").strip()
    # A label on its own line followed by the instruction, or inline before it.
    t = _LABEL.sub("", t, count=1).strip()
    keys = {label_key(x) for x in field_labels}
    kept: list[str] = []
    for i, line in enumerate(t.splitlines()):
        head = line.strip().split(":", 1)[0] if ":" in line else None
        if i > 0 and (_STOP_LINES.match(line) or (head is not None and label_key(head) in keys and head.strip())):
            break
        if i == 0 and head is not None and label_key(head) in keys and len(head) < 30:
            return None, "starts like an output or input field, not an instruction"
        kept.append(line)
    t = "\n".join(kept).strip()
    for _ in range(3):
        t = t.strip()
        for a, b in _QUOTES:
            if len(t) >= 2 and t.startswith(a) and t.endswith(b) and t.count(a) <= 2:
                t = t[1:-1]
        for mark in ("**", "__", "*"):
            if len(t) > 2 * len(mark) and t.startswith(mark) and t.endswith(mark):
                t = t[len(mark) : -len(mark)]
    t = re.sub(r"[ \t]+", " ", t).strip()
    t = re.sub(r"\n{3,}", "\n\n", t)
    if not t:
        return None, "empty"
    for pat in _CODE:
        if pat.search(t):
            return None, "looks like code, not an instruction"
    if shingles(t) & _prompt_shingles() or _META.match(t):
        return None, "echoes the proposal prompt instead of answering it"
    if len(t) > MAX_CHARS:
        cut = t[:MAX_CHARS]
        end = max(cut.rfind(". "), cut.rfind(".\n"), cut.rfind("! "), cut.rfind("? "))
        if end < MAX_CHARS // 3:
            return None, f"too long ({len(t)} characters) with no sentence end to cut at"
        t = cut[: end + 1].strip()
    if len(re.findall(r"[A-Za-z]{2,}", t)) < MIN_WORDS:
        return None, f"fewer than {MIN_WORDS} words"
    return t, ""


def normalized(instruction: str) -> str:
    """Instructions equal up to case, spacing and punctuation count as the same proposal."""
    return " ".join(re.findall(r"[a-z0-9]+", instruction.lower()))


@dataclass(frozen=True)
class ProposalOptions:
    """How one instruction is proposed: which grounding parts are shown, the tip, the temperature."""

    use_dataset: bool = True
    use_program: bool = True
    use_demos: bool = True
    tip: str = "none"
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.tip not in TIPS:
            raise ValueError(f"unknown tip {self.tip!r}; expected one of {', '.join(TIPS)}")
        if not 0.0 < self.temperature <= 2.0:
            raise ValueError(f"proposal temperature must be in (0, 2] so samples differ, got {self.temperature}")


@dataclass(frozen=True)
class Grounding:
    """The material proposals are grounded in, computed once per run."""

    dataset_summary: str = ""
    program_description: str = ""
    module_roles: Mapping[str, str] = field(default_factory=dict)


def format_demos(module: Module, demos: Sequence[Demo], limit: int = 3) -> str:
    """Demos as `Label: value` blocks with long values cut, for a proposer prompt."""
    sig = module.signature
    blocks = []
    for i, d in enumerate(demos[:limit], 1):
        lines = [f"{label_of(n)}: {shorten(d[n])}" for n in (*sig.input_names, *sig.output_names) if n in d]
        blocks.append(f"Example {i}\n" + "\n".join(lines))
    return "\n\n".join(blocks)


def format_fields(fields: Sequence[Field]) -> str:
    """Field labels for a proposer prompt, each with its description in brackets when it has one."""
    return ", ".join(f"{f.label} ({f.description})" if f.description else f.label for f in fields)


@dataclass(frozen=True)
class _Checked:
    """A cleaned proposal: the text to use (None: rejected), why, and the contract check's outcome."""

    text: str | None
    reason: str = ""
    contract: str = ""
    contract_reason: str = ""


def format_history(history: Sequence[tuple[str, float]], limit: int = 5) -> str:
    """Earlier instructions with scores as integers 0-100, best LAST (what the proposer reads most
    recently is what to beat)."""
    best: dict[str, tuple[str, float]] = {}
    for text, score in history:
        k = normalized(text)
        if k not in best or score > best[k][1]:
            best[k] = (text, score)
    ranked = sorted(best.values(), key=lambda x: x[1])[-limit:]
    lines = [f"[score {round(100 * s)}] {shorten(t, 400)}" for t, s in ranked]
    return "\n".join(lines)


class InstructionProposer:
    """Writes candidate instructions for the modules of `setup.program` through the proposer LM.

    Every call is recorded in `log` (and emitted as a `proposal` event). A rejected or duplicate
    proposal is re-sampled with another sample index, at most `max_attempts` times per proposal.
    """

    def __init__(
        self,
        setup: OptimizationSetup,
        grounding: Grounding,
        *,
        max_tokens: int = 200,
        max_attempts: int = 3,
        demos_shown: int = 3,
        history_size: int = 5,
        log: ProposalLog | None = None,
    ) -> None:
        self.setup = setup
        self.grounding = grounding
        self.max_tokens = max_tokens
        self.max_attempts = max(1, max_attempts)
        self.demos_shown = demos_shown
        self.history_size = history_size
        self.log: ProposalLog = log if log is not None else []
        self.modules = setup.program.named_modules()
        assert setup.start is not None  # OptimizationSetup fills it in
        #: what each module's start requires of the output, kept by every proposal (`proposers.contract`)
        self.contracts: dict[str, Contract] = contracts_for(
            self.modules, {m: setup.start[m].instruction for m in self.modules}
        )

    def prompt(
        self,
        module: str,
        current: str,
        options: ProposalOptions,
        *,
        demos: Sequence[Demo] = (),
        history: Sequence[tuple[str, float]] = (),
    ) -> str:
        """The proposal prompt for one module under `options`."""
        mod = self.modules[module]
        g = self.grounding
        parts: list[str] = []
        if options.use_dataset and g.dataset_summary:
            parts.append(f"About the data: {g.dataset_summary}")
        if options.use_program and g.program_description:
            parts.append(f"About the program: {g.program_description}")
        if options.use_program and g.module_roles.get(module):
            parts.append(f"Role of this step: {g.module_roles[module]}")
        if options.use_demos and demos and self.demos_shown > 0:
            parts.append("Examples of this step done right:\n" + format_demos(mod, demos, self.demos_shown))
        grounding = ("\n" + "\n\n".join(parts) + "\n") if parts else ""
        hist = ""
        if history:
            hist = (
                "\nEarlier instructions for this step, with their scores (0-100, higher is better), "
                "best last:\n" + format_history(history, self.history_size) + "\n"
            )
        sig = mod.signature
        return render_template(
            "proposer_instruction",
            grounding=grounding,
            module=module,
            inputs=format_fields(sig.inputs) or "nothing",
            outputs=format_fields(sig.outputs),
            current=current.strip() or "(none)",
            contract=CONTRACT_LINE.format(statement=c.statement) if (c := self.contracts[module]) else "",
            history=hist,
            tip=TIPS[options.tip],
        )

    def _labels(self, module: str) -> list[str]:
        sig = self.modules[module].signature
        return [label_of(n) for n in (*sig.input_names, *sig.output_names)]

    def _clean(
        self, module: str, reply: str, seen: set[str], shown: Sequence[Demo] = (), finish_reason: str = ""
    ) -> _Checked:
        text, reason = clean_instruction(reply, field_labels=self._labels(module))
        if text is not None and copies_run(text, (value for demo in shown for value in demo.values())):
            # "Answer The Chronicle of Philanthropy's publishing overlap with Antic is with Antic.": a
            # small proposer pasting a demo it was shown writes one example's content, not an instruction
            text, reason = None, "copies text from an example shown to the proposer"
        if text is not None and _describes_step(text, module):
            # 'Step "classify" receives a question...', "The answer step receives the context...": a
            # description of the program, copied from the proposal prompt or the step's role, not an
            # instruction to the model
            text, reason = None, "describes the program step instead of instructing the model"
        if text is None:
            return _Checked(None, reason)
        # the task's contract: talk about an instruction or a cut-off text is rejected; dropped labels or
        # answer form are repaired with the start's own contract sentences
        verdict = guard(text, self.contracts[module], cut_off=runs_to_cutoff(reply, text, finish_reason))
        if verdict.text is None:
            return _Checked(None, verdict.reason, REJECTED, verdict.reason)
        if normalized(verdict.text) in seen:
            return _Checked(None, "duplicate of an instruction already proposed", verdict.status, verdict.reason)
        return _Checked(verdict.text, "", verdict.status, verdict.reason)

    def _keep(self, rec, checked: _Checked, tip: str) -> None:
        note = checked.reason or "; ".join(x for x in (checked.contract_reason, f"tip={tip}") if x)
        keep(self.setup, rec, checked.text, log=self.log, note=note, contract=checked.contract,
             contract_reason=checked.contract_reason)  # fmt: skip

    async def propose_one(
        self,
        module: str,
        current: str,
        options: ProposalOptions,
        *,
        sample_base: int,
        demos: Sequence[Demo] = (),
        history: Sequence[tuple[str, float]] = (),
        avoid: Iterable[str] = (),
    ) -> str | None:
        """One new instruction (or None if every attempt was rejected).

        Attempt `a` uses sample index `sample_base + a`: callers give each proposal its own block of
        `max_attempts` indices so samples stay distinct and replayable.
        """
        prompt = self.prompt(module, current, options, demos=demos, history=history)
        seen = {normalized(a) for a in avoid} | {normalized(current)}
        for attempt in range(self.max_attempts):
            reply, rec = await propose(
                self.setup, prompt, purpose="instruction", module=module, temperature=options.temperature,
                sample_index=sample_base + attempt, max_tokens=self.max_tokens,
            )  # fmt: skip
            checked = self._clean(module, reply, seen, demos, rec.finish_reason)
            self._keep(rec, checked, options.tip)
            if checked.text is not None:
                return checked.text
        return None

    async def propose_many(
        self,
        module: str,
        current: str,
        options: Sequence[ProposalOptions],
        *,
        demo_sets: Sequence[Sequence[Demo]] = (),
        sample_base: int = 0,
    ) -> list[str]:
        """One proposal per entry of `options` (proposal k is shown demo set k, cycled), deduplicated.

        Proposals run concurrently, round by round: round r samples every still-missing proposal with
        index `sample_base + k * max_attempts + r`; results are taken in k order, so the outcome does
        not depend on which call finished first.
        """
        n = len(options)
        found: dict[int, str] = {}
        seen = {normalized(current)}
        pending = list(range(n))
        prompts = {
            k: self.prompt(module, current, options[k], demos=demo_sets[k % len(demo_sets)] if demo_sets else ())
            for k in range(n)
        }
        for r in range(self.max_attempts):
            if not pending:
                break
            calls = [
                propose(
                    self.setup,
                    prompts[k],
                    purpose="instruction",
                    module=module,
                    temperature=options[k].temperature,
                    sample_index=sample_base + k * self.max_attempts + r,
                    max_tokens=self.max_tokens,
                )
                for k in pending
            ]
            replies = await asyncio.gather(*calls)
            still: list[int] = []
            for k, (reply, rec) in zip(pending, replies, strict=True):
                shown = demo_sets[k % len(demo_sets)] if demo_sets else ()
                checked = self._clean(module, reply, seen, shown, rec.finish_reason)
                self._keep(rec, checked, options[k].tip)
                if checked.text is None:
                    still.append(k)
                else:
                    found[k] = checked.text
                    seen.add(normalized(checked.text))
            pending = still
        return [found[k] for k in sorted(found)]
