"""The fake-model helpers read every prompt format and reply in it, so fakes test whatever format is the default."""

import pytest

from prompthone.program import ChainOfThought, Demo, Predict, PromptParams, parse_reply, render_messages
from prompthone.program.params import PROMPT_FORMATS
from prompthone.testing.replies import instruction_of, reply_layout, without_reminder, write_reply

QA = Predict("question, context -> answer, source").signature
COT = ChainOfThought("question -> answer").signature


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
@pytest.mark.parametrize("structured", [False, True])
def test_a_reply_written_for_the_prompt_parses_back_in_its_format(fmt, structured):
    params = PromptParams("Answer from the context.\n\nCite it.", (Demo(question="a", answer="b"),), format=fmt)
    msgs = render_messages(QA, params, {"question": "Who?", "context": "x"}, structured=structured)
    system = msgs[0]["content"]
    reply = write_reply(system, {"Answer": "Ann", "source": "x: line 2"})
    parsed = parse_reply(QA, reply, format=fmt, structured=structured)
    assert parsed.ok and parsed.values == {"answer": "Ann", "source": "x: line 2"}
    assert set(parsed.how.values()) == ({"json"} if structured or fmt == "json" else {"label"})
    assert instruction_of(system) == "Answer from the context.\n\nCite it."
    tagged = fmt == "tags" and not structured
    inputs = "<question>Who?</question>\n<context>x</context>" if tagged else "Question: Who?\nContext: x"
    assert without_reminder(msgs[-1]["content"]) == inputs


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
def test_fields_missing_from_the_values_get_the_filler_or_are_left_out(fmt):
    system = render_messages(COT, PromptParams("Solve.", format=fmt), {"question": "1+1?"})[0]["content"]
    assert [label.lower() for label in reply_layout(system)[1]] == ["reasoning", "answer"]
    filled = parse_reply(COT, write_reply(system, {"answer": "2"}, filler="adding"), format=fmt)
    assert filled.values == {"reasoning": "adding", "answer": "2"}
    bare = parse_reply(COT, write_reply(system, {"answer": "2"}), format=fmt, optional=("reasoning",))
    assert bare.ok and bare.values == {"reasoning": "", "answer": "2"}


def test_the_instruction_is_found_wherever_it_is_not():
    for fmt in PROMPT_FORMATS:
        system = render_messages(QA, PromptParams("", format=fmt), {"question": "q", "context": "c"})[0]["content"]
        assert instruction_of(system) == ""
        moved = PromptParams("Be brief.", format=fmt, position="question_end")
        system = render_messages(QA, moved, {"question": "q", "context": "c"})[0]["content"]
        assert instruction_of(system) == ""
    no_inputs = Predict("-> answer", instruction="Say hi.").signature
    system = render_messages(no_inputs, PromptParams("Say hi."), {})[0]["content"]
    assert instruction_of(system) == "Say hi."


def test_only_the_closing_reminder_is_cut_from_a_user_turn():
    user = render_messages(QA, PromptParams("i", format="json"), {"question": "Reply with a word.", "context": "c"})
    assert without_reminder(user[-1]["content"]) == "Question: Reply with a word.\nContext: c"
    assert without_reminder("Question: q") == "Question: q"
