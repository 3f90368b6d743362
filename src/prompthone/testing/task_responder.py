"""Deterministic, task-shaped answers for the fake OpenAI server, so an optimizer does real work on it.

The fake server's default answer echoes the question, which every candidate prompt scores 0 on. To
benchmark a whole optimization (issue 8's warm-cache run) against a server with a fixed latency, the
answers must look like a model's: right on some examples and wrong on others, better under some
prompts than others, and replies to proposal prompts that read like instructions and summaries.

`TaskResponder(examples)` answers as a model of made-up, prompt-dependent skill would, as a pure
function of the request body (messages, seed, temperature), so a re-run with the same requests gets
the same answers (what a response cache relies on) and two runs of the server agree:

* a task call (its last user turn holds the input of a known example) is answered in the reply format
  its system prompt asks for (a JSON object, `<field>` markers or `Label: value` lines; see
  `prompthone.testing.replies`); the label field is right with probability `skill(prompt)`, where the
  prompt is every message but the last (instruction and demos: the candidate), and wrong otherwise
  (another label seen in the data);
* any other call (a proposer's) gets a short plausible text: an instruction when asked for one, a list
  of observations, or a summary / description, with the wording picked by a hash of the request.

It knows the labels because it is given the examples: it stands in for a model of some skill, not
for a model that solves the task.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from prompthone.data.example import Example
from prompthone.program.values import label_key
from prompthone.testing.replies import reply_layout, without_reminder, write_reply

_OPENERS = ("", "You are a careful annotator. ", "Think about the whole input before answering. ", "Be precise. ")
_CORES = (
    "Read the input and give the single best label for it",
    "Decide which label fits the input and reply with that label",
    "Look at the wording and tone of the input, then choose its label",
    "Judge the input as a whole and answer with one label",
    "Weigh every clue in the input and pick the matching label",
    "Classify the input into exactly one of the allowed labels",
)
_CLOSERS = (
    ".",
    ", using the exact label spelling.",
    "; do not add any other words.",
    ". When in doubt, go with the stronger signal.",
)
_OBSERVATIONS = (
    "- The inputs are short English texts.\n- Each expected output is a single label.\n- Labels repeat across items.",
    "- Inputs vary in length from a few words to a full sentence.\n- The outputs come from a small fixed set.",
    "- Many inputs carry their signal in a few key words.\n- The expected outputs are plain lowercase labels.",
)
_SUMMARIES = (
    "The inputs are short texts and each must be given one label from a small fixed set.",
    "Each item is a brief piece of text; the expected answer is one of a few labels, written plainly.",
)


def _fraction(*parts: str) -> float:
    """A deterministic number in [0, 1) from the given strings."""
    digest = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _norm(text: str) -> str:
    return " ".join(text.split())


class TaskResponder:
    """A `Responder` for `FakeOpenAIServer(responder=...)` that answers like a model of some skill.

    `base_skill` is the chance of a right label under an average prompt; the prompt (instruction and
    demos) moves it by up to `spread` either way, and each demo adds `per_demo`.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        *,
        base_skill: float = 0.6,
        spread: float = 0.25,
        per_demo: float = 0.03,
    ) -> None:
        if not examples:
            raise ValueError("TaskResponder needs at least one example")
        self.base_skill = base_skill
        self.spread = spread
        self.per_demo = per_demo
        self.by_input: dict[str, dict[str, str]] = {}
        self.values: dict[str, list[str]] = {}
        for ex in examples:
            texts = [v for v in ex.inputs.values() if isinstance(v, str)]
            if not texts:
                continue
            labels = {label_key(k): str(v) for k, v in ex.labels.items()}
            self.by_input[_norm(texts[-1])] = labels
            for k, v in labels.items():
                seen = self.values.setdefault(k, [])
                if v not in seen:
                    seen.append(v)

    def skill(self, messages: list[dict[str, Any]]) -> float:
        """The chance of a right label under this prompt (every message but the last)."""
        prompt = json.dumps(messages[:-1], sort_keys=True)
        demos = sum(1 for m in messages[:-1] if m.get("role") == "assistant")
        p = self.base_skill + self.spread * (2 * _fraction("skill", prompt) - 1) + self.per_demo * demos
        return min(0.97, max(0.03, p))

    def _find(self, user: str) -> dict[str, str] | None:
        text = _norm(without_reminder(user))
        _head, sep, rest = text.partition(": ")
        if sep and rest in self.by_input:
            return self.by_input[rest]
        return next((labels for key, labels in self.by_input.items() if key and key in text), None)

    def __call__(self, body: dict[str, Any]) -> str:
        messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
        user = next((m.get("content") for m in reversed(messages) if m.get("role") == "user"), "")
        user = user if isinstance(user, str) else ""
        system = next((m.get("content") for m in messages if m.get("role") == "system"), "")
        labels = self._find(user) if user else None
        if labels is not None:
            return self._task_answer(messages, user, system if isinstance(system, str) else "", labels)
        seed = json.dumps([messages, body.get("seed"), body.get("temperature")], sort_keys=True)
        return self._proposer_answer(user, seed)

    def _task_answer(self, messages: list[dict[str, Any]], user: str, system: str, labels: dict[str, str]) -> str:
        prompt = json.dumps(messages[:-1], sort_keys=True)
        right = _fraction("right", prompt, user) < self.skill(messages)
        values = {}
        for name in reply_layout(system)[1] or ["Answer"]:
            key = label_key(name)
            if key in labels:
                value = labels[key]
                if not right:
                    others = [v for v in self.values.get(key, []) if v != value] or [value + "?"]
                    value = others[int(_fraction("wrong", prompt, user) * len(others))]
            else:  # a field the data has no label for (reasoning, a query): a plausible filler
                value = "The input points one way; checking the key words settles it."
            values[name] = value
        return write_reply(system, values)

    def _proposer_answer(self, prompt: str, seed: str) -> str:
        def pick(options: Sequence[str], salt: str) -> str:
            return options[int(_fraction(salt, seed) * len(options))]

        if "instruction" in prompt.lower() and "new instruction" in prompt.lower():
            return pick(_OPENERS, "open") + pick(_CORES, "core") + pick(_CLOSERS, "close")
        if "observation" in prompt.lower():
            return pick(_OBSERVATIONS, "obs")
        return pick(_SUMMARIES, "summary")
