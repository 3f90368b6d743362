"""`Program`: a plain Python class whose modules are found by walking its attributes, as in torch."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from prompthone.lm.client import run_sync
from prompthone.program.context import (
    ProgramError,
    current_run,
    default_lm,
    in_worker_thread,
    on_event_loop,
    wait_on_run_loop,
)
from prompthone.program.module import Module
from prompthone.program.params import PromptParams
from prompthone.program.prediction import Prediction

if TYPE_CHECKING:
    from prompthone.lm.client import LM
    from prompthone.program.candidate import Candidate
    from prompthone.program.run import RunResult


class Program:
    """Subclass it, assign modules in `__init__`, and write `forward(self, **inputs)` (sync or async).

    >>> class QA(Program):
    ...     def __init__(self):
    ...         self.answer = ChainOfThought("question -> answer")
    ...     def forward(self, question):
    ...         return self.answer(question=question)

    Modules may sit in nested programs, lists, tuples and dicts; their names are the attribute paths
    (`"answer"`, `"stages.0"`, `"retriever.query"`). `super().__init__()` is not needed.
    """

    def forward(self, **inputs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define forward(self, **inputs)")

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(type(self).forward)

    def named_modules(self) -> dict[str, Module]:
        """Every module by dotted attribute path, in assignment order; a module reachable twice keeps
        its first name."""
        out: dict[str, Module] = {}
        _walk(self, "", out, set())
        return out

    def named_prompts(self) -> dict[str, PromptParams]:
        """Each module's default prompt params, by name: what `Candidate.default(program)` holds."""
        return {name: m.params for name, m in self.named_modules().items()}

    def load_candidate(self, candidate: Candidate) -> None:
        """Make a candidate the modules' defaults (e.g. to keep the best one found).

        This and `adopt_start_formats` are the only methods that change modules; runs never do, they
        read the candidate from their run context.
        """
        modules = self.named_modules()
        candidate.check(modules)
        for name, module in modules.items():
            module.params = candidate[name]
            module.format_from_model = False

    def adopt_start_formats(self, model_format: str | None, per_module: Mapping[str, str | None] | None = None) -> None:
        """Start every module that left its format to the model in that model's start format
        (`Module.adopt_start_format`); `per_module` gives some modules (by name) another model's.

        Called where a program meets its model, before its start candidate is hashed: a run (for the
        task model), an evaluation, an interactive call. A program called on another model later follows
        that one; a module with a format of its own never changes.
        """
        for name, module in self.named_modules().items():
            module.adopt_start_format((per_module or {}).get(name, model_format))

    def __call__(self, **inputs: Any) -> Any:
        """A nested program called from a sync forward, or an interactive call inside `using(lm)`."""
        ctx = current_run()
        if ctx is None:
            lm = default_lm(f"{type(self).__name__}(...)")
            self.adopt_start_formats(lm.start_format)  # called outside a run: it starts as a run on `lm` would
            return self.run_sync(inputs, lm=lm).prediction()
        if self.is_async:
            return wait_on_run_loop(ctx, self.forward(**inputs), f"{type(self).__name__}(...)")
        if on_event_loop():
            raise ProgramError(
                f"{type(self).__name__} has a sync forward and was called inside async code; "
                "use `await sub_program.acall(...)` there"
            )
        return self.forward(**inputs)

    async def acall(self, **inputs: Any) -> Any:
        """A nested program called from an async forward, or an interactive call inside `using(lm)`."""
        ctx = current_run()
        if ctx is None:
            lm = default_lm(f"{type(self).__name__}.acall(...)")
            self.adopt_start_formats(lm.start_format)
            return (await self.run(inputs, lm=lm)).prediction()
        if self.is_async:
            return await self.forward(**inputs)
        return await in_worker_thread(self.forward, **inputs)

    async def run(
        self, inputs: Mapping[str, Any], *, lm: LM, candidate: Candidate | None = None, **options: Any
    ) -> RunResult:
        """`run_program(self, ...)`."""
        from prompthone.program.run import run_program

        return await run_program(self, inputs, lm=lm, candidate=candidate, **options)

    def run_sync(
        self, inputs: Mapping[str, Any], *, lm: LM, candidate: Candidate | None = None, **options: Any
    ) -> RunResult:
        """`run_program` for code that is not async (scripts, notebooks)."""
        return run_sync(self.run(inputs, lm=lm, candidate=candidate, **options))


class SingleModule(Program):
    """A program made of one module, so a bare `Predict` can be run, optimized and exported."""

    def __init__(self, module: Module, name: str = "predict") -> None:
        if not isinstance(module, Module):
            raise TypeError(f"SingleModule wraps a Module, got {type(module).__name__}")
        if not name.isidentifier():
            raise ValueError(f"module name must be an identifier, got {name!r}")
        self._module_name = name
        setattr(self, name, module)

    async def forward(self, **inputs: Any) -> Prediction:
        return await getattr(self, self._module_name).acall(**inputs)


def as_program(obj: Program | Module) -> Program:
    if isinstance(obj, Program):
        return obj
    if isinstance(obj, Module):
        return SingleModule(obj)
    raise TypeError(f"expected a Program or a Module (Predict, ChainOfThought), got {type(obj).__name__}")


def _walk(obj: Any, prefix: str, out: dict[str, Module], seen: set[int]) -> None:
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if isinstance(obj, Program):
        items: Any = vars(obj).items()
    elif isinstance(obj, list | tuple):
        items = enumerate(obj)
    elif isinstance(obj, dict):
        items = ((k, v) for k, v in obj.items() if isinstance(k, str | int))
    else:
        return
    for key, value in items:
        name = f"{prefix}.{key}" if prefix else str(key)
        if isinstance(value, Module):
            if id(value) not in seen:
                seen.add(id(value))
                out[name] = value
        elif isinstance(value, Program | list | tuple | dict):
            _walk(value, name, out, seen)
