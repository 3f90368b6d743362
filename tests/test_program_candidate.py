"""Programs list their prompts; candidates are immutable, content-hashed, JSON round-trippable values."""

import json
import os
import subprocess
import sys

import pytest

from prompthone.program import (
    Candidate,
    CandidateError,
    ChainOfThought,
    Demo,
    Predict,
    Program,
    PromptParams,
)


class Retriever(Program):
    def __init__(self):
        self.query = Predict("question -> query", instruction="Write a search query.")

    def forward(self, question):
        return self.query(question=question)


class TwoStage(Program):
    def __init__(self):
        self.retrieve = Retriever()
        self.stages = [Predict("question -> draft"), Predict("draft -> summary")]
        self.answer = ChainOfThought("question, context -> answer", instruction="Answer from the context.")
        self.not_a_module = "ignored"

    def forward(self, question):
        return {}


def test_named_prompts_walks_nested_programs_and_lists_in_order():
    prog = TwoStage()
    prompts = prog.named_prompts()
    assert list(prompts) == ["retrieve.query", "stages.0", "stages.1", "answer"]
    assert prompts["retrieve.query"] == PromptParams("Write a search query.", format="json")  # a Predict's start
    assert prompts["answer"] == PromptParams("Answer from the context.", format="labels")  # a ChainOfThought's
    assert prog.named_modules()["stages.1"] is prog.stages[1]


def test_a_module_reachable_twice_is_listed_once():
    class Shared(Program):
        def __init__(self):
            self.a = Predict("q -> a")
            self.again = [self.a]

        def forward(self, q):
            return {}

    assert list(Shared().named_prompts()) == ["a"]


def _candidate(instruction: str = "Solve it.") -> Candidate:
    return Candidate(
        {
            "query": PromptParams(instruction, (Demo(question="2+2?", answer="4"),)),
            "answer": PromptParams("Answer.", ()),
        }
    )


def test_candidate_is_immutable():
    c = _candidate()
    with pytest.raises(AttributeError):
        c.x = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        c["query"] = PromptParams("other")  # type: ignore[index]
    with pytest.raises(AttributeError):
        c["query"].demos[0].question = "5"  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        c["query"].demos[0]["question"] = "5"  # type: ignore[index]


def test_with_module_returns_a_new_candidate_and_leaves_the_old_one():
    c = _candidate()
    d = c.with_module("answer", PromptParams("Answer tersely."))
    assert c["answer"].instruction == "Answer."
    assert d["answer"].instruction == "Answer tersely."
    assert d["query"] is c["query"]
    assert c.hash != d.hash
    with pytest.raises(CandidateError, match="did you mean 'answer'"):
        c.with_module("answr", PromptParams("x"))


def test_hash_depends_on_content_only():
    a, b = _candidate(), _candidate()
    assert a is not b and a == b and a.hash == b.hash and hash(a) == hash(b)
    assert len({a, b}) == 1
    reordered = Candidate({"answer": a["answer"], "query": a["query"]})
    assert reordered.hash == a.hash
    assert _candidate("Solve it!").hash != a.hash
    demo_order = Candidate(
        {"query": PromptParams("Solve it.", (Demo(answer="4", question="2+2?"),)), "answer": a["answer"]}
    )
    assert demo_order.hash == a.hash  # field order inside a demo is not content
    assert len(a.hash) == 64 and int(a.hash, 16) >= 0


def test_hash_is_stable_across_processes():
    code = (
        "from prompthone.program import Candidate, PromptParams, Demo\n"
        "c = Candidate({'query': PromptParams('Solve it.', (Demo(question='2+2?', answer='4'),)),"
        " 'answer': PromptParams('Answer.', ())})\n"
        "print(c.hash)"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert out.stdout.strip() == _candidate().hash


def test_json_round_trip():
    c = _candidate()
    again = Candidate.from_json(c.to_json())
    assert again == c and again.hash == c.hash
    assert Candidate.from_json(c.to_json(indent=2)) == c
    data = json.loads(c.to_json())
    assert data["modules"]["query"]["demos"] == [{"answer": "4", "question": "2+2?"}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "must be an object"),
        ('{"version": 9, "modules": {}}', "version 9 is unsupported"),
        ('{"modules": {"q": {"demos": []}}}', "need an 'instruction'"),
        ('{"modules": {"q": {"instruction": "x", "demos": {"a": "b"}}}}', "must be a list"),
        ('{"modules": {"q": {"instruction": "x", "tips": []}}}', "unknown prompt params key"),
    ],
)
def test_malformed_json_is_rejected_clearly(text, message):
    with pytest.raises(CandidateError, match=message):
        Candidate.from_json(text)


def test_default_candidate_and_check_against_the_program():
    prog = TwoStage()
    c = Candidate.default(prog)
    assert list(c) == ["retrieve.query", "stages.0", "stages.1", "answer"]
    assert c.check(prog) is c
    bad = Candidate({**dict(c), "retrieve.qury": PromptParams("x")})
    hint = r"unknown module 'retrieve.qury' \(did you mean 'retrieve.query'\?\)"
    with pytest.raises(CandidateError, match=hint):
        bad.check(prog)
    partial = Candidate({k: v for k, v in c.items() if k != "answer"})
    with pytest.raises(CandidateError, match="missing module 'answer'"):
        partial.check(prog)


def test_load_candidate_sets_module_defaults():
    prog = TwoStage()
    c = Candidate.default(prog).with_module("stages.0", PromptParams("Draft carefully."))
    prog.load_candidate(c)
    assert prog.stages[0].params.instruction == "Draft carefully."
    assert Candidate.default(prog) == c


def test_demo_values_are_prompt_text_and_demos_validate():
    d = Demo({"context": ["a", "b"], "n": 3})
    assert d["context"] == "[1] a\n[2] b" and d["n"] == "3"
    assert d == {"context": "[1] a\n[2] b", "n": "3"}
    with pytest.raises(ValueError, match="None"):
        Demo(question=None)
    with pytest.raises(ValueError, match="identifiers"):
        Demo({"bad key": "x"})
    with pytest.raises(ValueError, match="at least one field"):
        Demo()
