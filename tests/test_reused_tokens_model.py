"""The embedded model, for real: the prompt tokens it reuses from its KV cache are recorded per call,
and sending one candidate's requests in a row is what makes it reuse them."""

from __future__ import annotations

import asyncio

import pytest

from prompthone.lm import LM
from prompthone.lm.local.backend import LocalBackend
from prompthone.store import RunStore

pytestmark = pytest.mark.model

RULES = (
    "{instruction} You label the sentiment of a short movie review. "
    "Answer with exactly one word, positive or negative. "
    "Irony counts as what the writer means, not what the words say. A review that praises the actors but "
    "not the film is negative. A review that only describes the plot, without any judgement, is negative."
)
#: two candidates' instructions, unlike from their first word (as two proposed instructions are)
INSTRUCTIONS = {
    "affine": ("Read the review slowly.", "Decide how its writer feels."),
    "fifo": ("Think of the writer's mood.", "Label this review."),
}
REVIEWS = ["A joy from start to end.", "I walked out after an hour.", "The cast shines, the script does not."]


async def score_two_candidates(lm: LM, instructions: tuple[str, str]) -> None:
    """Two candidates (two instructions) scored at once, their requests arriving interleaved."""
    chats = [
        [{"role": "system", "content": RULES.format(instruction=ins)}, {"role": "user", "content": review}]
        for review in REVIEWS
        for ins in instructions
    ]
    await asyncio.gather(*(lm.complete(chat, max_tokens=3) for chat in chats))


def test_reuse_is_recorded_per_call_and_one_candidate_at_a_time_reuses_more(tmp_path, monkeypatch):
    store = RunStore(tmp_path / "run")
    shares = {}
    for order in ("affine", "fifo"):
        monkeypatch.setenv("PROMPTHONE_REQUEST_ORDER", order)
        lm = LM(LocalBackend("qwen2.5-coder-0.5b"), cache=False)
        lm.listeners.append(lambda c: store.record_lm_call("task", c))
        before = len(store.lm_calls())
        asyncio.run(score_two_candidates(lm, INSTRUCTIONS[order]))
        calls = store.lm_calls()[before:]
        assert len(calls) == 6 and all(c["reused_prompt_tokens"] is not None for c in calls)
        assert all(0 <= c["reused_prompt_tokens"] < c["prompt_tokens"] for c in calls)
        shares[order] = sum(c["reused_prompt_tokens"] for c in calls) / sum(c["prompt_tokens"] for c in calls)
        assert lm.usage.reused_prompt_tokens == sum(c["reused_prompt_tokens"] for c in calls)
    # in a row, 4 of the 6 prompts repeat the one before up to the review; interleaved, none does
    assert shares["affine"] > 0.5 and shares["fifo"] < 0.2
