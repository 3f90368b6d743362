"""Signatures and modules: construction, shorthand parsing, validation errors."""

import pytest

from prompthone.program import ChainOfThought, Predict, Signature, SignatureError
from prompthone.program.signature import as_signature


def test_shorthand_parses_inputs_and_outputs_in_order():
    sig = Signature.parse("context, question -> reasoning, answer", instruction="Answer it.")
    assert sig.input_names == ("context", "question")
    assert sig.output_names == ("reasoning", "answer")
    assert sig.instruction == "Answer it."
    assert sig.shorthand() == "context, question -> reasoning, answer"


def test_constructor_keeps_descriptions():
    sig = Signature(inputs={"question": "a grade-school problem"}, outputs={"answer": "a number"})
    assert [(f.name, f.description) for f in sig.inputs] == [("question", "a grade-school problem")]
    assert [(f.name, f.description, f.label) for f in sig.outputs] == [("answer", "a number", "Answer")]


def test_default_instruction_names_the_fields():
    sig = Signature.parse("question -> answer")
    assert "`question`" in sig.instruction and "`answer`" in sig.instruction


def test_labels_keep_acronyms_and_split_underscores():
    sig = Signature.parse("HTML_text -> search_query")
    assert sig.inputs[0].label == "HTML Text"
    assert sig.outputs[0].label == "Search Query"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("question answer", "expected one '->'"),
        ("a -> b -> c", "expected one '->'"),
        ("question ->", "no output field"),
        ("my question -> answer", "not a valid identifier"),
        ("class -> answer", "not a valid identifier"),
        ("question -> question", "both an input and an output"),
        ("question, question -> answer", "listed twice"),
        ("question -> answer, Answer", "clashes with output field 'answer'"),
        ("search_query -> searchquery", "clashes with input field 'search_query'"),
        ("a, -> b", "not a valid identifier"),
    ],
)
def test_invalid_shorthand_says_what_is_wrong(text, message):
    with pytest.raises(SignatureError, match=message):
        Signature.parse(text)


def test_a_signature_needs_an_output():
    with pytest.raises(SignatureError, match="at least one output"):
        Signature(inputs={"question": ""}, outputs={})


def test_instruction_must_be_text():
    with pytest.raises(SignatureError, match="instruction must be a string"):
        Signature(["q"], ["a"], instruction=3)  # type: ignore[arg-type]


def test_signature_is_immutable_and_hashable():
    a, b = Signature.parse("q -> a"), Signature.parse("q -> a")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    with pytest.raises(AttributeError):
        a.instruction = "x"  # type: ignore[misc]
    assert a != a.with_instruction("different")


def test_as_signature_rejects_other_types():
    with pytest.raises(SignatureError, match="expected a Signature or a string"):
        as_signature(42)  # type: ignore[arg-type]


def test_chain_of_thought_puts_reasoning_first():
    cot = ChainOfThought("question -> answer")
    assert cot.signature.output_names == ("reasoning", "answer")
    assert cot.optional_outputs == ("reasoning",)
    plain = Predict("question -> answer")
    assert plain.signature.output_names == ("answer",)


def test_module_owns_default_params():
    m = Predict("question -> answer", instruction="Be brief.", demos=[{"question": "1+1", "answer": "2"}])
    assert m.params.instruction == "Be brief."
    assert [dict(d) for d in m.params.demos] == [{"question": "1+1", "answer": "2"}]
    default = Predict("question -> answer").params.instruction
    assert default == Signature.parse("question -> answer").instruction


def test_module_rejects_unknown_lm_options():
    with pytest.raises(TypeError, match=r"unknown LM option\(s\) \['temp'\]"):
        Predict("q -> a", temp=0.3)
