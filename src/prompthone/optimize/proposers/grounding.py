"""What an instruction proposer is shown about the task: a summary of the data and a description of
the program and of each module's role.

A proposer that sees only a module's field names writes generic instructions; one that knows what
the data looks like and what the module is for in the pipeline can write specific ones. Both are
produced by the proposer LM itself (the data summary by reading batches of examples and writing
observations, then summarizing them; the descriptions from the program's source code), once per
run, at temperature 0 so that they are replayed from the response cache on a re-run.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prompthone.data.example import Example
from prompthone.optimize.base import OptimizationSetup
from prompthone.optimize.proposers.calls import ProposalLog, keep, propose
from prompthone.optimize.proposers.contract import talks_about_program
from prompthone.optimize.proposers.overlap import copies_examples, loops
from prompthone.program import Program
from prompthone.program.values import format_value, label_of
from prompthone.templates import render_template

#: characters of one field value shown to a proposer; longer values (passages) are cut
VALUE_CHARS = 240
#: characters of program source shown to a proposer
SOURCE_CHARS = 3500


@dataclass(frozen=True)
class ProgramDescription:
    """What the program does, and each module's role in it, as the proposer LM understood them."""

    program: str
    modules: Mapping[str, str] = field(default_factory=dict)


def shorten(text: str, limit: int = VALUE_CHARS) -> str:
    """Collapse whitespace and cut at `limit` characters with an ellipsis."""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= limit else text[: limit - 3].rstrip() + "..."


def output_field_names(program: Program) -> set[str]:
    return {n for m in program.named_modules().values() for n in m.signature.output_names}


def format_example(ex: Example, shown_labels: set[str] | None = None, limit: int = VALUE_CHARS) -> str:
    """An example as `Label: value` lines (inputs, then the labels a module produces)."""
    return "\n".join(f"{label_of(k)}: {shorten(format_value(v), limit)}" for k, v in _shown_fields(ex, shown_labels))


def _shown_fields(ex: Example, shown_labels: set[str] | None) -> list[tuple[str, object]]:
    """The (name, value) pairs of `ex` a proposer is shown: every input, then the labels in `shown_labels`."""
    labels = [(k, v) for k, v in ex.labels.items() if shown_labels is None or k in shown_labels]
    return [*ex.inputs.items(), *labels]


def _clean_paragraph(text: str, limit: int = 700) -> str:
    text = text.strip().strip("`").strip()
    text = re.sub(r"^(?:\*\*)?(?:summary|description|observations?)\s*:\s*(?:\*\*)?\s*", "", text, flags=re.I)
    return shorten(text, limit)


def _bullets(text: str, limit: int = 8) -> list[str]:
    """Observation lines from a reply; lines that are not bullets count only if nothing else does."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    bullets = [re.sub(r"^(?:[-*•]|\d+[.)])\s*", "", ln) for ln in lines if re.match(r"^(?:[-*•]|\d+[.)])\s", ln)]
    chosen = bullets or lines
    return [shorten(b, 200) for b in chosen if len(b.split()) >= 3][:limit]


async def summarize_dataset(
    setup: OptimizationSetup,
    examples: Sequence[Example] | None = None,
    *,
    batch_size: int = 10,
    max_batches: int = 3,
    max_tokens: int = 200,
    log: ProposalLog | None = None,
) -> str:
    """The proposer LM reads batches of examples, writes observations, then summarizes them.

    Each batch's prompt carries the observations so far, so later batches add what is new. Costs
    `min(max_batches, ceil(n / batch_size)) + 1` proposer calls. An observation or a summary that copies
    an example (a run of its words, a name it holds) or loops is dropped: it would ground every proposal
    in one example, or in nothing. Returns "" when nothing usable came back (the proposer is then simply
    not shown a summary).
    """
    examples = list(setup.trainset if examples is None else examples)
    setup.rng("proposers:dataset-summary").shuffle(examples)
    shown = output_field_names(setup.program) & {k for ex in examples for k in ex.labels} or None
    allowed = _task_words(setup)
    observations: list[str] = []
    read: list[str] = []  # the values of every example shown so far
    for b in range(min(max_batches, -(-len(examples) // batch_size))):
        batch = examples[b * batch_size : (b + 1) * batch_size]
        text = "\n\n".join(f"Example {i}\n{format_example(ex, shown)}" for i, ex in enumerate(batch, 1))
        read.extend(_values(batch, shown))
        prior = ""
        if observations:
            prior = "\nObservations so far (add only new ones):\n" + "\n".join(f"- {o}" for o in observations) + "\n"
        prompt = render_template("proposer_dataset_observe", examples=text, prior=prior)
        reply, rec = await propose(
            setup, prompt, purpose="dataset_observe", temperature=0.0, sample_index=b, max_tokens=max_tokens
        )
        new = [o for o in _bullets(reply) if o not in observations]
        usable = [o for o in new if not _unusable(o, read, allowed)]
        note = "" if usable else ("no observations" if not new else "every observation copied an example or looped")
        if usable and len(usable) < len(new):
            note = f"{len(new) - len(usable)} of {len(new)} observations dropped: they copied an example or looped"
        keep(setup, rec, "\n".join(usable) if usable else None, log=log, note=note)
        observations.extend(usable)
    if not observations:
        return ""
    prompt = render_template("proposer_dataset_summary", observations="\n".join(f"- {o}" for o in observations))
    reply, rec = await propose(setup, prompt, purpose="dataset_summary", temperature=0.0, max_tokens=max_tokens)
    summary = _clean_paragraph(reply)
    why = "too short" if len(summary.split()) < 5 else _unusable(summary, read, allowed)
    if why:  # fall back to the observations themselves, which passed the same check
        summary = shorten(" ".join(observations[:5]), 700)
        keep(setup, rec, summary, log=log, note=f"summary {why}; observations used")
    else:
        keep(setup, rec, summary, log=log)
    return summary


def _values(batch: Sequence[Example], shown: set[str] | None) -> list[str]:
    """The values of the fields of `batch` the proposer was shown, whole (not cut to `VALUE_CHARS`)."""
    return [format_value(v) for ex in batch for _, v in _shown_fields(ex, shown)]


def _task_words(setup: OptimizationSetup) -> list[str]:
    """What a description of the data may name without copying an example: the fields' names and
    descriptions and the modules' start instructions (the allowed labels, the task's own terms)."""
    words: list[str] = []
    for name, module in setup.program.named_modules().items():
        sig = module.signature
        words += [f"{f.name} {label_of(f.name)} {f.description}" for f in (*sig.inputs, *sig.outputs)]
        if setup.start is not None and name in setup.start:
            words.append(setup.start[name].instruction)
    return words


def _unusable(text: str, read: Sequence[str], allowed: Sequence[str]) -> str:
    """Why an observation or a summary is not kept ("" when it is)."""
    if loops(text):
        return "loops"
    return copies_examples(text, read, allowed=allowed)


def program_source(program: Program) -> str:
    """The program class's source (cut to `SOURCE_CHARS`), or a listing of its modules if unavailable."""
    try:
        src = inspect.getsource(type(program))
    except (OSError, TypeError):
        src = f"class {type(program).__name__}(Program):  # source not available\n" + "\n".join(
            f"    {name} = {module!r}" for name, module in program.named_modules().items()
        )
    return src if len(src) <= SOURCE_CHARS else src[:SOURCE_CHARS] + "\n# ... (cut)"


def module_listing(program: Program) -> str:
    return "\n".join(
        f'- "{name}": {type(m).__name__}, {m.signature.shorthand()}' for name, m in program.named_modules().items()
    )


async def describe_program(
    setup: OptimizationSetup, *, max_tokens: int = 200, log: ProposalLog | None = None
) -> ProgramDescription:
    """Describe the program from its source code, then each module's role in it.

    Costs 1 + (number of modules) proposer calls. A reply too short to use is replaced by a plain
    description built from the signatures, so a weak proposer never leaves the grounding empty.
    """
    program = setup.program
    listing = module_listing(program)
    prompt = render_template("proposer_program", source=program_source(program), modules=listing)
    reply, rec = await propose(setup, prompt, purpose="program", temperature=0.0, max_tokens=max_tokens)
    desc = _clean_paragraph(reply)
    if len(desc.split()) < 5 or "class " in desc or talks_about_program(desc):
        # "1. It initializes a `Predict` object with a given signature ...": the 0.5B proposer retold the
        # code, and its instruction proposals then did too (trec-label, issue 15)
        fallback = f"A program with the language-model steps: {'; '.join(listing.splitlines())}."
        keep(setup, rec, fallback, log=log, note="reply unusable; built from the signatures")
        desc = fallback
    else:
        keep(setup, rec, desc, log=log)
    roles: dict[str, str] = {}
    for name, module in program.named_modules().items():
        prompt = render_template("proposer_module_role", program=desc, modules=listing, module=name)
        reply, rec = await propose(
            setup, prompt, purpose="module_role", module=name, temperature=0.0, max_tokens=max_tokens
        )
        role = _clean_paragraph(reply, 400)
        if len(role.split()) < 4 or "def " in role:
            sig = module.signature
            role = f"Takes {', '.join(sig.input_names) or 'nothing'} and produces {', '.join(sig.output_names)}."
            keep(setup, rec, role, log=log, note="reply unusable; built from the signature")
        else:
            keep(setup, rec, role, log=log)
        roles[name] = role
    return ProgramDescription(desc, roles)
