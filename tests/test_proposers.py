"""Shared proposers with scripted LMs: bootstrapping, labelled demos, demo sets, grounding, proposals."""

from __future__ import annotations

import random
import re

import pytest

from prompthone.data.example import Example
from prompthone.lm import ServerError
from prompthone.lm.types import Request
from prompthone.optimize.proposers import (
    TIPS,
    Grounding,
    InstructionProposer,
    ProposalOptions,
    bootstrap_demos,
    clean_instruction,
    demo_set_candidates,
    describe_program,
    format_history,
    labeled_demos,
    summarize_dataset,
)
from prompthone.optimize.proposers.overlap import copies_examples, copies_run, loops
from prompthone.program import Candidate, Demo, Predict, Program
from test_mipro_world import Parity, make_setup, number_of, parity_examples, proposer_answer

# --------------------------------------------------------------------------- bootstrapping


def even_only(req: Request):
    """A teacher right on even numbers, wrong on odd ones, and erroring on multiples of 7."""
    n = number_of(req)
    if n % 7 == 0 and n > 0:
        return ServerError("down")
    return "Answer: even"  # right on even numbers only


async def test_bootstrap_keeps_only_traces_that_pass_the_metric():
    setup, _, _ = make_setup(task=even_only, n_train=20)
    result = await bootstrap_demos(setup)
    demos = result.demos["classify"]
    numbers = [int(re.findall(r"\d+", d["question"])[0]) for d in demos]
    assert numbers and all(n % 2 == 0 for n in numbers)
    assert not any(n % 7 == 0 and n > 0 for n in numbers)  # errors never pass
    assert result.errors == 2 and result.tried == 20  # 7 and 14
    assert result.passed == len(demos) == sum(1 for n in range(20) if n % 2 == 0 and not (n % 7 == 0 and n > 0))
    assert all(d["answer"] == "even" for d in demos)  # the demo is what the model wrote in the passing run


async def test_bootstrap_stops_once_enough_traces_passed():
    setup, tb, _ = make_setup(task=even_only, n_train=40)
    setup.evaluator.concurrency = 4
    result = await bootstrap_demos(setup, max_traces=3)
    assert result.passed == 3
    assert result.tried < 40 and len(tb.requests) == result.tried


async def test_teacher_sees_labelled_demos_but_never_its_own_example():
    def zero_shot_fails(req: Request):
        demos = sum(1 for role, _ in req.messages if role == "assistant")
        n = number_of(req)
        return f"Answer: {'even' if n % 2 == 0 else 'odd'}" if demos else "Answer: banana"

    setup, tb, _ = make_setup(task=zero_shot_fails, n_train=12)
    assert (await bootstrap_demos(setup)).passed == 0
    tb.requests.clear()
    result = await bootstrap_demos(setup, teacher_labeled=3)
    assert result.passed == 9 and result.tried == 9
    for req in tb.requests:
        shown = [c for role, c in req.messages[1:-1] if role == "user"]
        assert len(shown) == 3 and req.messages[-1][1] not in shown


class TwoStage(Program):
    """question -> search query -> (lookup) -> answer; only the final answer is labelled."""

    def __init__(self) -> None:
        self.query = Predict("question -> search_query", instruction="Write a query.")
        self.answer = Predict("context, question -> answer", instruction="Answer from the context.")

    def forward(self, question: str) -> dict:
        q = self.query(question=question).search_query
        context = f"facts about {q}"
        return {"answer": self.answer(context=context, question=question).answer}


def two_stage_lm(req: Request):
    """The query is 'good N' unless N is a multiple of 3; the answer is right only from a good query."""
    last = req.messages[-1][1]
    n = int(re.findall(r"Is (\d+) even", last)[-1])
    if "Context:" not in last:
        return f"Search Query: {'bad' if n % 3 == 0 else 'good'} {n}"
    right = "even" if n % 2 == 0 else "odd"
    return f"Answer: {right if 'good' in last else 'maybe'}"


async def test_multi_stage_query_demos_come_from_runs_whose_final_answer_was_right():
    setup, _, _ = make_setup(task=two_stage_lm, program=TwoStage(), n_train=18)
    result = await bootstrap_demos(setup)
    queries = result.demos["query"]
    answers = result.demos["answer"]
    assert len(queries) == len(answers) == 12  # 18 runs, the 6 multiples of 3 fail at the end
    assert all(d["search_query"].startswith("good") for d in queries)
    ids = {int(re.findall(r"\d+", d["question"])[0]) for d in queries}
    assert ids == {n for n in range(18) if n % 3}
    # every bad query call was itself fine (status ok): it is the FINAL answer that excludes it
    assert all(set(d) == {"question", "search_query"} for d in queries)
    assert all(set(d) == {"context", "question", "answer"} for d in answers)


def test_labelled_demos_only_for_modules_whose_fields_the_example_has():
    examples = parity_examples(3)
    single = labeled_demos(Parity(), examples)
    assert [d.to_dict() for d in single["classify"]] == [
        {"question": "Is 0 even or odd?", "answer": "even"},
        {"question": "Is 1 even or odd?", "answer": "odd"},
        {"question": "Is 2 even or odd?", "answer": "even"},
    ]
    two = labeled_demos(TwoStage(), examples)
    assert two == {"query": (), "answer": ()}  # no search_query label; no context in the data
    with_context = [Example(id="c", inputs={"question": "q?", "context": "c."}, labels={"answer": ["a", "b"]})]
    assert labeled_demos(TwoStage(), with_context)["answer"] == (Demo(context="c.", question="q?", answer="a"),)


def _demo(i: int) -> Demo:
    return Demo(question=f"Is {i} even or odd?", answer="even" if i % 2 == 0 else "odd")


def test_demo_set_candidates_cover_empty_labelled_bootstrapped_and_shuffles():
    program = Parity()
    start = Candidate.default(program)
    boot = {"classify": tuple(_demo(i) for i in range(10))}
    lab = {"classify": tuple(_demo(i) for i in range(5, 25))}
    sets = demo_set_candidates(
        program, start=start, bootstrapped=boot, labeled=lab, n_sets=6, max_bootstrapped=4, max_labeled=2,
        rng=random.Random(0),
    )["classify"]  # fmt: skip
    assert len(sets) == 6 and len(set(sets)) == 6
    assert sets[0] == ()  # the start's demos (none), which is also the empty set: listed once
    assert all(d in lab["classify"] for d in sets[1]) and len(sets[1]) == 2  # labelled only
    assert sets[2][:4] == boot["classify"][:4] and len(sets[2]) == 6  # first bootstraps + labelled fill
    for s in sets[3:]:  # shuffled bootstraps of size 1-4, then 2 labelled
        assert 1 <= len(s) - 2 <= 4
        assert all(d in boot["classify"] for d in s[:-2]) and all(d in lab["classify"] for d in s[-2:])
        inputs = [d["question"] for d in s]
        assert len(inputs) == len(set(inputs))  # labelled fill never repeats a bootstrapped input
    again = demo_set_candidates(
        program, start=start, bootstrapped=boot, labeled=lab, n_sets=6, max_bootstrapped=4, max_labeled=2,
        rng=random.Random(0),
    )["classify"]  # fmt: skip
    assert again == sets


def test_demo_sets_fall_back_to_labelled_samples_without_bootstraps():
    program = Parity()
    sets = demo_set_candidates(
        program, start=Candidate.default(program), bootstrapped={}, labeled={"classify": tuple(map(_demo, range(8)))},
        n_sets=5, max_bootstrapped=4, max_labeled=4, rng=random.Random(1),
    )["classify"]  # fmt: skip
    assert len(sets) == 5 and sets[0] == () and all(1 <= len(s) <= 4 for s in sets[1:])


# --------------------------------------------------------------------------- cleaning


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Instruction: Classify the question by answer type.", "Classify the question by answer type."),
        ('**New Instruction:** "Name the answer type."', "Name the answer type."),
        ("Proposed instruction:\n“Read the question, then name its type.”", "Read the question, then name its type."),
        ("```\nYou are an expert. Classify each question.\n```", "You are an expert. Classify each question."),
        ("```python\nClassify the question.\nThe label is one word.", "Classify the question.\nThe label is one word."),
        ("```text\nName the answer type.\n```\nThis keeps it short.", "Name the answer type."),
        ("Classify the question by type.\nQuestion: What is X?\nAnswer: entity", "Classify the question by type."),
        ("Say which category fits best.\n\nExample 1: blah", "Say which category fits best."),
        ("Step 2:\nName the category the answer belongs to.", "Name the category the answer belongs to."),
    ],
)
def test_clean_instruction_strips_wrapping(reply, expected):
    assert clean_instruction(reply, field_labels=["Question", "Answer"]) == (expected, "")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ('Predict("question -> answer")', "code"),
        ("Predict(question) -> description", "code"),
        ("def forward(self):\n    return x", "code"),
        ("", "empty"),
        ('""', "empty"),
        ("Answer: location", "field"),
        ("ok sure", "words"),
        ("word " * 400, "too long"),
        ("Step 4\nno code, no list of fields, no examples, no explanation.", "echoes the proposal prompt"),
        ("Write an instruction about the context for the language model.", "echoes the proposal prompt"),
        ("Frame the task as one where a mistake would be costly.", "echoes the proposal prompt"),
    ],
)
def test_clean_instruction_rejects_what_is_not_an_instruction(reply, reason):
    text, why = clean_instruction(reply, field_labels=["Question", "Answer"])
    assert text is None and reason in why


# --------------------------------------------------------------------------- grounding


async def test_dataset_summary_reads_batches_then_summarizes():
    prompts: list[str] = []

    def proposer(req: Request) -> str:
        prompts.append(req.messages[-1][1])
        n = len(prompts)
        return f"- Observation number {n} about numbers." if n <= 3 else "The data asks about parity of numbers."

    train = [
        Example(id=f"t{i}", inputs={"question": f"Is {i} even or odd?"}, labels={"answer": "odd", "secret": "zzz"})
        for i in range(25)
    ]
    setup, _, pb = make_setup(proposer=proposer, train=train)
    events: list = []
    setup.events = lambda k, d: events.append((k, d))
    log: list = []
    summary = await summarize_dataset(setup, batch_size=10, log=log)
    assert summary == "The data asks about parity of numbers."
    assert len(pb.requests) == 4 and [r.purpose for r in log] == ["dataset_observe"] * 3 + ["dataset_summary"]
    assert "Observation number 1" in prompts[1] and "Observation number 2" in prompts[2]  # earlier ones shown
    assert all("zzz" not in p for p in prompts)  # a label no module produces is not shown
    assert "Answer: odd" in prompts[0]
    assert sum(k == "proposal" for k, _ in events) == 4


@pytest.mark.parametrize(
    "text, why",
    [
        # trec-label seed 0, the 0.5B proposer's summary
        ("The expected output is an entity, location, description, human, number, number, number, number.", "loops"),
        # seed 1: one batch's questions retold as "the data"
        ("The inputs are a question about polymers and the population of Venezuela.", "names what an example"),
        # hotpotqa-500: one training question pasted
        ("The question is about three best sellers from Arthur Hailey released before Donna Tartt was born.", "run of"),
        # trec-label seed 0, with the checks above: short questions quoted whole
        ('The expected outputs are "What is a micron? ", "What are ethics? ".', "copies an example's value"),
    ],
)
def test_a_description_that_loops_or_copies_an_example_is_named_so(text, why):
    examples = [
        "What is the population of Venezuela ?",
        "Name three best sellers from Arthur Hailey released before Donna Tartt was born.",
        "What is a micron ?",
        "entity",
    ]
    assert why in (("loops" if loops(text) else "") or copies_examples(text, examples, allowed=["Question"]))


def test_a_run_of_five_words_from_an_example_is_a_copy_and_four_are_not():
    source = ["Name three best sellers from Arthur Hailey."]
    assert copies_run("List the three best sellers from Arthur, please.", source)
    assert not copies_run("List three best sellers from a novelist.", source)
    assert not copies_run("Name three best sellers from Arthur Hailey.", [])


@pytest.mark.parametrize(
    "text",
    [
        "The inputs are questions about a specific topic. The outputs are an entity, a description or a number.",
        "Each Question asks about a person, a place or a date; the Answer is a short phrase.",  # field labels
        "Questions ask for a number, a number range or a date.",
    ],
)
def test_a_general_description_is_neither_a_loop_nor_a_copy(text):
    examples = ["What is the population of Venezuela ?", "Who was the first Question Master ?"]
    assert not loops(text)
    assert copies_examples(text, examples, allowed=["question Question", "answer Answer"]) == ""


async def test_observations_and_a_summary_that_copy_an_example_are_dropped():
    replies = iter(
        [
            "- The questions ask whether a number is even or odd.\n- One asks: Is 7 even or odd? Tell me, Sherlock.",
            "- answers are odd odd odd odd",
            "- Answers are single words.",
            "The data asks about Sherlock and numbers.",  # the summary names what an example holds
        ]
    )
    train = [Example(id=f"t{i}", inputs={"question": f"Is {i} even or odd? Tell me, Sherlock."},
                     labels={"answer": "odd"}) for i in range(25)]  # fmt: skip
    setup, _, _ = make_setup(proposer=lambda req: next(replies), train=train)
    log: list = []
    summary = await summarize_dataset(setup, batch_size=10, log=log)
    assert summary == "The questions ask whether a number is even or odd. Answers are single words."
    assert "1 of 2 observations dropped" in log[0].note and "every observation" in log[1].note
    assert log[3].note.startswith("summary names what an example holds (Sherlock)")


async def test_program_description_reads_the_source_and_each_modules_role():
    def proposer(req: Request) -> str:
        p = req.messages[-1][1]
        if "source code" in p:
            assert "class TwoStage(Program)" in p and "facts about" in p
            return "It writes a query, looks facts up, then answers from them."
        return "x"  # unusable role descriptions: replaced from the signatures

    setup, _, pb = make_setup(proposer=proposer, program=TwoStage())
    log: list = []
    desc = await describe_program(setup, log=log)
    assert desc.program == "It writes a query, looks facts up, then answers from them."
    assert set(desc.modules) == {"query", "answer"} and "search_query" in desc.modules["query"]
    assert len(pb.requests) == 3 and "unusable" in log[1].note


async def test_a_program_description_that_retells_the_code_is_replaced_from_the_signatures():
    def proposer(req: Request) -> str:
        if "source code" in req.messages[-1][1]:
            return "1. It initializes a `Predict` object with a given signature and an instruction. 2. It calls it."
        return "It writes the query that finds the facts."

    setup, _, _ = make_setup(proposer=proposer, program=TwoStage())
    log: list = []
    desc = await describe_program(setup, log=log)
    assert desc.program.startswith("A program with the language-model steps") and "initializes" not in desc.program
    assert "unusable" in log[0].note


# --------------------------------------------------------------------------- instruction proposals


def test_proposal_prompt_shows_exactly_the_chosen_grounding_tip_and_history():
    setup, _, _ = make_setup()
    g = Grounding("DATA-SUMMARY numbers", "PROGRAM-DESC one step", {"classify": "ROLE-DESC answers"})
    proposer = InstructionProposer(setup, g)
    demos = [_demo(2)]
    full = proposer.prompt("classify", "Answer.", ProposalOptions(tip="persona"), demos=demos)
    for part in ("DATA-SUMMARY", "PROGRAM-DESC", "ROLE-DESC", "Is 2 even or odd?", TIPS["persona"].strip()):
        assert part in full
    bare = proposer.prompt(
        "classify", "Answer.", ProposalOptions(use_dataset=False, use_program=False, use_demos=False), demos=demos
    )
    for part in ("DATA-SUMMARY", "PROGRAM-DESC", "ROLE-DESC", "Is 2 even or odd?"):
        assert part not in bare
    hist = proposer.prompt("classify", "Answer.", ProposalOptions(), history=[("best one", 0.9), ("worst one", 0.1)])
    assert hist.index("[score 10] worst one") < hist.index("[score 90] best one")


def test_history_keeps_the_best_score_per_instruction_best_last():
    text = format_history([("a", 0.2), ("b", 0.5), ("A", 0.7), ("c", 0.1)], limit=2)
    assert text.splitlines() == ["[score 50] b", "[score 70] A"]


async def test_proposals_are_sampled_distinctly_cleaned_retried_and_all_recorded():
    setup, _, pb = make_setup(proposer=proposer_answer)
    events: list = []
    setup.events = lambda k, d: events.append((k, d))
    proposer = InstructionProposer(setup, Grounding(), max_attempts=3)
    opts = [ProposalOptions(tip=t, temperature=0.9) for t in ("none", "creative", "simple", "persona")]
    found = await proposer.propose_many("classify", "Answer the question.", opts)
    reqs = pb.requests
    assert all(r.temperature == 0.9 for r in reqs)
    assert len({(r.messages, r.sample_index) for r in reqs}) == len(reqs)  # every sample distinct
    # sample i -> PROPOSALS[i % 5]; proposal k draws index 3k + round: k=2 first gets 6 (code, rejected),
    # then 7; results are in proposal order whatever the round
    assert found == [
        "Decide the parity of the number: even or odd.",
        "Consider the number and say whether it is even or odd.",
        "Reply with one word about the number given to you.",
        "Think about it carefully and reply now please.",
    ]
    assert [r.sample_index for r in proposer.log] == [0, 3, 6, 9, 7]
    assert len(proposer.log) == len(reqs) == sum(k == "proposal" for k, _ in events)
    rejected = [r for r in proposer.log if r.kept is None]
    assert rejected and all(r.note for r in rejected)
    again, _, _ = make_setup(proposer=proposer_answer)
    replay = InstructionProposer(again, Grounding(), max_attempts=3)
    assert await replay.propose_many("classify", "Answer the question.", opts) == found


async def test_a_proposal_that_describes_the_program_step_is_rejected():
    replies = iter(['Step "classify" receives a question. It must produce an answer.', "Name the parity, even or odd."])
    setup, _, _ = make_setup(proposer=lambda req: next(replies))
    proposer = InstructionProposer(setup, Grounding(), max_attempts=2)
    text = await proposer.propose_one("classify", "Answer.", ProposalOptions(), sample_base=0)
    assert text == "Name the parity, even or odd."
    assert "describes the program step" in proposer.log[0].note


async def test_a_proposal_that_pastes_the_role_of_the_step_is_rejected():
    # as a 1.5B proposer did in a HotPotQA run: the step's role description pasted, then one sentence
    pasted = (
        "The classify step receives the question as input. It must produce the answer based on the number "
        "given. The answer should be one word."
    )
    role_phrase = "Reply with one word. This helps the program reach a right final answer."
    replies = iter([pasted, role_phrase, "Name the parity, even or odd."])
    setup, _, _ = make_setup(proposer=lambda req: next(replies))
    proposer = InstructionProposer(setup, Grounding(), max_attempts=3)
    text = await proposer.propose_one("classify", "Answer.", ProposalOptions(), sample_base=0)
    assert text == "Name the parity, even or odd."
    assert "describes the program step" in proposer.log[0].note
    assert "echoes the proposal prompt" in proposer.log[1].note


def test_naming_the_step_word_in_another_sense_is_not_a_step_description():
    from prompthone.optimize.proposers.instructions import _describes_step

    assert not _describes_step("Give the answer in one step, without explanation.", "answer")
    assert not _describes_step("Classify the next step of the recipe.", "classify")
    assert _describes_step('The "answer" step must give a name.', "answer")
    assert _describes_step("THE ANSWER STEP receives the context.", "answer")


async def test_a_proposal_that_pastes_a_shown_demo_is_rejected():
    demo = Demo(question="What year did The Chronicle of Philanthropy's publishing overlap with Antic?", answer="1988")
    replies = iter(
        ["Answer The Chronicle of Philanthropy's publishing overlap with Antic is with Antic.", "Name the year asked."]
    )
    setup, _, _ = make_setup(proposer=lambda req: next(replies))
    proposer = InstructionProposer(setup, Grounding(), max_attempts=2)
    text = await proposer.propose_one("classify", "Answer.", ProposalOptions(), sample_base=0, demos=[demo])
    assert text == "Name the year asked."
    assert proposer.log[0].kept is None and "copies text from an example" in proposer.log[0].note
    # the same reply is fine when no demo was shown (nothing to copy from)
    replies = iter(["Answer The Chronicle of Philanthropy's publishing overlap with Antic is with Antic."])
    setup, _, _ = make_setup(proposer=lambda req: next(replies))
    text = await InstructionProposer(setup, Grounding()).propose_one(
        "classify", "Answer.", ProposalOptions(), sample_base=0
    )
    assert text is not None and text.startswith("Answer The Chronicle")


def test_proposal_options_need_a_known_tip_and_a_positive_temperature():
    with pytest.raises(ValueError, match="unknown tip"):
        ProposalOptions(tip="shout")
    with pytest.raises(ValueError, match="temperature"):
        ProposalOptions(temperature=0.0)
