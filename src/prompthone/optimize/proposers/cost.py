"""Rough cost of LM calls before they are made, for optimizers' `estimate()` (`--dry-run`).

Prompts are rendered with the real renderer from the data (about 4 characters a token); fields the
data does not hold (a retrieved context) are assumed `UNKNOWN_FIELD_CHARS` long; completions are the
length of the labels, or `FREE_TEXT_TOKENS` for fields without labels (reasoning, queries), capped by
the run's max_tokens.
"""

from __future__ import annotations

import math

from prompthone.data.example import Example
from prompthone.optimize.base import OptimizationSetup
from prompthone.program import Demo, Module, render_messages
from prompthone.program.values import format_value

CHARS_PER_TOKEN = 4
UNKNOWN_FIELD_CHARS = 600
FREE_TEXT_TOKENS = 60  # an output field without a label to measure: reasoning, a search query


def approx_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _value(ex: Example | None, name: str) -> str:
    if ex is not None:
        for src in (ex.inputs, ex.labels):
            if src.get(name) is not None:
                return format_value(src[name])
    return "x" * UNKNOWN_FIELD_CHARS


def module_call_tokens(module: Module, examples: list[Example], n_demos: int, max_tokens: int) -> tuple[float, float]:
    """(prompt tokens, completion tokens) of one call of `module`, averaged over a few examples."""
    sig = module.signature
    sample = examples[:5] or [None]  # type: ignore[list-item]
    prompt = completion = 0.0
    for i, ex in enumerate(sample):
        demo_src = sample[(i + 1) % len(sample)]
        demo = Demo({n: _value(demo_src, n) for n in (*sig.input_names, *sig.output_names)})
        params = module.params.with_demos((demo,) * n_demos)  # as the module sends it: its format and position
        msgs = render_messages(sig, params, {n: _value(ex, n) for n in sig.input_names})
        prompt += sum(approx_tokens(m["content"]) + 4 for m in msgs)
        out = 0
        for n in sig.output_names:
            labelled = ex is not None and ex.labels.get(n) is not None
            out += approx_tokens(format_value(ex.labels[n])) + 3 if labelled else FREE_TEXT_TOKENS
        completion += min(max_tokens, out)
    return prompt / len(sample), completion / len(sample)


def run_tokens(setup: OptimizationSetup, n_demos: int) -> tuple[float, float, int]:
    """(prompt, completion, calls) for one run of the program: each module called once."""
    max_tokens = int(setup.evaluator.lm_options.get("max_tokens", 512))
    examples = list(setup.valset) or list(setup.trainset)
    p = c = 0.0
    modules = setup.program.named_modules()
    for module in modules.values():
        mp, mc = module_call_tokens(module, examples, n_demos, max_tokens)
        p, c = p + mp, c + mc
    return p, c, len(modules)


def cost(calls: float, prompt_tokens: float, completion_tokens: float) -> dict[str, float]:
    """One role's estimate in the shape `Optimizer.estimate` returns."""
    return {"calls": float(round(calls)), "prompt_tokens": float(round(prompt_tokens)),
            "completion_tokens": float(round(completion_tokens))}  # fmt: skip
