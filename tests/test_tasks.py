"""Built-in tasks are wired right: data fields reach the program, outputs reach the metric."""

from __future__ import annotations

import re

import pytest

from prompthone.evaluate import Evaluator
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.tasks import TASKS, get_task

NAMES = [
    "trec-mini",
    "gsm8k-mini",
    "gsm8k",
    "multiarith",
    "sst2",
    "trec",
    "hotpotqa",
    "bbh/date_understanding",
    "bbh/word_sorting",
]


def gold_answering_lm(examples):
    """Replies with the gold answer of whichever example's input text appears in the prompt."""
    golds = {str(next(iter(e.inputs.values()))): str(e.labels["answer"]) for e in examples}

    def respond(req):
        user = req.messages[-1][1]
        if "Search Query" in req.messages[0][1] and "Answer:" not in req.messages[0][1]:
            return "Search Query: " + user.splitlines()[-1]
        for text, gold in golds.items():
            if text in user:
                return f"Reasoning: thinking.\nAnswer: {gold}"
        return "Answer: ???"

    return LM(ScriptedBackend(respond), cache=False)


@pytest.mark.parametrize("name", NAMES)
def test_task_is_wired_end_to_end(name):
    task = get_task(name)
    examples = task.load(None)[:5]
    assert examples, name
    program = task.make_program(None)
    assert len(program.named_prompts()) == (2 if task.multi_stage else 1)
    result = Evaluator(program, task.metric(), gold_answering_lm(examples)).evaluate_sync(None, examples)
    assert result.n_errors == 0, [r.error for r in result.records]
    assert result.mean == 1.0, [(r.outputs, r.feedback) for r in result.records]


def test_every_bbh_task_is_listed_and_unknown_names_are_explained():
    assert sum(n.startswith("bbh/") for n in TASKS) == 27
    assert get_task("date_understanding").name == "bbh/date_understanding"
    with pytest.raises(KeyError, match=re.escape("built-in tasks: trec-mini, gsm8k-mini")):
        get_task("nope")
