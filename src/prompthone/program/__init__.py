"""LM programs: signatures, modules, programs, candidates, runs, traces and portable prompts.

Two import circles are kept here, on purpose. Type-only imports (under `TYPE_CHECKING`) run between
`candidate`, `context`, `program` and `module`, since a candidate fills a program's modules and a run
context holds both: no module loads another this way at run time. And calling a `Module` or `Program`
outside a run hands over to `run.py` through an import inside the call, because `run.py` runs modules
and programs and so must import them first.
"""

from prompthone.program.candidate import Candidate, CandidateError
from prompthone.program.context import ProgramError, RunContext, current_run, using
from prompthone.program.module import ChainOfThought, Module, Predict
from prompthone.program.params import Demo, PromptParams
from prompthone.program.parse import Parsed, ParseFailure, parse_reply
from prompthone.program.portable import PortablePrompts, render_prompts
from prompthone.program.prediction import Prediction
from prompthone.program.program import Program, SingleModule, as_program
from prompthone.program.render import Placeholder, output_schema, render_messages
from prompthone.program.run import RunResult, run_program
from prompthone.program.signature import Field, Signature, SignatureError
from prompthone.program.trace import ModuleCall, call_to_demo, trace_to_all_demos, trace_to_demos

__all__ = [
    "Candidate",
    "CandidateError",
    "ChainOfThought",
    "Demo",
    "Field",
    "Module",
    "ModuleCall",
    "ParseFailure",
    "Parsed",
    "Placeholder",
    "PortablePrompts",
    "Predict",
    "Prediction",
    "Program",
    "ProgramError",
    "PromptParams",
    "RunContext",
    "RunResult",
    "Signature",
    "SignatureError",
    "SingleModule",
    "as_program",
    "call_to_demo",
    "current_run",
    "output_schema",
    "parse_reply",
    "render_messages",
    "render_prompts",
    "run_program",
    "trace_to_all_demos",
    "trace_to_demos",
    "using",
]
