"""Portable prompts are the messages the modules actually send."""

import json

from prompthone.lm import LM
from prompthone.lm.scripted import ScriptedBackend
from prompthone.program import (
    Candidate,
    ChainOfThought,
    Demo,
    Predict,
    Program,
    PromptParams,
    render_prompts,
    run_program,
)


class QA(Program):
    def __init__(self):
        self.answer = ChainOfThought(
            "question -> answer", instruction="Solve it.", demos=[{"question": "1+1?", "answer": "2"}]
        )

    def forward(self, question):
        return self.answer(question=question)


class RAG(Program):
    def __init__(self):
        self.query = Predict("question -> query")
        self.answer = ChainOfThought("question, context -> answer")

    async def forward(self, question):
        q = (await self.query.acall(question=question)).query
        return await self.answer.acall(question=question, context=[f"about {q}", "more"])


def lm_replying(text: str) -> tuple[LM, ScriptedBackend]:
    backend = ScriptedBackend(lambda r: text)
    return LM(backend, cache=False), backend


def tuned(program: Program) -> Candidate:
    base = Candidate.default(program)
    name = next(iter(base))
    demo = Demo(question="2+2?", answer="4", reasoning="add")
    return base.with_module(name, PromptParams("Tuned.", (demo,)))


async def test_single_stage_prompt_equals_the_request_sent():
    program = QA()
    cand = tuned(program)
    lm, backend = lm_replying("Reasoning: r\nAnswer: 3")
    await run_program(program, {"question": "1+2?"}, lm=lm, candidate=cand)
    prompts = render_prompts(program, cand, {"question": "1+2?"})
    assert prompts == {"answer": backend.requests[0].chat}
    assert prompts["answer"][0]["content"].startswith("Tuned.")


async def test_pipeline_prompts_equal_each_call_given_its_inputs():
    program = RAG()
    lm, backend = lm_replying("Query: cats\nReasoning: r\nAnswer: a")
    result = await run_program(program, {"question": "q?"}, lm=lm)
    assert len(result.trace) == 2
    for call, request in zip(result.trace, backend.requests, strict=True):
        assert render_prompts(program, None, call.inputs)[call.module] == request.chat


async def test_structured_prompts_match_and_carry_the_schema():
    program = QA()
    lm, backend = lm_replying('{"reasoning": "r", "answer": "3"}')
    await run_program(program, {"question": "1+2?"}, lm=lm, structured=True)
    prompts = render_prompts(program, None, {"question": "1+2?"}, structured=True)
    assert prompts["answer"] == backend.requests[0].chat
    assert prompts.response_formats["answer"] == backend.requests[0].schema


def test_placeholders_when_no_example_is_given():
    prompts = render_prompts(RAG())
    assert list(prompts) == ["query", "answer"]
    # the query module (a Predict) asks for JSON: its last turn ends with a reminder of the keys
    assert prompts["query"][-1] == {
        "role": "user",
        "content": 'Question: {question}\n\nReply with one JSON object with the keys "query".',
    }
    assert prompts["answer"][-1]["content"] == "Question: {question}\nContext: {context}"
    partly = render_prompts(RAG(), None, {"question": "q?"})
    assert partly["answer"][-1]["content"] == "Question: q?\nContext: {context}"


def test_as_json_and_as_text():
    program = QA()
    prompts = render_prompts(program, tuned(program))
    data = json.loads(prompts.as_json())
    assert data["modules"]["answer"]["messages"] == prompts["answer"]
    assert "response_format" not in data["modules"]["answer"]
    text = prompts.as_text()
    assert text.startswith("=== module: answer (prompt format: labels) ===\n--- system ---\nTuned.")
    assert "--- assistant ---\nReasoning: add\nAnswer: 4\n" in text
    assert text.rstrip().endswith("--- user ---\nQuestion: {question}")
    structured = render_prompts(program, structured=True)
    assert json.loads(structured.as_json())["modules"]["answer"]["response_format"]["required"] == [
        "reasoning",
        "answer",
    ]
    assert "--- response_format (JSON schema) ---" in structured.as_text()


def test_a_bare_module_exports_as_a_one_module_program():
    prompts = render_prompts(Predict("question -> answer", instruction="Be brief."))
    assert list(prompts) == ["predict"]
    assert prompts["predict"][0]["content"].endswith("\n\nYour task:\nBe brief.")  # JSON: the instruction last
