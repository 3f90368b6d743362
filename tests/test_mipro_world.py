"""A scripted world for the MIPRO, proposer and baseline tests, and checks that it behaves as planted.

The task: say whether a number is even or odd. The scripted task model is right on every example
only with an instruction that mentions "parity" AND at least two demos; the instruction alone gets
3 in 4 right, demos alone 2 in 3, neither 1 in 5. So the best configuration is known in advance,
and a search that finds it has searched instructions and demos jointly.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator, ScoreCache
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.lm.types import Request
from prompthone.metrics import ExactMatch
from prompthone.optimize import Budget, OptimizationSetup
from prompthone.program import Candidate, Predict, Program, PromptParams

START_INSTRUCTION = "Answer the question."
GOOD = "Decide the parity of the number: even or odd."
#: what the scripted proposer writes, by sample index (cycled); index 1 is degenerate on purpose
PROPOSALS = [
    f"Instruction: {GOOD}",
    'Predict("question -> answer")',
    "Reply with one word about the number given to you.",
    '"Consider the number and say whether it is even or odd."',
    "Think about it carefully and reply now please.",
]


class Parity(Program):
    def __init__(self) -> None:
        self.classify = Predict("question -> answer", instruction=START_INSTRUCTION)

    def forward(self, question: str) -> dict:
        return {"answer": self.classify(question=question).answer}


def parity_examples(n: int, offset: int = 0) -> list[Example]:
    return [
        Example(id=f"n{i}", inputs={"question": f"Is {i} even or odd?"}, labels={"answer": ("even", "odd")[i % 2]})
        for i in range(offset, offset + n)
    ]


def number_of(req: Request) -> int:
    return int(re.findall(r"Is (\d+) even", req.messages[-1][1])[-1])


def task_answer(req: Request) -> str:
    n = number_of(req)
    good = "parity" in req.messages[0][1].lower()
    demos = sum(1 for role, _ in req.messages if role == "assistant")
    right = "even" if n % 2 == 0 else "odd"
    wrong = "odd" if right == "even" else "even"
    if good and demos >= 2:
        ok = True
    elif good:
        ok = n % 4 != 0
    elif demos >= 2:
        ok = n % 3 != 0
    else:
        ok = n % 5 == 0
    return f"Answer: {right if ok else wrong}"


def proposer_answer(req: Request) -> str:
    p = req.messages[-1][1]
    if "Write 2 to 5 short observations" in p:
        return "- The inputs ask about numbers.\n- The outputs are the words even or odd."
    if p.startswith("Here are observations"):
        return "The data asks whether numbers are even or odd, with one word as the answer."
    if "source code of a program" in p:
        return "The program classifies the parity of a number in a single step."
    if "describe the role of the step" in p:
        return "It reads the question and writes the one-word answer."
    if "Write a new instruction" in p:
        return PROPOSALS[req.sample_index % len(PROPOSALS)]
    return "?"


class RecordingEvaluator(Evaluator):
    """The shared evaluator, also noting which examples each evaluation scored (for schedule tests)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[tuple[str, tuple[str, ...]]] = []
        self.inflight = self.peak = 0

    async def evaluate(self, candidate, examples, **kw):  # type: ignore[override]
        cand = candidate or Candidate.default(self.program)
        self.calls.append((cand.hash, tuple(e.id for e in examples)))
        self.inflight += 1
        self.peak = max(self.peak, self.inflight)
        try:
            return await super().evaluate(candidate, examples, **kw)
        finally:
            self.inflight -= 1


def make_setup(
    *,
    seed: int = 1,
    n_train: int = 20,
    n_val: int = 40,
    task: Callable[[Request], str | Exception] = task_answer,
    proposer: Callable[[Request], str | Exception] = proposer_answer,
    cache: bool | Path = False,
    budget: Budget | None = None,
    events: list | None = None,
    delay_s: float | Callable[[Request], float] = 0.0,
    max_retries: int = 0,
    program: Program | None = None,
    train: list[Example] | None = None,
    val: list[Example] | None = None,
    separate_teacher: bool = False,
    storage_url: str | None = None,
    task_max_concurrency: int | None = None,
    concurrency: int = 16,
) -> tuple[OptimizationSetup, ScriptedBackend, ScriptedBackend]:
    """A fresh setup over the parity world: scripted task and proposer LMs (no response cache by
    default), a recording evaluator with its own score cache, and an event list if given. With
    `separate_teacher`, the teacher is its own LM object (same script), so its usage is apart.
    `task_max_concurrency` bounds the task LM's requests in flight; `concurrency` is the evaluator's."""
    if program is None:
        program = Parity()
        # the world's golden footprints (test_format_search.py) and `with_params` candidates are in `labels`;
        # set here rather than in Parity, whose source the proposer reads (a changed source changes requests)
        program.classify.format = "labels"
    data = parity_examples(n_train + n_val)
    train = train if train is not None else data[:n_train]
    val = val if val is not None else data[n_train:]
    tb = ScriptedBackend(task, name="task", delay_s=delay_s)
    pb = ScriptedBackend(proposer, name="proposer")
    task_lm = LM(tb, cache=cache, max_retries=max_retries, backoff_base_s=0.001, max_concurrency=task_max_concurrency)
    proposer_lm = LM(pb, cache=cache)
    ev = RecordingEvaluator(program, ExactMatch(), task_lm, score_cache=ScoreCache(), concurrency=concurrency)
    teacher_lm = LM(ScriptedBackend(task, name="teacher"), cache=cache) if separate_teacher else None
    setup = OptimizationSetup(
        program=program,
        trainset=train,
        valset=val,
        evaluator=ev,
        task_lm=task_lm,
        proposer_lm=proposer_lm,
        teacher_lm=teacher_lm,
        seed=seed,
        storage_url=storage_url,
        budget=budget or Budget(),
        events=(lambda k, d: events.append((k, d))) if events is not None else None,
    )
    return setup, tb, pb


def with_params(instruction: str, n_demos: int) -> Candidate:
    demos = [{"question": f"Is {i} even or odd?", "answer": "even" if i % 2 == 0 else "odd"} for i in range(n_demos)]
    return Candidate({"classify": PromptParams(instruction, tuple(demos))})


def test_the_world_plants_one_best_configuration():
    setup, _, _ = make_setup()
    ev = setup.evaluator
    scores = {
        "start": ev.evaluate_sync(None, setup.valset).mean,
        "instruction": ev.evaluate_sync(with_params(GOOD, 0), setup.valset).mean,
        "demos": ev.evaluate_sync(with_params(START_INSTRUCTION, 2), setup.valset).mean,
        "both": ev.evaluate_sync(with_params(GOOD, 2), setup.valset).mean,
    }
    assert scores["both"] == 1.0
    assert scores["start"] < scores["demos"] < scores["instruction"] < scores["both"]
