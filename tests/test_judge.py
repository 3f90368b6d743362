"""LLM-judge metrics with a scripted judge: parsing, scales, retry, judge failures, caching, evaluator."""

from __future__ import annotations

from dataclasses import replace

import pytest

from prompthone.data.example import Example
from prompthone.evaluate import EvaluationError, Evaluator
from prompthone.lm import LM, ServerError
from prompthone.lm.scripted import ScriptedBackend
from prompthone.metrics import JudgeError, JudgeMetric, JudgeScale, MissingFieldError, parse_verdict
from prompthone.metrics.judge import LENIENT_MIN_OUTPUTS, VerdictParseError, lenient_judge_warning
from prompthone.program import Predict, Program
from prompthone.testing.replies import without_reminder, write_reply

EX = Example(id="e1", inputs={"question": "Who wrote Hamlet?"}, labels={"answer": "William Shakespeare"})
CRITERIA = "1 if the answer names the same person as the reference answer, else 0."


def judge_with(replies, **kw) -> tuple[JudgeMetric, ScriptedBackend]:
    """A judge whose n-th call answers `replies[n]` (the last one repeats)."""
    calls = []

    def respond(req):
        calls.append(req)
        return replies[min(len(calls) - 1, len(replies) - 1)]

    backend = ScriptedBackend(respond)
    kw.setdefault("reference_field", "answer")
    metric = JudgeMetric(LM(backend, cache=False), task_description="Answer the question.", criteria=CRITERIA, **kw)
    return metric, backend


def test_binary_verdict_is_read_with_reasoning_as_feedback_and_the_judge_sees_the_case():
    metric, backend = judge_with(["Reasoning: Shakespeare is the reference author.\nScore: 1"])
    result = metric.score(EX, {"answer": "Shakespeare"})
    assert result.score == 1.0
    assert "Shakespeare is the reference author" in result.feedback and "0-1 scale" in result.feedback
    (req,) = backend.requests
    assert req.temperature == 0.0 and req.sample_index == 0
    system, user = req.chat[0]["content"], req.chat[1]["content"]
    assert "Score: <0 or 1>" in system
    assert CRITERIA in user and "Who wrote Hamlet?" in user
    assert "Reference answer" in user and "William Shakespeare" in user
    assert "Answer: Shakespeare" in user

    metric0, _ = judge_with(["Reasoning: names Marlowe, not Shakespeare.\nScore: 0"])
    wrong = metric0.score(EX, {"answer": "Marlowe"})
    assert wrong.score == 0.0 and "Marlowe" in wrong.feedback


def test_without_a_reference_the_judge_is_not_shown_the_label():
    metric, backend = judge_with(["Reasoning: plausible.\nScore: 1"], reference_field=None)
    metric.score(EX, {"answer": "Shakespeare"})
    user = backend.requests[0].chat[1]["content"]
    assert "William Shakespeare" not in user and "Reference" not in user


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("Reasoning: mostly right but vague.\nScore: 4", 0.75),
        ("**Reasoning:** partly.\n**Score:** 2", 0.25),
        ("Reasoning: perfect.\nScore: 5/5", 1.0),
        ('{"reasoning": "wrong person", "score": 1}', 0.0),
        ("Score: 3", 0.5),
        ("3", 0.5),
        ("Reasoning: I first thought Score: 2 but on reflection it is complete.\nScore: 5", 1.0),
    ],
)
def test_graded_scale_maps_onto_zero_one(reply, expected):
    metric, _ = judge_with([reply], scale="graded")
    assert metric.score(EX, {"answer": "x"}).score == pytest.approx(expected)


@pytest.mark.parametrize(
    ("reply", "scale"),
    [
        ("", "binary"),
        ("The answer looks right to me.", "binary"),
        ("Score: 7", "graded"),
        ("Score: 0.5", "binary"),
        ("Score: 4/10", "graded"),
        ("Score: high", "binary"),
    ],
)
def test_replies_off_the_scale_or_without_a_score_are_unreadable(reply, scale):
    with pytest.raises(VerdictParseError):
        parse_verdict(reply, JudgeScale.parse(scale))


def test_scale_specs():
    assert JudgeScale.parse("binary") == JudgeScale(0, 1)
    assert JudgeScale.parse("graded") == JudgeScale(1, 5)
    assert JudgeScale.parse("1-10").to_unit(10) == 1.0
    with pytest.raises(ValueError, match="unknown judge scale"):
        JudgeScale.parse("stars")
    with pytest.raises(ValueError, match="low < high"):
        JudgeScale(3, 3)


def test_an_unreadable_reply_is_retried_once_as_a_follow_up_with_another_sample_index():
    metric, backend = judge_with(["Looks fine.", "Reasoning: same author.\nScore: 1"])
    result = metric.score(EX, {"answer": "Shakespeare"})
    assert result.score == 1.0 and "same author" in result.feedback
    first, second = backend.requests
    assert (first.sample_index, second.sample_index) == (0, 1)
    assert second.temperature == 0.0
    assert second.chat[:2] == first.chat
    assert second.chat[2] == {"role": "assistant", "content": "Looks fine."}
    assert "could not be read" in second.chat[3]["content"] and "no 'Score: N' line" in second.chat[3]["content"]
    assert "score line only" in second.chat[3]["content"] and second.max_tokens < metric.max_tokens


def test_a_judge_that_restates_the_output_and_never_scores_gives_its_score_when_asked_for_it_alone():
    # what the 1.5B judge did on 5 of 30 sports verdicts: a paragraph about the output, no score line
    rambling = 'Reasoning: The output "The sentence is plausible" gives the same verdict as the reference.'
    metric, backend = judge_with([rambling, "Score: 1"])
    result = metric.score(EX, {"answer": "Shakespeare"})
    assert result.score == 1.0
    assert "gives the same verdict" in result.feedback  # the first reply's reasoning is the feedback
    assert "score line only" in backend.requests[1].chat[-1]["content"]


def test_a_reply_cut_off_in_its_reasoning_is_followed_up_by_asking_for_the_score_alone():
    looping = "Reasoning: The output names the same author. " + "It is a common name. " * 40

    class CutOff(ScriptedBackend):  # the first reply hits the token limit, as a looping judge does
        async def generate(self, request, *, timeout_s):
            gen = await super().generate(request, timeout_s=timeout_s)
            return replace(gen, finish_reason="length") if len(self.requests) == 1 else gen

    backend = CutOff(lambda req: looping if len(backend.requests) == 1 else "Score: 1")
    metric = JudgeMetric(LM(backend, cache=False), task_description="t", criteria=CRITERIA, reference_field="answer")
    result = metric.score(EX, {"answer": "Shakespeare"})
    assert result.score == 1.0
    assert "names the same author" in result.feedback and len(result.feedback) < 400
    follow_up = backend.requests[1]
    assert "score line only" in follow_up.chat[-1]["content"] and follow_up.max_tokens < metric.max_tokens
    assert "length limit" in follow_up.chat[-1]["content"]


def test_a_judge_that_passes_nearly_every_output_of_the_start_is_flagged():
    n = LENIENT_MIN_OUTPUTS
    warning = lenient_judge_warning([1.0] * n)
    assert warning and f"top score to {n} of the start's {n} judged outputs" in warning and "stronger judge" in warning
    assert "57 of the start's 59" in lenient_judge_warning([1.0] * 57 + [0.0] * 2)  # the sports judge
    assert "25 of the start's 29" in lenient_judge_warning([1.0] * 25 + [0.0] * 4)  # the TREC judge
    assert lenient_judge_warning([1.0] * (n - 1)) is None  # too few to say anything
    assert lenient_judge_warning([1.0] * 8 + [0.0] * 2) is None  # 80%: the judge does say no
    assert lenient_judge_warning([0.0] * n) is None  # a start that fails everywhere leaves room to climb
    assert lenient_judge_warning([1.0] * 8 + [0.75] * 2) is None  # graded: the top is 1.0 only


def test_two_unreadable_replies_raise_judge_error_not_a_zero():
    metric, backend = judge_with(["Looks fine.", "Still fine, really."])
    with pytest.raises(JudgeError, match="could not be read twice") as exc:
        metric.score(EX, {"answer": "Shakespeare"})
    assert len(backend.requests) == 2
    assert exc.value.replies == ("Looks fine.", "Still fine, really.") and exc.value.example_id == "e1"


def test_a_failing_judge_model_is_a_judge_error():
    def down(req):
        return ServerError("judge server down")

    lm = LM(ScriptedBackend(down), cache=False, max_retries=0)
    metric = JudgeMetric(lm, task_description="t", criteria="c")
    with pytest.raises(JudgeError, match=r"judge model failed.*judge server down"):
        metric.score(EX, {"answer": "x"})


def test_missing_output_is_a_missing_field_and_the_judge_is_not_asked():
    metric, backend = judge_with(["Score: 1"])
    with pytest.raises(MissingFieldError) as exc:
        metric.score(EX, {"answer": None})
    assert exc.value.side == "prediction" and backend.requests == []


def test_judge_calls_are_cached_and_counted(tmp_path):
    backend = ScriptedBackend(lambda req: "Reasoning: ok.\nScore: 1")
    lm = LM(backend, cache=tmp_path / "judge.sqlite")
    metric = JudgeMetric(lm, task_description="t", criteria="c", reference_field="answer")
    metric.score(EX, {"answer": "Shakespeare"})
    metric.score(EX, {"answer": "Shakespeare"})
    assert len(backend.requests) == 1
    assert lm.usage.calls == 2 and lm.usage.cache_hits == 1 and lm.usage.paid_calls == 1


def test_the_name_changes_with_what_changes_a_verdict():
    lm = LM(ScriptedBackend(lambda r: "Score: 1"), cache=False)
    a = JudgeMetric(lm, task_description="t", criteria="c")
    assert a.name == JudgeMetric(lm, task_description="t", criteria="c").name
    assert a.name != JudgeMetric(lm, task_description="t", criteria="c2").name
    assert a.name != JudgeMetric(lm, task_description="t", criteria="c", scale="graded").name
    assert a.name != JudgeMetric(lm, task_description="t", criteria="c", reference_field="answer").name
    with pytest.raises(ValueError, match="criteria"):
        JudgeMetric(lm, task_description="t", criteria="  ")


class QA(Program):
    def __init__(self) -> None:
        self.answer = Predict("question -> answer", instruction="Answer.")

    def forward(self, question: str) -> dict:
        return {"answer": self.answer(question=question).answer}


def test_the_evaluator_records_a_judge_failure_as_an_error_apart_from_scores():
    examples = [Example(id=f"q{i}", inputs={"question": f"q{i}"}, labels={"answer": "a"}) for i in range(4)]

    def task(req):  # answers with the question, in the reply format the prompt asks for
        return write_reply(req.messages[0][1], {"answer": without_reminder(req.messages[-1][1]).split()[-1]})

    task_lm = LM(ScriptedBackend(task), cache=False)

    def judge(req):
        user = req.chat[1]["content"]
        if "Answer: q0" in user:
            return "no idea"  # unreadable, twice
        return "Reasoning: fine.\nScore: 1" if "Answer: q1" in user else "Reasoning: wrong.\nScore: 0"

    metric = JudgeMetric(LM(ScriptedBackend(judge), cache=False), task_description="t", criteria="c")
    with pytest.raises(EvaluationError, match=r"1 of 4 examples failed.*JudgeError"):
        Evaluator(QA(), metric, task_lm).evaluate_sync(None, examples)
    result = Evaluator(QA(), metric, task_lm, max_errors=1).evaluate_sync(None, examples)
    by = result.by_id()
    assert by["q0"].status == "error" and by["q0"].score is None and "could not be read twice" in by["q0"].error
    assert by["q1"].status == "scored" and by["q1"].score == 1.0 and "fine" in by["q1"].feedback
    assert result.n_errors == 1 and result.mean == pytest.approx(1 / 3)  # the error is left out of the mean
