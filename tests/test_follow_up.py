"""A module that follows up (`ChainOfThought` by default, any module built with `follow_up=True`) asks once
more, in the same chat, for a required output its reply lacked.

Scripted replies test the logic (what is asked, how the second reply is read, what the trace keeps);
the embedded model, in-process and behind a real llama_cpp.server, shows the ask recovers an answer that
a reasoning cut off at max_tokens never reached.
"""

from __future__ import annotations

import pytest

from model_server import llama_server
from prompthone.evaluate import Evaluator
from prompthone.lm import LM, ServerError
from prompthone.lm.local.backend import LocalBackend
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import ExactMatch
from prompthone.program import ChainOfThought, Predict, Program, run_program, trace_to_demos
from prompthone.program.render import follow_up_message
from prompthone.program.signature import Signature

ASK = "Your reply above"
COT = Signature({"question": ""}, {"answer": "yes or no"}, "Answer the question.")


def asked(request) -> bool:
    return request.messages[-1][1].startswith(ASK)


def replies(first: str, second: str | Exception):
    return lambda req: second if asked(req) else first


def scripted(first: str, second: str | Exception, **kw) -> tuple[LM, ScriptedBackend]:
    backend = ScriptedBackend(replies(first, second))
    return LM(backend, max_retries=0, **kw), backend


async def test_a_reply_without_its_answer_gets_one_follow_up_whose_answer_is_taken():
    lm, backend = scripted("Reasoning: the sentence names a basketball move.", "Answer: no", cache=False)
    result = await run_program(ChainOfThought(COT, follow_up=True), {"question": "Is it plausible?"}, lm=lm)
    assert result.outputs == {"reasoning": "the sentence names a basketball move.", "answer": "no"}
    (call,) = result.trace
    assert call.status == "ok" and call.parsed_how["answer"] == "follow-up" and call.follow_up == "Answer: no"
    assert call.raw == "Reasoning: the sentence names a basketball move."
    first, second = backend.requests
    # the same chat, the model's own reply, then the ask: the missing output, its description, its label
    assert second.messages[: len(first.messages)] == first.messages
    assert second.messages[len(first.messages)] == ("assistant", call.raw)
    ask = second.messages[-1][1]
    assert ask == "Your reply above does not give the answer. Reply with `Answer:` (yes or no)."
    assert call.messages == first.chat  # the trace keeps what the module's prompt is, not the ask
    assert call.completion_tokens == len(call.raw.split()) + 2  # both replies' tokens are counted
    assert lm.usage.paid_calls == 2
    # a call that needed the ask did not show the reply format done right: it makes no demo
    assert trace_to_demos(result.trace) == {}


@pytest.mark.parametrize(
    ("fmt", "named", "second"),
    [
        ("labels", "`Answer:`", "Answer: yes"),
        ("recap", "`Answer:`", "Answer: yes"),
        ("tags", "<answer>...</answer>", "<answer>yes</answer>"),
        ("json", '"answer"', '{"answer": "yes"}'),
    ],
)
async def test_the_ask_and_its_reply_are_in_the_modules_own_format(fmt, named, second):
    lm, backend = scripted("I need to think about this question carefully first.", second, cache=False)
    module = Predict(Signature({"question": ""}, {"answer": "yes or no", "note": ""}), format=fmt, follow_up=True)
    (call,) = (await run_program(module, {"question": "Is it?"}, lm=lm)).trace
    assert named in backend.requests[-1].messages[-1][1]
    assert call.outputs["answer"] == "yes" and call.parsed_how["answer"] == "follow-up"
    assert call.status == "parse_failure"  # `note` is still missing: the failure names only it
    assert call.failure.missing == ("note",) and "asked again" in call.failure.reason
    assert "the answer and note. Reply with" in follow_up_message(module.signature, ["answer", "note"], fmt)


def test_the_ask_names_a_field_as_its_label_reads():
    ask = follow_up_message(Signature.parse("question -> search_query"), ["search_query"], "labels")
    assert ask == "Your reply above does not give the search query. Reply with `Search Query:`."


@pytest.mark.parametrize(
    ("second", "answer"),
    [
        ("yes", "yes"),  # a short bare value is the answer, as a one-line reply is
        ("Reasoning: it is a sports sentence, so I need to check the player and the sport he plays.", None),
        ("I am not sure what you mean, the question does not say which sport the player plays at all.", None),
    ],
)
async def test_chatter_or_restated_reasoning_is_not_taken_as_the_answer(second, answer):
    lm, _ = scripted("Reasoning: long thoughts", second, cache=False)
    (call,) = (await run_program(ChainOfThought(COT, follow_up=True), {"question": "q"}, lm=lm)).trace
    assert call.outputs["answer"] == answer
    assert call.status == ("ok" if answer else "parse_failure")


async def test_a_complete_reply_asks_nothing_and_only_chain_of_thought_asks_by_default():
    lm, backend = scripted("Reasoning: r\nAnswer: yes", "Answer: no", cache=False)
    await run_program(ChainOfThought(COT), {"question": "q"}, lm=lm)
    assert len(backend.requests) == 1
    lm, backend = scripted("Reasoning: r", "Answer: no", cache=False)
    (call,) = (await run_program(ChainOfThought(COT), {"question": "q"}, lm=lm)).trace  # on by default
    assert len(backend.requests) == 2 and call.status == "ok" and call.follow_up == "Answer: no"
    lm, backend = scripted("Reasoning: r", "Answer: no", cache=False)
    (call,) = (await run_program(ChainOfThought(COT, follow_up=False), {"question": "q"}, lm=lm)).trace
    assert len(backend.requests) == 1 and call.status == "parse_failure" and call.follow_up is None
    lm, backend = scripted("I think it is no.", "Answer: no", cache=False)
    (call,) = (await run_program(Predict(Signature.parse("question -> answer, note")), {"question": "q"}, lm=lm)).trace
    assert len(backend.requests) == 1 and call.status == "parse_failure"  # a Predict asks only when told
    assert Predict(COT, follow_up=True).follow_up and not ChainOfThought(COT, follow_up=False).follow_up


async def test_a_failed_follow_up_is_an_error_and_keeps_the_first_reply():
    lm, _ = scripted("Reasoning: r", ServerError("server down"), cache=False)
    result = await run_program(ChainOfThought(COT, follow_up=True), {"question": "q"}, lm=lm)
    (call,) = result.trace
    assert call.status == "error" and "server down" in call.error and call.raw == "Reasoning: r"


def test_an_evaluation_scores_the_recovered_answer_and_a_rerun_pays_for_nothing(tmp_path):
    from prompthone.data import Example

    examples = [Example(id="a", inputs={"question": "q"}, labels={"answer": "no"})]
    respond = replies("Reasoning: r", "Answer: no")
    backends = [ScriptedBackend(respond), ScriptedBackend(respond)]  # one model, two processes
    results = [
        Evaluator(ChainOfThought(COT, follow_up=True), ExactMatch(), LM(b, cache=tmp_path / "c.sqlite")).evaluate_sync(
            None, examples
        )
        for b in backends
    ]
    (record,) = results[0].records
    assert record.status == "scored" and record.score == 1.0 and record.lm_calls == 2
    assert len(backends[0].requests) == 2
    assert results[1].mean == 1.0 and backends[1].requests == []  # both calls replayed from the cache


async def test_structured_replies_ask_with_the_schema_of_the_missing_outputs():
    lm, backend = scripted('{"reasoning": "r"}', '{"answer": "no"}', cache=False)
    module = ChainOfThought(COT, structured=True, follow_up=True)
    (call,) = (await run_program(module, {"question": "q"}, lm=lm)).trace
    assert call.outputs["answer"] == "no"
    assert backend.requests[-1].schema["required"] == ["answer"]


# --- the embedded model ---------------------------------------------------------------------------

SPORTS = Signature(
    {"question": ""},
    {"answer": "yes or no"},
    "Answer the question about the sentence. Think it through first.",
)
QUESTION = {"question": 'Is the following sentence plausible? "Joao Moutinho caught the screen pass in the NFC '
            'championship."'}  # fmt: skip


@pytest.fixture(scope="module")
def qwen():
    return LocalBackend("qwen2.5-coder-0.5b", n_threads=2)


class Sports(Program):
    def __init__(self) -> None:
        self.judge = ChainOfThought(SPORTS, follow_up=True, max_tokens=24)  # the reasoning cannot finish in 24 tokens

    def forward(self, question: str) -> dict:
        return {"answer": self.judge(question=question).answer}


@pytest.mark.model
def test_the_embedded_models_cut_off_reasoning_gets_its_answer_in_process_and_over_the_server(qwen, tmp_path):
    from prompthone.lm import run_sync

    lm = LM(qwen, cache=tmp_path / "c.sqlite")
    local = run_sync(run_program(Sports(), QUESTION, lm=lm, temperature=0.0))
    (call,) = local.trace
    assert call.finish_reason == "length" and call.follow_up is not None
    assert call.status == "ok" and call.parsed_how["answer"] == "follow-up" and call.outputs["answer"]
    assert lm.usage.paid_calls == 2
    with llama_server(qwen.path, alias="q") as base_url:
        served = LM(f"openai/q@{base_url}", cache=False)
        remote = run_sync(run_program(Sports(), QUESTION, lm=served, temperature=0.0))
    (rcall,) = remote.trace
    assert rcall.finish_reason == "length" and rcall.status == "ok" and rcall.parsed_how["answer"] == "follow-up"
    assert served.usage.paid_calls == 2
