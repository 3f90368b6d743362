"""Proposers shared by optimizers: demos (bootstrapped, labelled, candidate sets), grounding (data
summary, program description) and grounded instruction proposals.

They depend only on `OptimizationSetup` (program, data, evaluator, LMs by role, seed, budget), never
on a particular optimizer, so MIPRO, the bootstrap baselines and any other method can reuse them.
Every LM call they make goes through the setup's LMs and is recorded (`ProposalRecord`).
"""

from prompthone.optimize.proposers.calls import ProposalLog, ProposalRecord, keep, propose
from prompthone.optimize.proposers.demos import (
    BootstrapResult,
    DemoSet,
    bootstrap_demos,
    demo_set_candidates,
    labeled_demos,
    with_labeled_fill,
)
from prompthone.optimize.proposers.grounding import (
    ProgramDescription,
    describe_program,
    format_example,
    program_source,
    summarize_dataset,
)
from prompthone.optimize.proposers.instructions import (
    TIPS,
    Grounding,
    InstructionProposer,
    ProposalOptions,
    clean_instruction,
    format_history,
    normalized,
)

__all__ = [
    "TIPS",
    "BootstrapResult",
    "DemoSet",
    "Grounding",
    "InstructionProposer",
    "ProgramDescription",
    "ProposalLog",
    "ProposalOptions",
    "ProposalRecord",
    "bootstrap_demos",
    "clean_instruction",
    "demo_set_candidates",
    "describe_program",
    "format_example",
    "format_history",
    "keep",
    "labeled_demos",
    "normalized",
    "program_source",
    "propose",
    "summarize_dataset",
    "with_labeled_fill",
]
