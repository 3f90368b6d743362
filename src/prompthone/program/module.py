"""Modules: `Predict` and `ChainOfThought`, the units that call the LM and own prompt parameters."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import replace
from typing import Any

from prompthone.lm.types import Completion, Message
from prompthone.program.context import RunContext, current_run, default_lm, wait_on_run_loop
from prompthone.program.params import DEFAULT_FORMAT, PROMPT_FORMATS, REASONING_FORMAT, Demo, PromptParams
from prompthone.program.parse import merge_follow_up, parse_reply
from prompthone.program.prediction import Prediction
from prompthone.program.render import check_inputs, follow_up_message, output_schema, render_messages
from prompthone.program.signature import Signature, as_signature
from prompthone.program.trace import ModuleCall

#: LM options a module or a run may set; they go straight to `LM.complete`.
LM_OPTIONS = frozenset({"temperature", "max_tokens", "stop", "top_p", "seed", "sample_index", "cache"})

#: What a `ChainOfThought`'s `reasoning` field is described as: nothing, as DSPy's `ChainOfThought`
#: renders it. The field's place before the outputs is what asks for the reasoning; the earlier
#: description, "think step by step to reach the outputs", made the embedded 0.5B model list "factors"
#: past its token limit on BIG-Bench Hard and end without the answer line. Zero-shot, 100 questions
#: (benchmarks/formats.py, docs/benchmarks.md): BBH sports understanding 0.0% with it (n=80, 56
#: unparsed), 17.0% without, DSPy's rendering 13.0%; GSM8K 13.0% with it, 8.0% without, DSPy 5.0%.
#: A signature with its own `reasoning` output keeps its own description.
REASONING_DESCRIPTION = ""
#: the wording before that: stored runs, exports and benchmark rows from before 2026-12-06 carry it
LEGACY_REASONING_DESCRIPTION = "think step by step to reach the outputs"


def check_lm_options(options: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(options) - LM_OPTIONS)
    if unknown:
        raise TypeError(f"{where}: unknown LM option(s) {unknown}; expected some of {sorted(LM_OPTIONS)}")
    return dict(options)


class Module:
    """Base of everything that calls the LM once per call.

    It owns its default `params` (instruction and demos), as a torch module owns its weights; a run
    under a `Candidate` reads the candidate's params instead and never touches these.
    `format` is the prompt layout, one of `PROMPT_FORMATS`; it is part of the params, so a candidate (and an
    optimizer) may choose another one for this module. None leaves it to the model: the module starts in
    the class's `default_format`, and a run on a model with a start format of its own (the embedded
    catalog's, or `LM(start_format=...)`) starts it in that one instead (`adopt_start_format`), when the
    class `follows_model_format`. Naming a format, setting `.format` or loading a candidate fixes it.
    `structured` asks for JSON replies constrained by a schema (None: follow the run's setting).
    LM options given here (`max_tokens=...`) are defaults that a run's own options override.
    `follow_up`: when a reply lacks a required output (a model that reasoned until max_tokens, or
    ended without the answer line), ask once more in the same chat for the missing outputs only (one
    more LM call, counted and cached like any other; `ModuleCall.follow_up` keeps its reply). None
    takes the class's `default_follow_up`: on for `ChainOfThought`, off for `Predict`.
    """

    #: output fields that may be missing from a reply without it being a parse failure
    optional_outputs: tuple[str, ...] = ()
    #: the format this kind of module starts in when given none, on a model that names no start format
    default_format: str = DEFAULT_FORMAT
    #: whether a module of this kind given no format starts in its model's start format, when the model has one
    follows_model_format: bool = True
    #: whether a reply lacking a required output gets one follow-up, when the module is given no `follow_up`
    default_follow_up: bool = False

    def __init__(
        self,
        signature: Signature | str,
        *,
        instruction: str | None = None,
        demos: Iterable[Mapping[str, Any]] = (),
        structured: bool | None = None,
        format: str | None = None,
        follow_up: bool | None = None,
        **lm_options: Any,
    ) -> None:
        self.signature = self._extend(as_signature(signature))
        if format is not None and format not in PROMPT_FORMATS:
            raise ValueError(f"{type(self).__name__}: format must be one of {list(PROMPT_FORMATS)}, got {format!r}")
        self.params = PromptParams(
            self.signature.instruction if instruction is None else instruction,
            tuple(d if isinstance(d, Demo) else Demo(d) for d in demos),
            format=self.default_format if format is None else format,
        )
        #: False once a format is named (here, by `.format = ...` or by `Program.load_candidate`)
        self.format_from_model = format is None and self.follows_model_format
        self.structured = structured
        self.follow_up = self.default_follow_up if follow_up is None else bool(follow_up)
        self.lm_options = check_lm_options(lm_options, type(self).__name__)

    def _extend(self, signature: Signature) -> Signature:
        return signature

    @property
    def required_outputs(self) -> tuple[str, ...]:
        """The outputs a reply must give (every output but the optional ones, such as reasoning)."""
        return tuple(n for n in self.signature.output_names if n not in self.optional_outputs)

    @property
    def format(self) -> str:
        """The prompt format of this module's own params (a candidate may carry another)."""
        return self.params.format

    @format.setter
    def format(self, value: str) -> None:
        self.params = self.params.with_format(value)
        self.format_from_model = False

    def adopt_start_format(self, model_format: str | None) -> None:
        """Start in `model_format` (a model's start format; None: the model has none, so the class default)
        if this module left its format to the model; a module with a format of its own keeps it."""
        if self.format_from_model:
            fmt = model_format or self.default_format
            if fmt not in PROMPT_FORMATS:
                raise ValueError(
                    f"a model's start format (LM(start_format=...), --start-format, start_format:) must be one "
                    f"of {list(PROMPT_FORMATS)}, got {fmt!r}"
                )
            if fmt != self.params.format:
                self.params = self.params.with_format(fmt)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.signature.shorthand()!r})"

    def __call__(self, **inputs: Any) -> Prediction:
        """Call from a sync `forward` (or interactively, inside `using(lm)`)."""
        ctx = current_run()
        if ctx is None:
            from prompthone.program.run import run_module_interactively

            return run_module_interactively(self, inputs, default_lm(repr(self)))
        what = f"module {ctx.name_of(self)!r}"  # before the coroutine exists, so an error leaves none behind
        return wait_on_run_loop(ctx, self._call_in(ctx, inputs), what)

    async def acall(self, **inputs: Any) -> Prediction:
        """Call from an async `forward`."""
        ctx = current_run()
        if ctx is None:
            from prompthone.program.run import arun_module_interactively

            return await arun_module_interactively(self, inputs, default_lm(repr(self)))
        return await self._call_in(ctx, inputs)

    async def _call_in(self, ctx: RunContext, inputs: dict[str, Any]) -> Prediction:
        name = ctx.name_of(self)
        if ctx.cancelled:
            ctx.check_not_cancelled(f"module {name!r}")
        names = self.signature.input_names
        if len(inputs) != len(names) or not all(n in inputs for n in names):  # else check_inputs finds nothing
            check_inputs(self.signature, inputs, where=f"module {name!r}")
        params = ctx.candidate[name] if ctx.candidate is not None else self.params
        structured = self.structured if self.structured is not None else bool(ctx.structured)
        messages = render_messages(self.signature, params, inputs, structured=structured)
        options = {**self.lm_options, **ctx.lm_options}
        lm = ctx.lm_for.get(name, ctx.lm)
        seq = ctx.next_seq()
        schema = output_schema(self.signature) if structured else None
        failed = functools.partial(_error_call, name, inputs, messages, seq, structured, lm.model)
        try:
            completion = await lm.complete(messages, response_format=schema, **options)
        except Exception as exc:
            ctx.trace.append(failed(exc, raw=""))
            raise
        parsed = parse_reply(
            self.signature,
            completion.text,
            structured=structured,
            optional=self.optional_outputs,
            truncated=completion.finish_reason == "length",
            format=params.format,
        )
        follow_up: Completion | None = None
        if parsed.failure is not None and parsed.failure.missing and self.follow_up:
            missing = parsed.failure.missing
            ask = follow_up_message(self.signature, missing, params.format, structured=structured)
            chat = [*messages, {"role": "assistant", "content": completion.text}, {"role": "user", "content": ask}]
            try:
                follow_up = await lm.complete(
                    chat,
                    response_format=output_schema(self.signature.keep_outputs(missing)) if structured else None,
                    **options,
                )
            except Exception as exc:
                ctx.trace.append(failed(exc, raw=completion.text))
                raise
            # read with every output's label known (a reply that restates its reasoning is not taken
            # whole as the answer), only the missing ones required
            second = parse_reply(
                self.signature,
                follow_up.text,
                structured=structured,
                optional=[n for n in self.signature.output_names if n not in missing],
                truncated=follow_up.finish_reason == "length",
                format=params.format,
            )
            parsed = merge_follow_up(parsed, second, follow_up.text)
        failure = None if parsed.failure is None else replace(parsed.failure, module=name)
        outputs = {n: parsed.values.get(n) for n in self.signature.output_names}
        ctx.trace.append(
            ModuleCall(
                module=name,
                inputs=dict(inputs),
                outputs=outputs,
                raw=completion.text,
                messages=messages,
                status="ok" if failure is None else "parse_failure",
                seq=seq,
                failure=failure,
                parsed_how=dict(parsed.how),
                structured=structured,
                model=completion.model,
                prompt_tokens=completion.prompt_tokens + (follow_up.prompt_tokens if follow_up else 0),
                completion_tokens=completion.completion_tokens + (follow_up.completion_tokens if follow_up else 0),
                latency_s=completion.latency_s + (follow_up.latency_s if follow_up else 0.0),
                cached=completion.cached and (follow_up is None or follow_up.cached),
                finish_reason=completion.finish_reason,
                follow_up=None if follow_up is None else follow_up.text,
            )
        )
        return Prediction(outputs, failures=() if failure is None else (failure,))


def _error_call(
    name: str,
    inputs: Mapping[str, Any],
    messages: list[Message],
    seq: int,
    structured: bool,
    model: str,
    exc: BaseException,
    *,
    raw: str,
) -> ModuleCall:
    """The trace entry of a call whose LM request raised (`raw`: a first reply, when the follow-up raised)."""
    return ModuleCall(
        module=name,
        inputs=dict(inputs),
        outputs={},
        raw=raw,
        messages=messages,
        status="error",
        seq=seq,
        error=f"{type(exc).__name__}: {exc}",
        structured=structured,
        model=model,
    )


class Predict(Module):
    """Ask for the signature's outputs directly."""


class ChainOfThought(Module):
    """Ask for a `reasoning` field before the outputs, so the model works the problem out first.

    A reply without reasoning is still accepted (reasoning becomes ""): small models often skip it,
    and the answer is what the metric judges.

    A reply whose reasoning ran on without the answer line gets one follow-up asking for the answer
    (`default_follow_up`; `follow_up=False` turns it off). Why on here: reasoning is where a reply
    ends without its answer (the 0.5B model closes GSM8K's with "Therefore, ... \\boxed{70}." instead
    of `Answer: 70`), and DSPy's `ChainOfThought` gets a second call on such a reply too (its
    ChatAdapter retries through the JSONAdapter). Zero-shot on the side by side's test questions
    (docs/benchmarks.md): GSM8K 0.110 -> 0.145 (n=200; 44 follow-ups, 7 of them right), BBH sports
    understanding 0.200 -> 0.200 (n=125; 22 follow-ups, which repeat a sentence, not `yes`/`no`).
    """

    optional_outputs = ("reasoning",)
    default_format = REASONING_FORMAT
    #: `labels` measured best for reasoning on both embedded models (GSM8K: JSON collapses the reasoning)
    follows_model_format = False
    default_follow_up = True

    def _extend(self, signature: Signature) -> Signature:
        return signature.prepend_output("reasoning", REASONING_DESCRIPTION)
