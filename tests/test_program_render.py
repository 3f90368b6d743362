"""Rendering: instruction, field list and reply format in the system message; demos as turns; inputs last."""

import json

import pytest

from prompthone.program import ChainOfThought, Demo, Placeholder, PromptParams, Signature, render_messages
from prompthone.program.render import check_inputs, output_schema

SIG = Signature(
    inputs={"question": "a grade-school math problem"},
    outputs={"answer": "the final number, digits only"},
)
PARAMS = PromptParams(
    "Solve the problem.",
    (Demo(question="2+2?", answer="4"), Demo(question="3*3?", answer="9")),
)


def test_messages_are_system_then_demo_pairs_then_the_inputs():
    msgs = render_messages(SIG, PARAMS, {"question": "5+6?"})
    assert [m["role"] for m in msgs] == ["system", "user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == "Question: 2+2?"
    assert msgs[2]["content"] == "Answer: 4"
    assert msgs[3]["content"] == "Question: 3*3?"
    assert msgs[4]["content"] == "Answer: 9"
    assert msgs[5]["content"] == "Question: 5+6?"


def test_system_message_has_instruction_fields_and_reply_format():
    system = render_messages(SIG, PARAMS, {"question": "x"})[0]["content"]
    assert system.startswith("Solve the problem.\n\n")
    assert "- Question: a grade-school math problem" in system
    assert "- Answer: the final number, digits only" in system
    assert system.rstrip().endswith("Answer: ...")


def test_format_notes_stay_out_of_the_answer_slot():
    msgs = render_messages(SIG, PARAMS, {"question": "5+6?"})
    template_line = msgs[0]["content"].rstrip().splitlines()[-1]
    assert "digits only" not in template_line  # the description is in the field list, not the template
    assert msgs[-1]["role"] == "user"  # nothing pre-fills the assistant's answer
    assert msgs[-1]["content"] == "Question: 5+6?"  # and the last turn carries no format note
    for demo_reply in (msgs[2]["content"], msgs[4]["content"]):
        assert "digits only" not in demo_reply and "..." not in demo_reply


def test_reply_format_lists_outputs_in_order():
    cot = ChainOfThought("question -> answer")
    system = render_messages(cot.signature, cot.params, {"question": "q"})[0]["content"]
    assert system.rstrip().endswith("Reasoning: ...\nAnswer: ...")


def test_multiline_and_list_inputs_start_on_their_own_line():
    sig = Signature.parse("context, question -> answer")
    msgs = render_messages(sig, PromptParams("i"), {"context": ["p one", "p two"], "question": "q?"})
    assert msgs[-1]["content"] == "Context:\n[1] p one\n[2] p two\nQuestion: q?"


def test_demo_fields_missing_are_left_out_and_extras_ignored():
    cot = ChainOfThought("question -> answer")
    params = PromptParams(
        "i",
        (
            Demo(question="1+1?", reasoning="one and one", answer="2", source="train"),
            Demo(question="2+2?", answer="4"),
        ),
    )
    msgs = render_messages(cot.signature, params, {"question": "q"})
    assert msgs[2]["content"] == "Reasoning: one and one\nAnswer: 2"
    assert msgs[4]["content"] == "Answer: 4"
    assert "train" not in "".join(m["content"] for m in msgs)


def test_a_demo_without_outputs_or_inputs_is_an_error():
    with pytest.raises(ValueError, match="demo 0 has none of the output fields"):
        render_messages(SIG, PromptParams("i", (Demo(question="q"),)), {"question": "x"})
    with pytest.raises(ValueError, match="demo 0 has none of the input fields"):
        render_messages(SIG, PromptParams("i", (Demo(answer="a"),)), {"question": "x"})


def test_placeholders_render_as_braces():
    msgs = render_messages(SIG, PromptParams("i"), {"question": Placeholder("question")})
    assert msgs[-1]["content"] == "Question: {question}"


def test_structured_mode_asks_for_json_and_shows_json_demos():
    msgs = render_messages(SIG, PARAMS, {"question": "5+6?"}, structured=True)
    assert 'one JSON object with these string keys, in this order: "answer"' in msgs[0]["content"]
    assert "Answer: ..." not in msgs[0]["content"]
    assert json.loads(msgs[2]["content"]) == {"answer": "4"}


def test_output_schema_lists_outputs_in_order_as_required_strings():
    cot = ChainOfThought(SIG)
    schema = output_schema(cot.signature)
    assert list(schema["properties"]) == ["reasoning", "answer"]
    assert schema["required"] == ["reasoning", "answer"]
    answer = schema["properties"]["answer"]
    assert answer == {"type": "string", "description": "the final number, digits only"}
    assert schema["additionalProperties"] is False


def test_check_inputs_names_missing_and_unexpected_fields():
    expected = r"missing input\(s\) \['question'\]; unexpected input\(s\) \['qestion'\]"
    with pytest.raises(TypeError, match=expected):
        check_inputs(SIG, {"qestion": "x"}, where="module 'answer'")


def test_a_chain_of_thought_asks_for_reasoning_by_its_place_and_a_users_reasoning_field_keeps_its_words():
    """The reasoning field is listed before the answer with no description of its own (as DSPy renders
    it); a signature that has a `reasoning` output keeps the words its author gave it."""
    plain = ChainOfThought(SIG)
    system = render_messages(plain.signature, plain.params.with_format("labels"), {"question": "5+6?"})[0]["content"]
    assert "- Reasoning\n- Answer: the final number, digits only" in system
    assert system.index("Reasoning: ...") < system.index("Answer: ...")
    worded = Signature({"question": ""}, {"reasoning": "show each calculation", "answer": "the final number"})
    module = ChainOfThought(worded)
    assert [(f.name, f.description) for f in module.signature.outputs] == [
        ("reasoning", "show each calculation"),
        ("answer", "the final number"),
    ]
    system = render_messages(module.signature, module.params.with_format("labels"), {"question": "5+6?"})[0]["content"]
    assert "- Reasoning: show each calculation" in system
