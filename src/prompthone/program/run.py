"""Running a program once, under a candidate, without touching shared state."""

from __future__ import annotations

import asyncio
import inspect
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from prompthone.lm.client import LM, run_sync
from prompthone.program.candidate import Candidate
from prompthone.program.context import _RUN, RunContext, in_worker_thread
from prompthone.program.module import Module, check_lm_options
from prompthone.program.parse import ParseFailure
from prompthone.program.prediction import Prediction
from prompthone.program.program import Program, as_program
from prompthone.program.trace import ModuleCall


@dataclass
class RunResult:
    """What one run produced: final outputs, the trace of module calls, and how it went.

    A parse failure is not an error: the run goes on, the field holds None, and `parse_failures`
    counts it. `error` is an exception raised by the program or the LM (an `LMError` is never a wrong
    answer and should not be scored as one).
    """

    outputs: dict[str, Any]
    trace: list[ModuleCall]
    error: Exception | None = None
    candidate: Candidate | None = None
    latency_s: float = 0.0
    failures: list[ParseFailure] = field(default_factory=list)

    @property
    def parse_failures(self) -> int:
        return len(self.failures)

    @property
    def ok(self) -> bool:
        return self.error is None and not self.failures

    @property
    def prompt_tokens(self) -> int:
        return sum(c.prompt_tokens for c in self.trace)

    @property
    def completion_tokens(self) -> int:
        return sum(c.completion_tokens for c in self.trace)

    def prediction(self) -> Prediction:
        """The outputs as a `Prediction`; raises the run's error if it had one."""
        if self.error is not None:
            raise self.error
        return Prediction(self.outputs, failures=tuple(self.failures))


@dataclass(frozen=True)
class _ForwardShape:
    """What `forward` accepts by keyword, so most runs check their inputs without `Signature.bind`."""

    names: frozenset[str]  # parameters that can be passed by keyword
    required: frozenset[str]  # parameters without a default
    var_keyword: bool  # forward takes **kwargs
    simple: bool  # no positional-only parameters: the sets above decide alone whether bind() succeeds


#: forward function -> its shape; a bound method's signature does not depend on the instance
_FORWARD_SHAPES: weakref.WeakKeyDictionary[Any, _ForwardShape] = weakref.WeakKeyDictionary()


def _forward_shape(forward: Any) -> _ForwardShape:
    func = getattr(forward, "__func__", None)
    shape = _FORWARD_SHAPES.get(func) if func is not None else None
    if shape is None:
        params = inspect.signature(forward).parameters.values()
        kw_kinds = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
        shape = _ForwardShape(
            names=frozenset(p.name for p in params if p.kind in kw_kinds),
            required=frozenset(p.name for p in params if p.kind in kw_kinds and p.default is p.empty),
            var_keyword=any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params),
            simple=not any(p.kind is inspect.Parameter.POSITIONAL_ONLY for p in params),
        )
        if func is not None:
            _FORWARD_SHAPES[func] = shape
    return shape


def _check_forward_inputs(program: Program, inputs: Mapping[str, Any]) -> None:
    shape = _forward_shape(program.forward)
    if shape.simple and shape.required.issubset(inputs) and (shape.var_keyword or shape.names.issuperset(inputs)):
        return  # what `inspect.signature(forward).bind(**inputs)` would accept, checked without building it
    try:
        inspect.signature(program.forward).bind(**inputs)
    except TypeError as exc:
        params = list(inspect.signature(program.forward).parameters)
        raise TypeError(
            f"{type(program).__name__}.forward cannot take inputs {sorted(inputs)}: {exc}; it takes {params}"
        ) from None


def check_program_inputs(program: Program | Module, inputs: Mapping[str, Any]) -> None:
    """Raise `TypeError` (naming the inputs and the parameters) unless `program.forward` takes `inputs`:
    the check `run_program` makes on every call, for callers that want it before the first one."""
    _check_forward_inputs(as_program(program), inputs)


def _as_outputs(out: Any, program: Program) -> dict[str, Any]:
    if isinstance(out, Mapping):
        return dict(out)
    if inspect.iscoroutine(out):
        out.close()
        raise TypeError(
            f"{type(program).__name__}.forward returned a coroutine: declare it `async def forward(...)` "
            "so that it is awaited"
        )
    raise TypeError(
        f"{type(program).__name__}.forward must return a dict or a Prediction of outputs, got {type(out).__name__}"
    )


async def run_program(
    program: Program | Module,
    inputs: Mapping[str, Any],
    *,
    lm: LM,
    candidate: Candidate | None = None,
    lm_for: Mapping[str, LM] | None = None,
    structured: bool | None = None,
    **lm_options: Any,
) -> RunResult:
    """Run `program` on one example under `candidate` (None: the modules' own params).

    Safe to call many times concurrently on one program object: the LM, candidate and trace live in
    this run's context, never on the program. `lm_for` gives some modules (by name) another LM;
    `structured=True` asks every module that has not chosen otherwise for schema-constrained JSON;
    other keyword options (temperature, max_tokens, sample_index, ...) go to every LM call and override
    the modules' own defaults.

    Mistakes in how the run is set up (unknown option, a candidate for another program, inputs that
    `forward` cannot take) raise at once; anything that goes wrong inside `forward` is returned in
    `RunResult.error`.
    """
    program = as_program(program)
    if not isinstance(lm, LM):
        raise TypeError(f"lm must be an LM, got {type(lm).__name__}")
    if not isinstance(inputs, Mapping):
        raise TypeError(f"inputs must be a mapping of field name -> value, got {type(inputs).__name__}")
    options = check_lm_options(lm_options, "run_program")
    modules = program.named_modules()
    if candidate is not None:
        if not isinstance(candidate, Candidate):
            raise TypeError(f"candidate must be a Candidate or None, got {type(candidate).__name__}")
        candidate.check(modules)
    lm_for = dict(lm_for or {})
    unknown = [n for n in lm_for if n not in modules]
    if unknown:
        raise ValueError(f"lm_for names unknown module(s) {unknown}; the modules are {list(modules)}")
    _check_forward_inputs(program, inputs)
    ctx = RunContext(
        lm=lm,
        candidate=candidate,
        names={id(m): n for n, m in modules.items()},
        modules=modules,
        loop=asyncio.get_running_loop(),
        program_name=type(program).__name__,
        lm_options=options,
        lm_for=lm_for,
        structured=structured,
    )
    t0 = time.perf_counter()
    error: Exception | None = None
    outputs: dict[str, Any] = {}
    token = _RUN.set(ctx)  # `with enter_run(ctx):`, without a generator-based context manager per run
    try:
        if program.is_async:
            out = await program.forward(**inputs)
        else:
            out = await in_worker_thread(program.forward, **inputs)
        outputs = _as_outputs(out, program)
    except asyncio.CancelledError:
        ctx.cancel()
        raise
    except Exception as exc:
        error = exc
    finally:
        _RUN.reset(token)
    trace = sorted(ctx.trace, key=lambda c: c.seq)
    return RunResult(
        outputs=outputs,
        trace=trace,
        error=error,
        candidate=candidate,
        latency_s=time.perf_counter() - t0,
        failures=[c.failure for c in trace if c.failure is not None],
    )


async def arun_module_interactively(module: Module, inputs: Mapping[str, Any], lm: LM) -> Prediction:
    module.adopt_start_format(lm.start_format)  # called outside a run: it starts as a run on `lm` would
    result = await run_program(module, inputs, lm=lm)
    return result.prediction()


def run_module_interactively(module: Module, inputs: Mapping[str, Any], lm: LM) -> Prediction:
    module.adopt_start_format(lm.start_format)
    return run_sync(run_program(module, inputs, lm=lm)).prediction()
