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
    "hotpotqa-500",
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


def test_trec_label_is_trec_written_as_users_write_it():
    """`trec-label`: the TREC test questions, the class in a `label` field the program is told the values of."""
    from prompthone.data import TREC_CLASSES
    from prompthone.program import render_messages

    task = get_task("trec-label")
    examples = task.load(None)
    plain = get_task("trec").load(None)
    assert len(examples) == len(plain) == 500
    assert [e.id for e in examples] == [e.id for e in plain]
    assert [e.labels["label"] for e in examples] == [e.labels["answer"] for e in plain]
    assert all("answer" not in e.labels for e in examples)
    assert {e.labels["label"] for e in examples} == set(TREC_CLASSES.values())

    program = task.make_program(None)
    ((_name, module),) = program.named_modules().items()
    assert module.signature.input_names == ("question",) and module.signature.output_names == ("label",)
    system = render_messages(module.signature, module.params, examples[0].inputs)[0]["content"]
    labels = "abbreviation, description, entity, human, location, number"
    instruction = f"Classify the question by the type of answer it expects. The label must be exactly one of: {labels}."
    assert instruction in system
    assert f"- Label: one of: {labels}" in system


def test_trec_label_scores_the_label_field():
    task = get_task("trec-label")
    examples = task.load(None)[:6]
    golds = {e.inputs["question"]: e.labels["label"] for e in examples}

    def respond(req):
        user = req.messages[-1][1]
        return next(f"Label: {g}" for q, g in golds.items() if q in user)

    lm = LM(ScriptedBackend(respond), cache=False)
    result = Evaluator(task.make_program(None), task.metric(), lm).evaluate_sync(None, examples)
    assert result.mean == 1.0, [(r.outputs, r.feedback) for r in result.records]

    lm = LM(ScriptedBackend(lambda req: "Label: nonsense"), cache=False)
    assert Evaluator(task.make_program(None), task.metric(), lm).evaluate_sync(None, examples).mean == 0.0
