"""Prompt formats: each is a render + parse pair, chosen per module and carried by candidates and exports."""

import asyncio
import json

import pytest

from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.program import (
    Candidate,
    ChainOfThought,
    Demo,
    Predict,
    PromptParams,
    Signature,
    as_program,
    parse_reply,
    render_messages,
    run_program,
)
from prompthone.program.params import DEFAULT_FORMAT, PROMPT_FORMATS
from prompthone.runs.export import load_exported, messages_document, program_document
from prompthone.testing.replies import write_reply

LABELS = "one of: abbreviation, description, entity, human, location, number"
TREC = Signature({"question": ""}, {"label": LABELS}, "Classify the question by the type of answer it expects.")
COT = ChainOfThought(Signature({"question": "a word problem"}, {"answer": "a number only"}, "Solve it.")).signature
MULTI_LINE_DEMOS = (
    Demo(question="Tom has 3 apples.\nHe eats one.", reasoning="3 apples.\nOne eaten:\n\n3 - 1 = 2", answer="2"),
    Demo(question="What is 6 * 7?", reasoning="Six sevens.\nThat is 42.", answer="42"),
    Demo(question="Add 1 and 1.", reasoning="1 + 1 = 2", answer="2\n(two)"),
)


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
def test_every_demo_reply_parses_back_to_its_outputs(fmt):
    """Round trip: what a format writes as a demo's reply, its parser reads back exactly (multi-line too)."""
    msgs = render_messages(COT, PromptParams("Solve it.", MULTI_LINE_DEMOS, format=fmt), {"question": "q"})
    replies = [m["content"] for m in msgs if m["role"] == "assistant"]
    assert len(replies) == len(MULTI_LINE_DEMOS)
    for demo, reply in zip(MULTI_LINE_DEMOS, replies, strict=True):
        parsed = parse_reply(COT, reply, format=fmt, optional=("reasoning",))
        assert parsed.ok, parsed.failure
        assert parsed.values == {"reasoning": demo["reasoning"], "answer": demo["answer"]}


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
def test_every_demo_input_is_in_its_user_turn_and_the_inputs_come_last(fmt):
    msgs = render_messages(COT, PromptParams("Solve it.", MULTI_LINE_DEMOS, format=fmt), {"question": "Is 2 > 1?"})
    assert [m["role"] for m in msgs] == ["system"] + ["user", "assistant"] * 3 + ["user"]
    for demo, turn in zip(MULTI_LINE_DEMOS, msgs[1:-1:2], strict=True):
        assert demo["question"] in turn["content"]
    assert "Is 2 > 1?" in msgs[-1]["content"]


def test_labels_is_the_layout_there_was_before_formats():
    msgs = render_messages(TREC, PromptParams(TREC.instruction, format="labels"), {"question": "Who wrote it?"})
    assert msgs[0]["content"].startswith(TREC.instruction)
    assert msgs[-1]["content"] == "Question: Who wrote it?"
    plain = render_messages(TREC, PromptParams(TREC.instruction), {"question": "x"})
    assert plain == [msgs[0], {"role": "user", "content": "Question: x"}]
    assert Predict(TREC).format == DEFAULT_FORMAT


def test_a_predict_starts_in_json_a_chain_of_thought_in_labels_and_an_explicit_format_wins():
    assert Predict(TREC).format == "json" and Predict(TREC).params.format == "json"
    assert ChainOfThought(TREC).format == "labels"
    assert Predict(TREC, format="labels").format == "labels" and ChainOfThought(TREC, format="json").format == "json"
    assert Candidate.default(as_program(Predict(TREC)))["predict"].format == "json"
    # the default module asks for JSON and reads a JSON reply as JSON, not through the fallback
    seen = []

    def respond(request):
        seen.append(request.messages)
        return write_reply(request.messages[0][1], {"label": "human"})

    run = asyncio.run(run_program(Predict(TREC), {"question": "Who?"}, lm=LM(ScriptedBackend(respond), cache=False)))
    assert (
        seen[0][-1][1]
        == f'Question: Who?\n\nReply with one JSON object with the keys "label", where "label" is {LABELS}.'
    )
    assert run.outputs == {"label": "human"} and run.trace[0].parsed_how == {"label": "json"}


@pytest.mark.parametrize("fmt", ["recap", "tags", "json"])
def test_new_formats_put_the_instruction_last_and_remind_of_the_outputs_in_the_last_turn_only(fmt):
    demo = Demo(question="Who wrote Hamlet?", label="human")
    zero_shot = render_messages(TREC, PromptParams(TREC.instruction, format=fmt), {"question": "Where is Rome?"})
    msgs = render_messages(TREC, PromptParams(TREC.instruction, (demo,), format=fmt), {"question": "Where is Rome?"})
    for chat in (zero_shot, msgs):
        assert chat[0]["content"].rstrip().endswith(TREC.instruction)
        assert "Reply with" in chat[-1]["content"]
    assert "Reply with" not in msgs[1]["content"]
    # zero-shot, the allowed labels are the last thing the model reads, after the inputs
    last = zero_shot[-1]["content"]
    assert last.index("Where is Rome?") < last.index(LABELS) and len(last) - last.index(LABELS) - len(LABELS) <= 2
    # behind demos, which show what a label looks like, the reminder names the output without them
    with_demos = msgs[-1]["content"]
    assert LABELS not in with_demos and with_demos.index("Where is Rome?") < with_demos.index("Reply with")
    assert with_demos == last.replace(f" ({LABELS})", "").replace(f', where "label" is {LABELS}', "")


def test_the_reminder_names_every_output_in_order():
    msgs = render_messages(COT, PromptParams("Solve it.", format="recap"), {"question": "q"})
    last = msgs[-1]["content"]
    assert last.index("`Reasoning:`") < last.index("`Answer:` (a number only)")
    tags = render_messages(COT, PromptParams("Solve it.", format="tags"), {"question": "q"})[-1]["content"]
    assert tags.index("<reasoning>") < tags.index("<answer>")
    as_json = render_messages(COT, PromptParams("Solve it.", format="json"), {"question": "q"})[-1]["content"]
    assert '"reasoning", "answer"' in as_json and '"answer" is a number only' in as_json


def test_a_question_end_instruction_comes_before_the_reminder():
    params = PromptParams("Be brief.", position="question_end", format="recap")
    last = render_messages(TREC, params, {"question": "q?"})[-1]["content"]
    assert last.index("q?") < last.index("Be brief.") < last.index("Reply with")


def test_tags_wrap_values_and_put_multi_line_ones_on_lines_of_their_own():
    params = PromptParams("i", (Demo(question="a\nb", label="human"),), format="tags")
    msgs = render_messages(TREC, params, {"question": "c"})
    assert msgs[1]["content"] == "<question>\na\nb\n</question>"
    assert msgs[2]["content"] == "<label>human</label>"
    assert msgs[-1]["content"].startswith("<question>c</question>\n\n")


@pytest.mark.parametrize(
    ("reply", "label"),
    [
        ("<label>human</label>", "human"),
        ("<label>human</label> because it asks for a person", "human"),  # chatter after the marker
        ("Sure!\n<label>\nlocation\n</label>", "location"),
        ("<LABEL>number", "number"),  # no closing marker, other case
        ("Label: entity", "entity"),  # no markers: the label rules
        ("description", "description"),  # the whole reply
        ("<label>human</label>\n<question>Who else?</question>\n<label>entity</label>", "human"),  # made-up turn
    ],
)
def test_tags_replies_small_models_write(reply, label):
    parsed = parse_reply(TREC, reply, format="tags")
    assert parsed.ok and parsed.values["label"] == label


def test_a_tags_failure_keeps_the_models_own_text():
    sig = Signature.parse("question -> reasoning, answer")
    parsed = parse_reply(sig, "<reasoning>thinking</reasoning>", format="tags")
    assert not parsed.ok and parsed.failure.raw == "<reasoning>thinking</reasoning>"
    assert parsed.failure.missing == ("answer",)


@pytest.mark.parametrize(
    "reply",
    [
        '{"label": "human"}',
        '```json\n{"label": "human"}\n```',
        'Here: {"Label": "human"} done',
        "Label: human",
        '{"label": "human"}\nIt asks for a {person}.',  # braces in the chatter after the object
        '{"label": "human"}\n\nQuestion: Where?\n{"label": "location"}',  # a made-up next turn: the first wins
        'Sure! {"label": "human"} (note: {"x": 1})',
        '{"note": {"a": 1}}\n{"label": "human"}',  # an object that is not the reply, then the reply
        '```json\n{"label": "human"}\n```\n```json\n{"label": "entity"}\n```',
        # not decodable: cut off at max_tokens (the 0.5B model pretty-prints), or malformed
        '{\n  "label": "human"\n',
        '```json\n{\n  "label": "human"',
        '{"label": "human", "why": "it asks for a per',
        '{"label": "human",}',
        "{'label': 'human'}",  # a Python dict
    ],
)
def test_json_replies(reply):
    parsed = parse_reply(TREC, reply, format="json")
    assert parsed.ok and parsed.values == {"label": "human"}


def test_a_json_reply_that_does_not_decode_is_read_by_its_pairs():
    sig = Signature.parse("question -> reasoning, answer")
    cut = parse_reply(sig, '{"reasoning": "6 * 7 = \\"42\\"\nso", "answer": 42', format="json", truncated=True)
    assert cut.ok and cut.values == {"reasoning": '6 * 7 = "42"\nso', "answer": "42"}
    assert cut.how == {"reasoning": "json-pairs", "answer": "json-pairs"}
    half = parse_reply(sig, '{"reasoning": "thinking about it', format="json", truncated=True)
    assert not half.ok and half.failure.missing == ("answer",) and half.values == {"reasoning": "thinking about it"}
    assert "cut off at max_tokens" in half.failure.reason
    assert parse_reply(TREC, '{"answer": "human"', format="json").failure.missing == ("label",)


def test_an_unknown_format_is_refused_everywhere_with_the_choices():
    with pytest.raises(ValueError, match=r"prompt format must be one of \['labels', 'recap', 'tags', 'json'\]"):
        PromptParams("i", format="xml")
    with pytest.raises(ValueError, match="format must be one of"):
        Predict("question -> answer", format="yaml")
    with pytest.raises(ValueError, match="format must be one of"):
        parse_reply(TREC, "x", format="yaml")


def test_format_is_part_of_params_candidates_and_their_hash():
    base = PromptParams("i", (Demo(question="q", label="human"),))
    assert base.to_dict() == {"instruction": "i", "demos": [{"question": "q", "label": "human"}]}  # legacy hash kept
    tags = base.with_format("tags")
    assert tags.to_dict()["format"] == "tags"
    assert PromptParams.from_dict(tags.to_dict()) == tags
    assert PromptParams.from_dict({"instruction": "i"}).format == "labels"
    assert tags.with_instruction("j").format == "tags" and tags.with_demos(()).format == "tags"
    assert tags.with_position("question_end").format == "tags"
    one, other = Candidate({"m": base}), Candidate({"m": tags})
    assert one.hash != other.hash
    assert Candidate.from_json(other.to_json()) == other


def test_a_module_chooses_its_format_and_a_call_renders_and_parses_in_it():
    module = Predict(TREC, format="tags")
    assert module.format == "tags" and module.params.format == "tags"
    seen = []

    def respond(request):
        seen.append(request.messages)
        return "<label>human</label> as it asks who"

    lm = LM(ScriptedBackend(respond), cache=False)
    run = asyncio.run(run_program(module, {"question": "Who wrote Hamlet?"}, lm=lm))
    assert run.outputs == {"label": "human"}
    assert seen[0][-1][1].startswith("<question>Who wrote Hamlet?</question>")
    module.format = "json"
    assert module.params.format == "json" and module.params.instruction == TREC.instruction


def test_a_candidate_overrides_the_modules_format():
    module = Predict(TREC)
    seen = []
    (name,) = Candidate.default(as_program(module))
    candidate = Candidate({name: module.params.with_format("tags")})
    lm = LM(ScriptedBackend(lambda r: seen.append(r.messages) or "<label>number</label>"), cache=False)
    run = asyncio.run(run_program(module, {"question": "How many?"}, lm=lm, candidate=candidate))
    assert module.format == "json" and run.outputs == {"label": "number"}
    assert seen[0][-1][1].startswith("<question>How many?</question>") and "JSON" not in seen[0][0][1]


def test_exports_carry_the_format():
    module = Predict(TREC, format="recap")
    doc = program_document(module)
    (entry,) = doc["modules"].values()
    assert entry["prompt_format"] == "recap"
    messages = messages_document(module)
    (m_entry,) = messages["modules"].values()
    assert m_entry["prompt_format"] == "recap" and "label" in m_entry["reply"]
    assert LABELS in m_entry["messages"][-1]["content"].split("{question}")[1]
    json.dumps(messages)


def test_an_exported_format_loads_back(tmp_path):
    module = Predict(TREC, format="tags")
    path = tmp_path / "p.json"
    path.write_text(json.dumps(program_document(module)))
    candidate = load_exported(path, module)
    assert candidate == Candidate.default(as_program(module))
    assert next(iter(candidate.values())).format == "tags"
