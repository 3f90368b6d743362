"""Helpers (no tests here): real runs for the report, export and show tests, made in about a second.

A run goes through the real runner, store, evaluator and LM client against the fake OpenAI server. The
optimizer asks the proposer model for each instruction (so two roles spend), scores them on a minibatch,
the best three on the full validation set, then adds demos to the winner. The fake model is right more
often the more of "carefully", "step" and "check" its system prompt holds, and when it is shown demos, so
scores climb over the trials. The winning instruction carries a `<script>` element: everything that
shows it must show it as text.
"""

from __future__ import annotations

import re
from pathlib import Path

from prompthone.lm import run_sync
from prompthone.optimize import Budget, OptimizationResult, Optimizer, Run
from prompthone.optimize.registry import OPTIMIZERS
from prompthone.program import Demo
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec
from runlib import write_fake_gsm8k

INJECTION = '<script>document.title="pwned"</script>'
INSTRUCTIONS = [
    "Answer quickly.",
    "Solve the math word problem step by step.",
    "Give only the number.",
    "Read the problem carefully, then solve it step by step.",
    f"Solve it carefully and check each step. {INJECTION}",
    "Think about the units, then answer.",
    "Check your arithmetic.",
]
PROPOSE = "Propose instruction number "


class ReportSearch(Optimizer):
    """Proposer-written instructions on a minibatch, the best three on validation, then demos."""

    name = "report-search"

    def __init__(self, minibatch: int = 6, top: int = 3, only: list[int] | None = None) -> None:
        self.minibatch = minibatch
        self.top = top
        self.only = list(range(len(INSTRUCTIONS))) if only is None else list(only)

    async def _optimize(self, run: Run) -> OptimizationResult:
        setup = run.setup
        await run.score(setup.start, setup.valset, full=True, phase="start")
        (module,) = list(setup.start)
        batch = list(setup.valset)[: self.minibatch]
        scored = []
        for i in self.only:
            setup.budget.check()
            ask = [
                {"role": "system", "content": "You write instructions."},
                {"role": "user", "content": f"{PROPOSE}{i}"},
            ]
            reply = await setup.proposer_lm.complete(ask, max_tokens=64)
            cand = setup.start.with_module(module, setup.start[module].with_instruction(reply.text))
            trial, _ = await run.score(cand, batch, full=False, proposal=i)
            scored.append((trial.score, -i, cand))
        full = []
        for _score, neg_i, cand in sorted(scored, key=lambda t: t[:2], reverse=True)[: self.top]:
            trial, _ = await run.score(cand, setup.valset, full=True, phase="validate", proposal=-neg_i)
            full.append((trial.score, trial.index, cand))
        best = max(full, key=lambda t: (t[0], -t[1]))[2]
        demos = [
            Demo(question=ex.inputs["question"], reasoning="Read it again.", answer=str(ex.labels["answer"]))
            for ex in list(setup.trainset)[:2]
        ]
        await run.score(best.with_module(module, best[module].with_demos(demos)), setup.valset, full=True)
        return run.result()


OPTIMIZERS["report-search"] = ReportSearch


def graded_responder(body: dict) -> str:
    """The fake model: proposer requests get an instruction; task requests are right with a probability
    that grows with the prompt's quality, decided by a hash so every run answers the same."""
    messages = body["messages"]
    user = messages[-1]["content"]
    if user.startswith(PROPOSE):
        return INSTRUCTIONS[int(user.removeprefix(PROPOSE))]
    system = messages[0]["content"]
    skill = sum(word in system for word in ("carefully", "step", "check")) + (len(messages) > 2)
    p = (0.3, 0.5, 0.7, 0.85, 1.0)[min(skill, 4)]
    numbers = re.findall(r"\d+", user)
    a = int(numbers[0]) if numbers else 0
    right = (a * 37 + 11 * len(system)) % 100 < p * 100
    return f"Reasoning: {a} apples.\nAnswer: {a if right else a + 1}"


def make_run(
    url: str,
    tmp: Path,
    *,
    out: str = "runs",
    n_val: int = 20,
    n_test: int = 30,
    seed: int = 0,
    prices: dict[str, tuple[float, float]] | None = None,
    **settings: object,
) -> RunOutcome:
    """One finished run under `tmp/out` against the fake server at `url` (serving `graded_responder`)."""
    data = tmp / "data"
    if not (data / "gsm8k" / "test.jsonl").exists():
        write_fake_gsm8k(data, n=80)
    spec = RunSpec(
        task="gsm8k",
        optimizer="report-search",
        settings=dict(settings),
        model=f"openai/fake@{url}",
        n_train=4,
        n_val=n_val,
        n_test=n_test,
        seed=seed,
        data_root=str(data),
        concurrency=4,
        max_tokens=32,
        budget=Budget(prices=prices or {}),
    )
    outcome = run_sync(run_optimization(spec, out_dir=tmp / out))
    assert isinstance(outcome, RunOutcome)
    return outcome
