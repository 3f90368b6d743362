"""The catalogue of built-in tasks, each ready to evaluate or optimize from one name.

A task knows how to load its examples (from the shared benchmark data, a user path, or a dataset
shipped in the package), how to build its zero-shot starting program, and which metric scores it.
`trec-mini` and `gsm8k-mini` need no data folder: `prompthone demo` optimizes `trec-mini`.
"""

from __future__ import annotations

from collections.abc import Callable

from prompthone.data import (
    BBH_MULTIPLE_CHOICE,
    BBH_TASKS,
    TREC_CLASSES,
    Example,
    HotpotDistractor,
    load_bbh,
    load_gsm8k,
    load_gsm8k_mini,
    load_hotpotqa_distractor,
    load_hotpotqa_ircot500,
    load_multiarith,
    load_sst2,
    load_trec,
    load_trec_mini,
)
from prompthone.metrics import ChoiceMatch, ExactMatch, NumericMatch
from prompthone.program import Program, Signature
from prompthone.tasks.programs import Classify, MultiHopQA, Reason
from prompthone.tasks.task import Root, Task

MATH_INSTRUCTION = "Solve the math word problem."
MATH_ANSWER = "the final numeric answer, a number only"


def _math(name: str, description: str, load: Callable[[Root], list[Example]]) -> Task:
    return Task(
        name=name,
        description=description,
        load=load,
        make_program=lambda root: Reason(MATH_INSTRUCTION, MATH_ANSWER),
        metric=NumericMatch,
    )


# the label words the metric expects (the dataset's codes ABBR, DESC, ... are mapped to them when loading)
TREC_INSTRUCTION = "Classify the question by the kind of answer it asks for: " + ", ".join(TREC_CLASSES.values()) + "."


def _trec(name: str, description: str, load: Callable[[Root], list[Example]]) -> Task:
    return Task(
        name=name,
        description=description,
        load=load,
        make_program=lambda root: Classify("question -> answer", TREC_INSTRUCTION, "answer"),
        metric=ExactMatch,
    )


# TREC as a user writes the classifier: the output is a `label` whose description lists the values, and
# the instruction repeats them (issue 15). `trec` keeps the terse `answer` program of the earlier benchmarks.
TREC_LABELS = ", ".join(TREC_CLASSES.values())
TREC_LABEL_INSTRUCTION = (
    f"Classify the question by the type of answer it expects. The label must be exactly one of: {TREC_LABELS}."
)


def _trec_label_examples(root: Root) -> list[Example]:
    """The TREC test questions with the class under `label` (and the fine class under `fine`)."""
    return [
        Example(id=e.id, inputs=e.inputs, labels={"label": e.labels["answer"], "fine": e.labels["fine"]})
        for e in load_trec("test", root=root)
    ]


def _trec_label_program(root: Root) -> Program:
    signature = Signature(
        inputs={"question": ""}, outputs={"label": f"one of: {TREC_LABELS}"}, instruction=TREC_LABEL_INSTRUCTION
    )
    return Classify(signature, TREC_LABEL_INSTRUCTION, "label")


def _bbh(task: str) -> Task:
    mc = task in BBH_MULTIPLE_CHOICE
    return Task(
        name=f"bbh/{task}",
        description=f"BIG-Bench Hard: {task.replace('_', ' ')}",
        load=lambda root: load_bbh(task, root=root),
        make_program=lambda root: Reason(
            "Answer the question.", "the option letter, e.g. (A)" if mc else "the final answer only"
        ),
        metric=ChoiceMatch if mc else ExactMatch,
    )


def _hotpot(name: str, description: str, load: Callable[[Root], HotpotDistractor]) -> Task:
    """The two-stage retrieve-then-answer program over one set of HotPotQA questions and their paragraphs."""
    return Task(
        name=name,
        description=description,
        load=lambda root: list(load(root).questions),
        make_program=lambda root: MultiHopQA(load(root).corpus),
        metric=ExactMatch,
        multi_stage=True,
    )


_TASK_LIST = [
    _trec(
        "trec-mini",
        "80 TREC training questions shipped with prompthone (MIT); the demo's task",
        lambda r: load_trec_mini(),
    ),
    _math("gsm8k-mini", "60 easy GSM8K training problems shipped with prompthone (MIT)", lambda r: load_gsm8k_mini()),
    _math("gsm8k", "GSM8K grade-school math (test split)", lambda root: load_gsm8k("test", root=root)),
    _math("multiarith", "MultiArith arithmetic word problems", lambda root: load_multiarith(root=root)),
    Task(
        name="sst2",
        description="SST-2 sentiment (positive / negative), dev split",
        load=lambda root: load_sst2("dev", root=root),
        make_program=lambda root: Classify(
            "sentence -> answer", "Is the sentiment of the sentence positive or negative?", "answer"
        ),
        metric=ExactMatch,
    ),
    _trec(
        "trec", "TREC question classification, 6 coarse classes, test split", lambda root: load_trec("test", root=root)
    ),
    Task(
        name="trec-label",
        description="TREC test split as a user writes the classifier: a described `label` output field",
        load=_trec_label_examples,
        make_program=_trec_label_program,
        metric=lambda: ExactMatch(label_field="label"),
    ),
    _hotpot(
        "hotpotqa",
        "HotPotQA multi-hop: write a query, BM25 over 1000 paragraphs, answer (two LM stages)",
        lambda root: load_hotpotqa_distractor(root=root),
    ),
    _hotpot(
        "hotpotqa-500",
        "HotPotQA multi-hop on IRCoT's 500 dev questions: query, BM25 over 4858 paragraphs, answer",
        lambda root: load_hotpotqa_ircot500(root=root),
    ),
    *(_bbh(t) for t in BBH_TASKS),
]

TASKS: dict[str, Task] = {t.name: t for t in _TASK_LIST}


def task_names() -> list[str]:
    return list(TASKS)
