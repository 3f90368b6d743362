"""Running programs: per-run context, concurrency without cross-talk, traces, failures and errors."""

import asyncio
import threading

import pytest

from prompthone.lm import LM, BadRequestError, LMError
from prompthone.lm.scripted import ScriptedBackend
from prompthone.program import (
    Candidate,
    ChainOfThought,
    Demo,
    Predict,
    Program,
    ProgramError,
    PromptParams,
    run_program,
    trace_to_demos,
    using,
)
from prompthone.program.trace import trace_to_all_demos
from prompthone.testing.replies import instruction_of, without_reminder, write_reply


def last_user(request) -> str:
    return request.messages[-1][1]


def output_labels(request) -> str:
    return request.messages[0][1].split("Output fields:")[1]


def echo(request) -> str:
    """Reply with the instruction received, so every output shows which prompt produced it; in the
    reply format the prompt asks for (the query module's JSON, the answer module's lines)."""
    system = request.messages[0][1]
    instr, lines = instruction_of(system), without_reminder(last_user(request)).splitlines()
    if "- Query" in output_labels(request):
        return write_reply(system, {"query": f"{instr} | {lines[0]}"})
    return write_reply(system, {"reasoning": "thinking", "answer": f"{instr} | {lines[-1]}"})


def scripted(respond=echo, **kw) -> tuple[LM, ScriptedBackend]:
    backend = ScriptedBackend(respond, **kw)
    return LM(backend, cache=False, max_retries=0), backend


def retrieve(query: str) -> list[str]:
    return [f"doc about {query}"]


class SyncRAG(Program):
    def __init__(self):
        self.query = Predict("question -> query", instruction="Q-default")
        self.answer = ChainOfThought("question, context -> answer", instruction="A-default")

    def forward(self, question):
        query = self.query(question=question).query
        return self.answer(question=question, context=retrieve(query))


class AsyncRAG(SyncRAG):
    async def forward(self, question):
        query = (await self.query.acall(question=question)).query
        return await self.answer.acall(question=question, context=retrieve(query))


def two_candidates(program) -> tuple[Candidate, Candidate]:
    base = Candidate.default(program)
    a = base.with_module("query", PromptParams("Q-alpha")).with_module("answer", PromptParams("A-alpha"))
    b = base.with_module("query", PromptParams("Q-beta")).with_module("answer", PromptParams("A-beta"))
    return a, b


@pytest.mark.parametrize("program_cls", [SyncRAG, AsyncRAG])
async def test_fifty_concurrent_runs_under_two_candidates_do_not_cross_talk(program_cls):
    program = program_cls()
    lm, backend = scripted(delay_s=0.01)
    cand_a, cand_b = two_candidates(program)
    jobs = [(i, cand_a if i % 2 else cand_b) for i in range(50)]
    results = await asyncio.gather(*(run_program(program, {"question": f"q{i}"}, lm=lm, candidate=c) for i, c in jobs))
    assert len(backend.requests) == 100
    for (i, cand), result in zip(jobs, results, strict=True):
        tag = "alpha" if cand is cand_a else "beta"
        assert result.error is None and result.parse_failures == 0
        assert result.candidate is cand
        assert result.outputs["answer"] == f"A-{tag} | Context: [1] doc about Q-{tag} | Question: q{i}"
        assert [c.module for c in result.trace] == ["query", "answer"]
        query_call, answer_call = result.trace
        assert query_call.inputs == {"question": f"q{i}"}
        assert query_call.outputs == {"query": f"Q-{tag} | Question: q{i}"}
        assert query_call.messages[0]["content"].startswith(f"Q-{tag}\n")
        assert answer_call.messages[0]["content"].startswith(f"A-{tag}\n")
        assert answer_call.inputs["context"] == [f"doc about Q-{tag} | Question: q{i}"]
    # the shared program object was never changed by the runs
    assert program.query.params.instruction == "Q-default"
    assert program.answer.params.instruction == "A-default"


async def test_sync_forwards_run_in_parallel_threads():
    """More sync runs in flight than the default executor's few threads allow."""
    in_flight, peak = 0, 0
    lock = threading.Lock()

    class Counting(ScriptedBackend):
        async def generate(self, request, *, timeout_s):
            nonlocal in_flight, peak
            with lock:
                in_flight += 1
                peak = max(peak, in_flight)
            try:
                return await super().generate(request, timeout_s=timeout_s)
            finally:
                with lock:
                    in_flight -= 1

    lm = LM(Counting(echo, delay_s=0.5), cache=False)
    program = SyncRAG()
    results = await asyncio.gather(*(run_program(program, {"question": f"q{i}"}, lm=lm) for i in range(24)))
    assert all(r.error is None for r in results)
    assert peak >= 12


async def test_default_run_uses_module_params_and_records_the_trace():
    lm, backend = scripted()
    result = await run_program(SyncRAG(), {"question": "why?"}, lm=lm)
    assert result.ok
    answer = "A-default | Context: [1] doc about Q-default | Question: why?"
    assert result.outputs == {"reasoning": "thinking", "answer": answer}
    q, a = result.trace
    assert (q.module, a.module) == ("query", "answer")
    assert q.seq < a.seq
    # a Predict starts in JSON, a ChainOfThought in labels: each call was read in its own format
    assert q.raw == '{"query": "Q-default | Question: why?"}' and a.raw.startswith("Reasoning: thinking\nAnswer: ")
    assert q.status == "ok" and q.parsed_how == {"query": "json"} and a.parsed_how["answer"] == "label"
    assert q.messages == backend.requests[0].chat
    assert q.completion_tokens == len(q.raw.split()) and q.cached is False and q.model == "scripted/scripted"
    assert result.completion_tokens == q.completion_tokens + a.completion_tokens


async def test_parse_failure_is_counted_and_the_run_goes_on():
    def respond(request):
        if "- Query" in output_labels(request):
            return "I don't know."
        return "Reasoning: no idea"  # no answer

    lm, _ = scripted(respond)

    class Two(Program):
        def __init__(self):
            self.query = Predict("question -> query, topic")
            self.answer = ChainOfThought("question, context -> answer")

        def forward(self, question):
            pred = self.query(question=question)
            return self.answer(question=question, context=str(pred.query))

    result = await run_program(Two(), {"question": "q"}, lm=lm)
    assert result.error is None
    assert result.parse_failures == 2 and not result.ok
    assert [c.status for c in result.trace] == ["parse_failure", "parse_failure"]
    assert result.trace[0].outputs == {"query": None, "topic": None}
    assert result.trace[1].inputs["context"] == "None"
    assert result.outputs == {"reasoning": "no idea", "answer": None}
    first = result.failures[0]
    assert first.module == "query" and first.raw == "I don't know." and first.missing == ("query", "topic")


async def test_lm_errors_and_forward_errors_are_returned_not_raised():
    lm, _ = scripted(lambda r: BadRequestError("nope", model="scripted"))
    result = await run_program(SyncRAG(), {"question": "q"}, lm=lm)
    assert isinstance(result.error, LMError)
    assert [c.status for c in result.trace] == ["error"]
    assert "BadRequestError: nope" in result.trace[0].error
    assert result.outputs == {}
    with pytest.raises(BadRequestError):
        result.prediction()

    class Broken(Program):
        def __init__(self):
            self.p = Predict("q -> a")

        def forward(self, q):
            return self.p(q=q).a + 1  # a str plus an int

    lm, _ = scripted(lambda r: "A: 1")
    result = await run_program(Broken(), {"q": "x"}, lm=lm)
    assert isinstance(result.error, TypeError) and len(result.trace) == 1


async def test_forward_must_return_a_mapping():
    class Bad(Program):
        def __init__(self):
            self.p = Predict("q -> a")

        async def forward(self, q):
            return (await self.p.acall(q=q)).a

    lm, _ = scripted(lambda r: "A: 1")
    result = await run_program(Bad(), {"q": "x"}, lm=lm)
    assert isinstance(result.error, TypeError) and "must return a dict or a Prediction" in str(result.error)


async def test_setup_mistakes_raise_at_once():
    lm, backend = scripted()
    program = SyncRAG()
    with pytest.raises(TypeError, match="unknown LM option"):
        await run_program(program, {"question": "q"}, lm=lm, temprature=0.5)
    with pytest.raises(ValueError, match="missing module 'answer'"):
        only_query = Candidate({"query": PromptParams("x")})
        await run_program(program, {"question": "q"}, lm=lm, candidate=only_query)
    with pytest.raises(TypeError, match=r"SyncRAG.forward cannot take inputs \['qestion'\]"):
        await run_program(program, {"qestion": "q"}, lm=lm)
    with pytest.raises(ValueError, match=r"lm_for names unknown module\(s\) \['anser'\]"):
        await run_program(program, {"question": "q"}, lm=lm, lm_for={"anser": lm})
    assert backend.requests == []


async def test_unnamed_module_and_sync_call_in_async_code_are_clear_errors():
    class Unnamed(Program):
        async def forward(self, q):
            return await Predict("q -> a").acall(q=q)

    class SyncInAsync(Program):
        def __init__(self):
            self.p = Predict("q -> a")

        async def forward(self, q):
            return self.p(q=q)

    lm, _ = scripted(lambda r: "A: 1")
    unnamed = await run_program(Unnamed(), {"q": "x"}, lm=lm)
    assert isinstance(unnamed.error, ProgramError) and "not an attribute of Unnamed" in str(unnamed.error)
    blocked = await run_program(SyncInAsync(), {"q": "x"}, lm=lm)
    assert isinstance(blocked.error, ProgramError) and "await" in str(blocked.error)


async def test_module_input_mistakes_name_the_module():
    class Typo(Program):
        def __init__(self):
            self.p = Predict("question -> a")

        def forward(self, q):
            return self.p(qestion=q)

    lm, _ = scripted(lambda r: "A: 1")
    result = await run_program(Typo(), {"q": "x"}, lm=lm)
    assert isinstance(result.error, TypeError)
    assert "module 'p'" in str(result.error) and "missing input(s) ['question']" in str(result.error)


async def test_lm_options_reach_the_request_and_override_module_defaults():
    class Opt(Program):
        def __init__(self):
            self.p = Predict("q -> a", max_tokens=64, temperature=0.2)

        async def forward(self, q):
            return await self.p.acall(q=q)

    lm, backend = scripted(lambda r: "A: 1")
    await run_program(Opt(), {"q": "x"}, lm=lm, temperature=0.9, sample_index=3)
    req = backend.requests[0]
    assert (req.max_tokens, req.temperature, req.sample_index) == (64, 0.9, 3)


async def test_lm_for_gives_one_module_another_model():
    lm, main_backend = scripted()
    other, other_backend = scripted(lambda r: "Query: from the other model")
    result = await run_program(SyncRAG(), {"question": "q"}, lm=lm, lm_for={"query": other})
    assert result.trace[0].outputs == {"query": "from the other model"}
    assert len(other_backend.requests) == 1 and len(main_backend.requests) == 1


async def test_structured_runs_send_a_schema_and_read_json():
    def respond(request):
        assert request.schema is not None
        n = len(request.schema["properties"])
        return f'{{"reasoning": "r", "answer": "{n}"}}'

    class One(Program):
        def __init__(self):
            self.solve = ChainOfThought("question -> answer")

        async def forward(self, question):
            return await self.solve.acall(question=question)

    lm, backend = scripted(respond)
    result = await run_program(One(), {"question": "q"}, lm=lm, structured=True)
    assert result.ok and result.outputs == {"reasoning": "r", "answer": "2"}
    assert backend.requests[0].schema["required"] == ["reasoning", "answer"]
    assert result.trace[0].structured and result.trace[0].parsed_how["answer"] == "json"

    plain, plain_backend = scripted(lambda r: "Answer: 5")
    program = One()
    program.solve.structured = False  # a module's own choice wins over the run's
    result = await run_program(program, {"question": "q"}, lm=plain, structured=True)
    assert plain_backend.requests[0].schema is None and result.outputs["answer"] == "5"


async def test_trace_to_demos_bootstraps_one_demo_per_module():
    lm, _ = scripted()
    result = await run_program(SyncRAG(), {"question": "why?"}, lm=lm)
    demos = trace_to_demos(result.trace)
    assert list(demos) == ["query", "answer"]
    assert demos["query"] == Demo(question="why?", query="Q-default | Question: why?")
    assert demos["answer"] == Demo(
        question="why?",
        context="[1] doc about Q-default | Question: why?",
        reasoning="thinking",
        answer="A-default | Context: [1] doc about Q-default | Question: why?",
    )
    # the demos render back as turns when a candidate uses them
    program = SyncRAG()
    cand = Candidate.default(program).with_module("query", program.query.params.with_demos([demos["query"]]))
    lm2, backend2 = scripted()
    await run_program(program, {"question": "next"}, lm=lm2, candidate=cand)
    sent = backend2.requests[0].chat
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert sent[1]["content"] == "Question: why?"
    assert sent[2]["content"] == '{"query": "Q-default | Question: why?"}'  # as the module's JSON reply


async def test_trace_to_demos_skips_failed_calls_and_takes_the_first_of_repeated_calls():
    replies = iter(["nonsense", "Answer: second", "Answer: third"])

    class Loop(Program):
        def __init__(self):
            self.p = Predict("q -> answer, note")

        async def forward(self, q):
            for i in range(3):
                await self.p.acall(q=f"{q}{i}")
            return {}

    def respond(request):
        text = next(replies)
        return f"{text}\nNote: n" if text.startswith("Answer") else text

    lm, _ = scripted(respond)
    result = await run_program(Loop(), {"q": "x"}, lm=lm)
    assert [c.status for c in result.trace] == ["parse_failure", "ok", "ok"]
    assert trace_to_demos(result.trace) == {"p": Demo(q="x1", answer="second", note="n")}
    assert [d["answer"] for d in trace_to_all_demos(result.trace)["p"]] == ["second", "third"]


async def test_nested_programs_mix_sync_and_async_forwards():
    class AsyncInner(Program):
        def __init__(self):
            self.p = Predict("question -> query", instruction="inner")

        async def forward(self, question):
            return await self.p.acall(question=question)

    class SyncInner(AsyncInner):
        def forward(self, question):
            return self.p(question=question)

    class SyncOuter(Program):
        def __init__(self):
            self.inner = AsyncInner()

        def forward(self, question):
            return {"query": self.inner(question=question)["query"]}

    class AsyncOuter(Program):
        def __init__(self):
            self.inner = SyncInner()

        async def forward(self, question):
            return {"query": (await self.inner.acall(question=question))["query"]}

    lm, _ = scripted()
    for outer in (SyncOuter(), AsyncOuter()):
        result = await run_program(outer, {"question": "q"}, lm=lm)
        assert result.error is None, result.error
        assert result.outputs == {"query": "inner | Question: q"}
        assert [c.module for c in result.trace] == ["inner.p"]


def test_interactive_calls_need_an_lm_and_use_the_one_given():
    lm, _ = scripted()
    program = SyncRAG()
    with pytest.raises(ProgramError, match="no LM is set"):
        program(question="q")
    with using(lm):
        pred = program(question="q")
        assert pred.answer == "A-default | Context: [1] doc about Q-default | Question: q"
        assert program.query(question="q").query == "Q-default | Question: q"
    result = program.run_sync({"question": "q"}, lm=lm)
    assert result.outputs["answer"] == pred.answer


def test_run_sync_works_inside_a_running_event_loop():
    lm, _ = scripted()

    async def notebook_cell():
        return SyncRAG().run_sync({"question": "q"}, lm=lm)

    result = asyncio.run(notebook_cell())
    assert result.ok and result.outputs["reasoning"] == "thinking"


async def test_a_cancelled_sync_run_makes_no_further_lm_calls():
    lm, backend = scripted(delay_s=0.3)
    program = SyncRAG()
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(run_program(program, {"question": "q"}, lm=lm), timeout=0.05)
    await asyncio.sleep(0.6)  # long enough for the first call to have finished and a second to start
    assert len(backend.requests) == 1


async def test_a_sync_forward_returning_a_coroutine_is_explained():
    class Forgot(Program):
        def __init__(self):
            self.p = Predict("q -> a")

        def forward(self, q):
            return self.p.acall(q=q)

    lm, backend = scripted(lambda r: "A: 1")
    result = await run_program(Forgot(), {"q": "x"}, lm=lm)
    assert isinstance(result.error, TypeError) and "async def forward" in str(result.error)
    assert backend.requests == []
