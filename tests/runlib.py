"""A tiny deterministic optimizer and a fake task model, for tests of runs, stores and resume."""

from __future__ import annotations

import re

from prompthone.optimize import OptimizationResult, OptimizationSetup, Optimizer
from prompthone.optimize.registry import OPTIMIZERS
from prompthone.program import PromptParams

INSTRUCTIONS = [
    "Solve it.",
    "Think, then answer.",
    "Solve the problem carefully and give the number.",
    "Answer fast.",
    "Read the problem twice, carefully.",
]


class InstructionSearch(Optimizer):
    """Scores a fixed list of instructions on a minibatch, then the best two on validation."""

    name = "instruction-search"

    def __init__(self, minibatch: int = 4) -> None:
        self.minibatch = minibatch

    async def _optimize(self, setup: OptimizationSetup) -> OptimizationResult:
        await self.score(setup, setup.start, setup.valset, full=True)
        (module,) = list(setup.start)
        batch = list(setup.valset)[: self.minibatch]
        scored = []
        for i, text in enumerate(INSTRUCTIONS):
            cand = setup.start.with_module(module, PromptParams(text, setup.start[module].demos))
            trial, _ = await self.score(setup, cand, batch, full=False, proposal=i)
            scored.append((trial.score, -i, cand))
        for _, _, cand in sorted(scored, key=lambda t: (t[0], t[1]), reverse=True)[:2]:
            await self.score(setup, cand, setup.valset, full=True)
        return self._result(setup)


OPTIMIZERS["instruction-search"] = InstructionSearch


def careful_math_responder(body: dict) -> str:
    """Right only when the system prompt says 'carefully'; the answer is the question's first number."""
    system = body["messages"][0]["content"]
    user = body["messages"][-1]["content"]
    numbers = re.findall(r"\d+", user)
    guess = numbers[0] if numbers else "0"
    if "carefully" not in system:
        guess = str(int(guess) + 1)
    return f"Reasoning: done.\nAnswer: {guess}"


def write_fake_gsm8k(root, n: int = 40) -> None:
    """A GSM8K-shaped test file whose answer is each question's first number."""
    import json

    folder = root / "gsm8k"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "test.jsonl", "w") as f:
        for i in range(n):
            a = 10 + i
            f.write(
                json.dumps({"question": f"Tom has {a} apples and eats none. How many?", "answer": f"#### {a}"}) + "\n"
            )
