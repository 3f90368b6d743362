"""A tiny deterministic optimizer and a fake task model, for tests of runs, stores and resume."""

from __future__ import annotations

import contextlib
import re
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

from prompthone.optimize import OptimizationResult, Optimizer, Run
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

    async def _optimize(self, run: Run) -> OptimizationResult:
        setup = run.setup
        await run.score(setup.start, setup.valset, full=True)
        (module,) = list(setup.start)
        batch = list(setup.valset)[: self.minibatch]
        scored = []
        for i, text in enumerate(INSTRUCTIONS):
            cand = setup.start.with_module(module, PromptParams(text, setup.start[module].demos))
            trial, _ = await run.score(cand, batch, full=False, proposal=i)
            scored.append((trial.score, -i, cand))
        for _, _, cand in sorted(scored, key=lambda t: (t[0], t[1]), reverse=True)[:2]:
            await run.score(cand, setup.valset, full=True)
        return run.result()


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


#: instructions the fake proposer writes, by sampling seed (cycled); only the first makes the task model right
MIPRO_PROPOSALS = [
    "Solve the problem carefully and give the number.",
    "Answer with the number only.",
    "Read the question, then answer it.",
]


def mipro_math_responder(body: dict) -> str:
    """Fake server for MIPRO runs on the fake GSM8K data: proposer prompts get short plausible replies
    (the instruction varies with the sampling seed), task calls are right when the system prompt says
    'carefully' or the question's number is a multiple of 3 (so some bootstrapped traces pass)."""
    user = body["messages"][-1]["content"]
    if "Write a new instruction" in user:
        return MIPRO_PROPOSALS[int(body.get("seed") or 0) % len(MIPRO_PROPOSALS)]
    if "Write 2 to 5 short observations" in user:
        return "- The inputs are short word problems about apples.\n- The outputs are whole numbers."
    if user.startswith("Here are observations"):
        return "Short word problems whose answer is one whole number."
    if "source code of a program" in user:
        return "The program solves a word problem in one step."
    if "describe the role of the step" in user:
        return "It reads the problem and writes the number that answers it."
    numbers = re.findall(r"\d+", user)
    if numbers and int(numbers[0]) % 3 == 0:
        return f"Reasoning: done.\nAnswer: {numbers[0]}"
    return careful_math_responder(body)


def fake_gsm8k_spec(url: str, root, **kw):
    """A small instruction-search run on the fake GSM8K data (`write_fake_gsm8k`) against a fake server."""
    from prompthone.runs.spec import RunSpec

    return RunSpec(
        task="gsm8k",
        optimizer="instruction-search",
        model=f"openai/fake@{url}",
        n_train=4,
        n_val=10,
        n_test=10,
        data_root=str(root),
        concurrency=4,
        max_tokens=32,
        **kw,
    )


@contextlib.contextmanager
def fake_gsm8k_env(tmp_path, monkeypatch, *, latency_ms: int):
    """Fake GSM8K data, a private cache folder and a fake server answering like `careful_math_responder`:
    yields (tmp_path, server URL, server)."""
    from prompthone.testing.fake_openai_server import FakeOpenAIServer

    write_fake_gsm8k(tmp_path / "data")
    monkeypatch.setenv("PROMPTHONE_CACHE_DIR", str(tmp_path / "cache"))
    srv = FakeOpenAIServer(latency_ms=latency_ms, responder=careful_math_responder)
    with srv as url:
        yield tmp_path, url, srv


def run_dir_once(
    proc: subprocess.Popen,
    out: Path,
    ready: Callable[[Path], bool],
    *,
    timeout: float,
    marker: str = "run.sqlite",
    transient: tuple[type[Exception], ...] = (sqlite3.OperationalError,),
) -> Path:
    """The run folder under `out` that `proc` is writing, as soon as `ready(folder)` holds: the moment a
    kill or interrupt test stops the process. Polls often so the stop lands close to that moment;
    `transient` errors (the store being created, or busy) mean "not yet"."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dirs = list(out.glob(f"*/{marker}")) if out.exists() else []
        try:
            if dirs and ready(dirs[0].parent):
                return dirs[0].parent
        except transient:
            pass
        assert proc.poll() is None, f"the run ended before it could be stopped: {proc.communicate()}"
        time.sleep(0.005)
    raise AssertionError(f"the run under {out} was not ready after {timeout} s")
