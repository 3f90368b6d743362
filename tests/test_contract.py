"""The task-contract check on proposed instructions (`proposers.contract`), and that MIPRO, OPRO and
GRAD-SUM all apply it. Scripted LMs only: the replies are the ones small proposers were seen to write."""

from __future__ import annotations

import re

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import Evaluator
from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.lm.types import Request
from prompthone.metrics import ExactMatch
from prompthone.optimize import OptimizationSetup
from prompthone.optimize.gradsum import GradSum
from prompthone.optimize.gradsum.steps import RESAMPLE_STRIDE
from prompthone.optimize.mipro import MIPRO
from prompthone.optimize.opro import OPRO
from prompthone.optimize.proposers.contract import (
    Contract,
    contract_report,
    guard,
    looks_truncated,
    runs_to_cutoff,
    states_no_task,
    talks_about_instruction,
    talks_about_program,
)
from prompthone.program import Predict, Program, Signature
from prompthone.program.label_sets import find_labels
from prompthone.program.signature import Field
from test_mipro_world import make_setup, proposer_answer

LABELS = ("abbreviation", "description", "entity", "human", "location", "number")
LABEL_DESC = "one of: " + ", ".join(LABELS)
CONTRACT_SENTENCE = "The label must be exactly one of: " + ", ".join(LABELS) + "."
TREC_START = "Classify the question by the type of answer it expects. " + CONTRACT_SENTENCE
TREC = Contract.of(TREC_START, [Field("label", LABEL_DESC)])

# what small proposers wrote, seen in runs (issue 15)
DROPS_LABELS = "You are an expert in generating human-like responses."
META = (
    "To identify if a premise entails a hypothesis, read both carefully. The original instruction does not "
    "contain any errors or cost incurred."
)
TRUNCATED_EDIT = "Name the kind of answer the question expects. The feedback says: 1. It"
KEEPS_LABELS = "Read the question and answer with one of abbreviation, description, entity, human, location or number."


def has_all_labels(text: str) -> bool:
    return all(re.search(rf"\b{x}", text, re.I) for x in LABELS)


# --------------------------------------------------------------------------- deriving the contract


@pytest.mark.parametrize(
    ("instruction", "descriptions", "labels", "forms"),
    [
        (TREC_START, {"label": LABEL_DESC}, LABELS, ()),
        ("Classify the question by the kind of answer it asks for: " + ", ".join(LABELS) + ".", {}, LABELS, ()),
        ("Classify the question.", {"label": LABEL_DESC}, LABELS, ()),
        ("Is the sentiment of the sentence positive or negative?", {}, ("positive", "negative"), ()),
        ("Does the premise entail the hypothesis? Answer yes or no.", {}, ("yes", "no"), ()),
        ("Solve the math word problem.", {"answer": "the final numeric answer, a number only"}, (), ("a number",)),
        ("Answer the question.", {"answer": "the option letter, e.g. (A)"}, (), ("the option letter",)),
        ("Answer the question.", {"answer": "the final answer only"}, (), ()),
        ("Write a search query that finds the facts needed.", {}, (), ()),
        ("Answer the question using the context.", {}, (), ()),
    ],
)
def test_the_contract_comes_from_the_start_and_the_output_descriptions(instruction, descriptions, labels, forms):
    fields = [Field(n, d) for n, d in descriptions.items()]
    c = Contract.of(instruction, fields)
    assert (c.labels, c.forms) == (tuple(labels), tuple(forms))
    assert bool(c) == bool(labels or forms)


def test_the_repair_statement_is_the_starts_own_sentence_or_built_from_the_description():
    assert TREC.statement == CONTRACT_SENTENCE  # verbatim; the first sentence states no contract
    from_field = Contract.of("Classify the question.", [Field("label", LABEL_DESC)])
    assert from_field.statement == f"The label must be {LABEL_DESC}."
    # chain-of-thought reasoning states no contract even when its description would read like one
    cot = Contract.of("Solve it.", [Field("reasoning", "a number of steps, one of: a, b, c"), Field("answer", "")])
    assert not cot


def test_a_label_called_number_is_not_read_as_the_number_form():
    c = Contract.of("Classify it as one of: person, place, number.")
    assert c.labels == ("person", "place", "number") and c.forms == ()


def test_prose_lists_are_not_labels():
    assert find_labels("Answer the question using the context.") == []
    assert find_labels("Think about what the question asks: read it twice and consider every word in it.") == []


# --------------------------------------------------------------------------- the check


def test_a_proposal_that_drops_the_labels_is_repaired_with_the_starts_sentence():
    v = guard(DROPS_LABELS, TREC)
    assert v.status == "repaired" and v.text == f"{DROPS_LABELS} {CONTRACT_SENTENCE}"
    assert "abbreviation" in v.reason and "number" in v.reason
    no_period = guard("Name the answer type", TREC)
    assert no_period.text == f"Name the answer type. {CONTRACT_SENTENCE}"


@pytest.mark.parametrize(
    "text",
    [
        KEEPS_LABELS,
        "Pick ABBREVIATION, Description, entity, human, location, or number.",
        "Choose among abbreviations, descriptions, entities, humans, locations and numbers.",
        "Label each question (abbreviation / description / entity / human / location / number) by its answer.",
    ],
)
def test_a_proposal_that_keeps_every_label_is_kept_as_written(text):
    assert guard(text, TREC) == guard(text, TREC).__class__(text, "kept", "")


def test_the_answer_form_is_kept_or_repaired():
    math = Contract.of("Solve the math word problem.", [Field("answer", "the final numeric answer, a number only")])
    assert guard("Work it out step by step and give the final number.", math).status == "kept"
    v = guard("Work it out step by step.", math)
    assert v.status == "repaired" and v.text.endswith("The answer must be the final numeric answer, a number only.")
    yes_no = Contract.of("Does the premise entail the hypothesis? Answer yes or no.")
    assert guard("Decide if the premise entails the hypothesis; reply Yes or No.", yes_no).status == "kept"
    assert guard("Decide if the premise entails the hypothesis.", yes_no).text.endswith("Answer yes or no.")


def test_talk_about_an_instruction_is_rejected():
    v = guard(META, TREC)
    assert v.text is None and v.status == "rejected" and "talks about an instruction" in v.reason
    for text in (
        "The current instruction is too vague; it should name the labels.",
        "I have revised the prompt to be clearer.",
        "Rewrite the instruction so that it lists the labels.",
        "Add more context, such as the language in question and the specific requirements for labeling "
        "entities. This would make the instruction more challenging, potentially costing time and resources.",
        # chosen on trec-label seed 0 by the search at 271897a, kept as written by the check as it was then
        'Here is a step that would be costly if performed by a language model:  "Instruct the algorithm to '
        "predict based on the label, which must be exactly one of: abbreviation, description, entity, human, "
        'location, number."  This instruction assumes that the label being produced will always correspond to '
        "an exact category.",
        "This instruction assumes that the label is one of the six.",
        "Here's the revised prompt: classify the question.",
    ):
        assert talks_about_instruction(text), text
    # labels kept do not save it: it is still not an instruction
    assert guard(f"{KEEPS_LABELS} The previous instruction scored 40.", TREC).status == "rejected"


@pytest.mark.parametrize(
    "text",
    [
        # chosen or offered on trec-label by the 0.5B proposer (issue 15, seed 1, JSON start)
        "Step 1: Initialize a Predict object with the given signature and an instruction.",
        "You are an expert in natural language processing. Step 1: Initialize a `Predict` object with a given "
        "signature and an instruction.",
        "Use self.classify(question) to get the label.",
        "Call dspy.Predict on the question.",
        "You are an expert in analyzing search queries and answering questions using context, facilitating the "
        "generation of an MIPRO credit-assignment problem.",
        "Incorporate error checking, such as using the `isinstance()` function to validate that the input is a "
        "question and meets the requirements for an entity.",
        "Check the input with len() before you classify it.",
        "Use the `strip` method on the question first.",
    ],
)
def test_a_retelling_of_the_programs_code_is_rejected_even_with_every_label(text):
    assert talks_about_program(text)
    v = guard(f"{text} {CONTRACT_SENTENCE}", TREC)
    assert v.text is None and v.status == "rejected" and "program's code" in v.reason


@pytest.mark.parametrize(
    "text",
    [
        "**Good Output:**\nLabel (one of: abbreviation, description, entity, human, location, number)",
        "Label: one of abbreviation, description, entity, human, location or number",
        "### Output format\nLabel",
    ],
)
def test_a_header_with_the_labels_states_no_task_and_is_rejected(text):
    assert states_no_task(text, TREC)
    v = guard(text, TREC)
    assert v.text is None and v.status == "rejected" and "states no task" in v.reason


@pytest.mark.parametrize(
    "text",
    [
        "Predict the sentiment of the review.",
        "Predict (yes or no) whether the sentence is plausible.",
        "Classify the question's answer type.",
        "Label it.",
        "Answer the question in one word.",
        "Read the question and pick the label that fits the expected answer.",
        "Sign your name the way it appears on the signature line.",
        "Classify each sample, e.g. a city is a location.",
        "请判断问题期待的答案类型。",
        "Classez la question selon le type de réponse attendu.",
        "Pick the option, e.g. (A), that answers the question.",
        "Answer with the function of the organ (for example, digestion).",
    ],
)
def test_short_real_instructions_state_a_task_and_name_no_code(text):
    assert not talks_about_program(text) and not states_no_task(text, TREC)
    assert guard(text, TREC).status in ("kept", "repaired")


@pytest.mark.parametrize(
    "text",
    [
        "Name the kind of answer the question expects. Check these points: 1. It",
        "Classify the question into the",
        "Answer with the option letter (e.g.",
        "Reply with one of the following:",
        'Answer with "abbreviation',
    ],
)
def test_a_truncated_proposal_is_rejected(text):
    assert looks_truncated(text)
    assert guard(text, TREC).status == "rejected" and "truncated" in guard(text, TREC).reason


@pytest.mark.parametrize(
    "text",
    [
        "Use level 3.",
        "LEVEL 2",
        "Decide what the question is asking for",
        "Think about it carefully and reply now please.",
        "Classify it",
        "Give the answer as a number, e.g. 42.",
        "Make the answer one word: the label.",
        "Make sure the label is one of the six listed.",
        "Here is a question: say what kind of answer it expects.",
        "Follow the instruction in the question and answer it.",
    ],
)
def test_complete_instructions_are_not_called_truncated_or_meta(text):
    assert not looks_truncated(text) and not talks_about_instruction(text)
    assert guard(text, Contract()).status == "kept"  # no contract: nothing to repair


def test_a_reply_cut_at_the_token_cap_counts_only_when_the_instruction_runs_to_its_end():
    reply = "Instruction: Classify the question into its answer type using"
    assert runs_to_cutoff(reply, "Classify the question into its answer type using", "length")
    assert not runs_to_cutoff(reply, "Classify the question into its answer type using", "stop")
    assert not runs_to_cutoff("Classify it.\nExample: What is a", "Classify it.", "length")  # cut in the example
    assert looks_truncated("Classify the question into its answer type using", cut_off=True)
    assert not looks_truncated("Classify the question into its answer type.", cut_off=True)


def test_the_report_counts_outcomes_and_what_the_search_chose():
    fixed = {"module": "m", "accepted": True, "text": "A fixed one. X.", "contract": "repaired",
             "contract_reason": "dropped labels x; the start's contract appended"}  # fmt: skip
    cut = {"module": "m", "accepted": False, "text": "meh", "contract": "rejected",
           "contract_reason": "stops mid-sentence (truncated)"}  # fmt: skip
    events = [
        {"kind": "proposal", "data": {"module": "m", "accepted": True, "text": "A kept one.", "contract": "kept"}},
        {"kind": "proposal", "data": fixed},
        {"kind": "proposal", "data": cut},
        {"kind": "proposal", "data": {"module": "m", "accepted": True, "text": "summary", "purpose": "dataset"}},
        {"kind": "step", "data": {"contract": "kept"}},
    ]
    r = contract_report(events, chosen={"m": "A fixed one.  X."}, start={"m": "Start."})
    assert (r.checked, r.kept, r.repaired, r.rejected) == (3, 1, 1, 1)
    assert r.kept_share == pytest.approx(1 / 3)
    assert r.reasons == {"dropped labels x": 1, "stops mid-sentence (truncated)": 1}
    assert r.chosen == {"m": "repaired"}
    assert contract_report(events, chosen={"m": "Start."}, start={"m": "Start."}).chosen == {"m": "start"}


# --------------------------------------------------------------------------- the three methods


class Trec(Program):
    def __init__(self) -> None:
        self.classify = Predict(Signature({"question": ""}, {"label": LABEL_DESC}, TREC_START))

    def forward(self, question: str) -> dict:
        return {"label": self.classify(question=question).label}


def trec_examples(n: int, offset: int = 0) -> list[Example]:
    return [
        Example(id=f"q{i}", inputs={"question": f"Is {i} even or odd?"}, labels={"label": LABELS[i % 6]})
        for i in range(offset, offset + n)
    ]


LABEL_MATCH = ExactMatch(label_field="label", pred_field="label")


def trec_task(req: Request) -> str:
    """Right on one question in three, whatever the prompt (so there are failures to learn from)."""
    n = int(re.findall(r"Is (\d+) even", req.messages[-1][1])[-1])
    return f"Label: {LABELS[n % 6] if n % 3 == 0 else 'entity'}"


async def test_mipro_proposals_keep_the_contract_and_the_proposer_is_shown_it():
    # proposal k draws sample indices 3k, 3k+1, 3k+2 (a re-sample takes the next)
    by_index = {
        0: DROPS_LABELS,
        3: META,
        4: KEEPS_LABELS,
        6: "Classify the question into the",
        7: "Name the answer type of each question.",
        9: "Decide which of abbreviation, description, entity, human, location, number fits.",
        12: "You are a careful annotator of questions.",
    }

    def proposer(req: Request) -> str:
        if "Write a new instruction" in req.messages[-1][1]:
            return by_index.get(req.sample_index, "Say nothing useful at all here.")
        return proposer_answer(req)

    events: list = []
    setup, _, pb = make_setup(
        program=Trec(), task=trec_task, proposer=proposer, train=trec_examples(24), val=trec_examples(12, 100),
        events=events,
    )  # fmt: skip
    setup.evaluator.metric = LABEL_MATCH
    r = await MIPRO(minibatch_size=6, num_trials=6, num_instructions=6).optimize(setup)  # five proposals
    prompts = [q.messages[-1][1] for q in pb.requests if "Write a new instruction" in q.messages[-1][1]]
    assert prompts and all(f"Label ({LABEL_DESC})" in p for p in prompts)  # the field's description
    assert all(f"word for word: {CONTRACT_SENTENCE}" in p for p in prompts)  # and the start's contract
    outcomes = [(d["sample_index"], d["contract"]) for k, d in events if k == "proposal" and d.get("contract")]
    assert outcomes == [  # round 0 (indices 3k), then the re-samples of the two rejected ones
        (0, "repaired"), (3, "rejected"), (6, "rejected"), (9, "kept"), (12, "repaired"), (4, "kept"), (7, "repaired"),
    ]  # fmt: skip
    kept = [p for p in r.info["proposals"] if p["purpose"] == "instruction" and p["kept"]]
    assert {p["kept"] for p in kept} == {
        f"{DROPS_LABELS} {CONTRACT_SENTENCE}",
        KEEPS_LABELS,
        f"Name the answer type of each question. {CONTRACT_SENTENCE}",
        "Decide which of abbreviation, description, entity, human, location, number fits.",
        f"You are a careful annotator of questions. {CONTRACT_SENTENCE}",
    }
    assert all(has_all_labels(t.candidate["classify"].instruction) for t in r.trials)  # nothing off-contract scored


async def test_opro_proposals_keep_the_contract_and_the_meta_prompt_shows_it():
    replies = [
        f"<INS>{DROPS_LABELS}</INS>",
        f"<INS>{META}</INS>",
        f"<INS>{KEEPS_LABELS}</INS>",
        "<INS>Name the kind of answer the question expects. Check these points: 1. It</INS>",
    ]
    asked: list[Request] = []

    def respond(req: Request) -> str:
        asked.append(req)
        return replies[req.sample_index % len(replies)]

    events: list = []
    program = Trec()
    task = LM(ScriptedBackend(trec_task), cache=False)
    setup = OptimizationSetup(
        program=program, trainset=trec_examples(12), valset=trec_examples(12, 100),
        evaluator=Evaluator(program, LABEL_MATCH, task), task_lm=task,
        proposer_lm=LM(ScriptedBackend(respond), cache=False), events=lambda k, d: events.append((k, d)),
    )  # fmt: skip
    r = await OPRO(steps=1, candidates_per_step=4).optimize(setup)
    meta = asked[0].messages[-1][1]
    assert f'writes "Label" ({LABEL_DESC})' in meta and f"word for word: {CONTRACT_SENTENCE}" in meta
    scored = [h["instruction"] for h in r.info["modules"]["classify"]["history"]]
    assert scored == [TREC_START, f"{DROPS_LABELS} {CONTRACT_SENTENCE}", KEEPS_LABELS]
    step = r.info["steps"][0]
    assert (step["off_contract"], step["repaired"], step["new"], step["unparsed"]) == (2, 1, 2, 0)
    outcomes = [(d["sample_index"], d["contract"]) for k, d in events if k == "proposal"]
    assert outcomes == [(0, "repaired"), (1, "rejected"), (2, "kept"), (3, "rejected")]


async def test_gradsum_edits_keep_the_contract_and_rejected_ones_are_resampled():
    edits = {
        0: f"<instruction>{TRUNCATED_EDIT}</instruction>",
        RESAMPLE_STRIDE: "<instruction>Name the kind of answer the question expects.</instruction>",
        1: f"<instruction>{KEEPS_LABELS}</instruction>",
    }
    edit_prompts: list[str] = []

    def proposer(req: Request) -> str:
        p = req.messages[-1][1]
        if "Rewrite the instruction in your own words" in p:
            edit_prompts.append(p)
            return edits[req.sample_index]
        if "Answer with one general direction" in p:
            return "Name the type of answer, not the answer."
        return "It answered entity where another label was wanted."

    events: list = []
    program = Trec()
    task = LM(ScriptedBackend(trec_task), cache=False)
    setup = OptimizationSetup(
        program=program, trainset=trec_examples(6), valset=trec_examples(6, 100),
        evaluator=Evaluator(program, LABEL_MATCH, task), task_lm=task,
        proposer_lm=LM(ScriptedBackend(proposer), cache=False), events=lambda k, d: events.append((k, d)),
    )  # fmt: skip
    r = await GradSum(iterations=1, minibatch_size=6, edits_per_prompt=2).optimize(setup)
    assert edit_prompts and all(f"word for word: {CONTRACT_SENTENCE}" in p for p in edit_prompts)
    edits = [d for k, d in events if k == "proposal" and d["purpose"] == "gradsum_edit"]
    outcomes = sorted((d["sample_index"], d["contract"], d["accepted"]) for d in edits)
    assert outcomes == [(0, "rejected", False), (1, "kept", True), (RESAMPLE_STRIDE, "repaired", True)]
    children = {t.candidate["classify"].instruction for t in r.trials if t.full} - {TREC_START}
    assert children == {f"Name the kind of answer the question expects. {CONTRACT_SENTENCE}", KEEPS_LABELS}
