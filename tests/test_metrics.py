"""Metrics: the sync/async interface, coercion and its errors, missing fields, and each built-in metric."""

from __future__ import annotations

import asyncio
import math

import pytest

from prompthone.data import Example
from prompthone.metrics import (
    ChoiceMatch,
    ExactMatch,
    Metric,
    MetricResult,
    MetricScoreError,
    MissingFieldError,
    NumericMatch,
    TokenF1,
    answer_number,
    as_metric,
    coerce_result,
    extract_choice,
    extract_numbers,
    normalize_answer,
)


def ex(answer, **labels) -> Example:
    return Example(id="q:1", inputs={"question": "?"}, labels={"answer": answer, **labels})


def pred(answer) -> dict:
    return {"answer": answer}


# ------------------------------------------------------------------------------------- results and coercion


@pytest.mark.parametrize(("value", "score"), [(True, 1.0), (False, 0.0), (1, 1.0), (0, 0.0), (0.25, 0.25)])
def test_bools_and_numbers_are_coerced(value, score):
    result = coerce_result(value, "m")
    assert result == MetricResult(score) and isinstance(result.score, float)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, r"metric judge returned 1\.5: score must be in \[0, 1\]"),
        (-0.1, r"metric judge returned -0\.1"),
        (math.nan, r"metric judge returned nan"),
        (
            None,
            r"metric judge returned NoneType None; expected a bool, a number in \[0, 1\] or a MetricResult",
        ),
        ("1", r"metric judge returned str '1'"),
    ],
)
def test_bad_scores_are_errors_naming_the_metric(value, message):
    with pytest.raises(MetricScoreError, match=message) as e:
        coerce_result(value, "judge")
    assert e.value.metric == "judge"


def test_metric_result_validates_itself():
    with pytest.raises(MetricScoreError, match=r"score must be in \[0, 1\], got 2"):
        MetricResult(2)
    with pytest.raises(MetricScoreError, match="got True"):
        MetricResult(True)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="feedback must be a string"):
        MetricResult(1.0, feedback=3)  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- plain functions


def test_a_sync_function_becomes_a_metric_named_after_it():
    def contains_answer(example, prediction):
        return example.labels["answer"] in prediction["answer"]

    metric = as_metric(contains_answer)
    assert metric.name == "contains_answer"
    assert metric.score(ex("42"), pred("it is 42")) == MetricResult(1.0)
    assert asyncio.run(metric.ascore(ex("42"), pred("it is 41"))) == MetricResult(0.0)
    assert as_metric(metric) is metric


def test_function_returning_an_out_of_range_score_is_named_in_the_error():
    def too_generous(example, prediction):
        return 3

    with pytest.raises(MetricScoreError, match="metric too_generous returned 3"):
        as_metric(too_generous).score(ex("1"), pred("1"))

    def builds_a_bad_result(example, prediction):
        return MetricResult(1.5, "great")

    with pytest.raises(MetricScoreError, match=r"metric builds_a_bad_result: score must be in \[0, 1\]"):
        as_metric(builds_a_bad_result).score(ex("1"), pred("1"))


def test_errors_inside_a_metric_function_are_not_swallowed():
    def broken(example, prediction):
        return 1 / 0

    with pytest.raises(ZeroDivisionError):
        as_metric(broken).score(ex("1"), pred("1"))


async def judge(example, prediction):
    await asyncio.sleep(0)
    return MetricResult(0.5, "half right")


class AsyncJudge:
    async def __call__(self, example, prediction):
        return prediction["answer"] == example.labels["answer"]


async def test_async_functions_and_callables_are_awaited():
    assert await as_metric(judge).ascore(ex("1"), pred("1")) == MetricResult(0.5, "half right")
    metric = as_metric(AsyncJudge(), name="llm_judge")
    assert metric.name == "llm_judge"
    assert await metric.ascore(ex("1"), pred("1")) == MetricResult(1.0)
    with pytest.raises(RuntimeError, match="metric judge is async and an event loop is running"):
        as_metric(judge).score(ex("1"), pred("1"))


def test_async_metric_can_be_scored_synchronously_outside_an_event_loop():
    assert as_metric(judge).score(ex("1"), pred("1")).feedback == "half right"
    assert as_metric(AsyncJudge()).score(ex("1"), pred("2")).score == 0.0


def test_a_metric_subclass_only_needs_ascore():
    class LengthJudge(Metric):
        name = "length_judge"

        async def ascore(self, example, prediction):
            await asyncio.sleep(0)
            return MetricResult(min(1.0, len(prediction["answer"]) / 10))

    assert LengthJudge().score(ex("x"), pred("12345")) == MetricResult(0.5)
    assert LengthJudge()(ex("x"), pred("1234567890123")) == MetricResult(1.0)


def test_not_a_metric():
    with pytest.raises(TypeError, match="expected a Metric or a function"):
        as_metric(42)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="a prediction must be a mapping of output field to value, got str"):
        ExactMatch().score(ex("a"), "a")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- missing fields


def test_missing_prediction_field_is_raised_not_scored():
    with pytest.raises(MissingFieldError) as e:
        ExactMatch().score(ex("Paris"), {"reasoning": "it is Paris"})
    err = e.value
    assert (err.side, err.field, err.available, err.example_id) == (
        "prediction",
        "answer",
        ("reasoning",),
        "q:1",
    )
    assert str(err) == (
        "metric exact_match: field 'answer' is missing from the prediction of example 'q:1' (present: reasoning)"
    )
    with pytest.raises(MissingFieldError, match="field 'answer' is missing from the prediction"):
        NumericMatch().score(ex("3"), {"answer": None})  # None counts as missing


def test_missing_label_field_is_a_setup_error_with_side_label():
    metric = ExactMatch(label_field="city", pred_field="answer")
    assert metric.name == "exact_match(city, answer)"
    with pytest.raises(MissingFieldError) as e:
        metric.score(ex("Paris"), pred("Paris"))
    assert e.value.side == "label" and e.value.available == ("answer",)


def test_default_names_tell_configurations_apart():
    # The name keys cached scores: differently configured metrics must not share a name.
    names = [
        ExactMatch().name,
        ExactMatch(normalize=False).name,
        NumericMatch().name,
        NumericMatch(abs_tol=0.01).name,
        NumericMatch(fractions=False).name,
        TokenF1(pred_field="text").name,
        ChoiceMatch(name="bbh_choice").name,
    ]
    assert names == [
        "exact_match",
        "exact_match[normalize=False]",
        "numeric_match",
        "numeric_match[abs_tol=0.01]",
        "numeric_match[fractions=False]",
        "token_f1(answer, text)",
        "bbh_choice",
    ]


def test_present_but_empty_prediction_is_a_wrong_answer():
    assert ExactMatch().score(ex("Paris"), pred("")) == MetricResult(0.0, "expected 'Paris', got ''")
    assert NumericMatch().score(ex("3"), pred("")).score == 0.0


def test_fields_are_configurable():
    metric = ExactMatch(label_field="label", pred_field="sentiment")
    example = Example(id="s:1", inputs={"sentence": "good"}, labels={"label": "positive"})
    assert metric.score(example, {"sentiment": "Positive."}).score == 1.0


# ------------------------------------------------------------------------------------- exact match


@pytest.mark.parametrize(
    ("gold", "predicted", "score"),
    [
        ("Paris", "  paris. ", 1.0),
        ("The Beatles", "beatles", 1.0),
        ("New  York City", "new york city!", 1.0),
        ("don't", "dont", 1.0),
        ("Ｐａｒｉｓ", "Paris", 1.0),  # full-width letters fold (NFKC)
        ("1,000", "1000", 1.0),
        ("2.5", "25", 0.0),  # a decimal point between digits is kept
        ("-5", "5", 0.0),  # so is a minus sign
        (42, "42", 1.0),
        ("a cat", "the dog", 0.0),
    ],
)
def test_normalized_exact_match(gold, predicted, score):
    assert ExactMatch().score(ex(gold), pred(predicted)).score == score


def test_exact_match_accepts_any_of_several_golds_and_reports_the_first():
    example = ex(["yes", "true"])
    assert ExactMatch().score(example, pred("True")).score == 1.0
    assert ExactMatch().score(example, pred("no")).feedback == "expected 'yes', got 'no'"


def test_punctuation_only_answers_are_not_all_equal():
    # Normalization would turn every Dyck answer into '': fall back to whitespace-only comparison.
    assert ExactMatch().score(ex("] ) }"), pred("] ) }")).score == 1.0
    assert ExactMatch().score(ex("] ) }"), pred("] ] }")).score == 0.0
    assert ExactMatch().score(ex("] ) }"), pred(" ]  ) } ")).score == 1.0


def test_exact_match_without_normalization_only_squeezes_whitespace():
    metric = ExactMatch(normalize=False)
    assert metric.score(ex("Paris"), pred(" Paris ")).score == 1.0
    assert metric.score(ex("Paris"), pred("paris")).score == 0.0


def test_normalize_answer_examples():
    assert normalize_answer("The  Answer: $1,234.50!") == "answer 1234.50"
    assert normalize_answer("An apple −3, a pear - 3") == "apple -3 pear 3"
    assert normalize_answer("state-of-the-art") == "stateoftheart"


# ------------------------------------------------------------------------------------- token F1


def test_token_f1_partial_credit_matches_the_squad_formula():
    result = TokenF1().score(ex("the Eiffel Tower"), pred("Eiffel Tower in Paris"))
    # gold tokens: eiffel tower; predicted: eiffel tower in paris -> P = 2/4, R = 2/2, F1 = 2/3
    assert result.score == pytest.approx(2 / 3)
    assert result.feedback == "token F1 0.67: expected 'the Eiffel Tower', got 'Eiffel Tower in Paris'"


@pytest.mark.parametrize(
    ("gold", "predicted", "score"),
    [
        ("Barack Obama", "barack obama", 1.0),
        ("Barack Obama", "Michelle", 0.0),
        ("the", "a", 1.0),  # both empty after normalization
        ("Obama", "", 0.0),
        ("yes yes no", "yes", 0.5),  # counts matter: P = 1/1, R = 1/3
    ],
)
def test_token_f1_edge_cases(gold, predicted, score):
    assert TokenF1().score(ex(gold), pred(predicted)).score == pytest.approx(score)


def test_token_f1_takes_the_best_gold():
    assert TokenF1().score(ex(["Obama", "Barack Obama"]), pred("Barack Obama")).score == 1.0


# ------------------------------------------------------------------------------------- numbers


def test_extract_numbers_reads_money_separators_signs_and_fractions():
    text = "Costs $1,234.50, then -3 and 3/4 of .5 (not 1,23); total 42."
    assert extract_numbers(text) == [1234.5, -3.0, 0.75, 0.5, 1.0, 23.0, 42.0]
    assert extract_numbers("3/4", fractions=False) == [3.0, 4.0]
    assert extract_numbers("x-5 and 5-3") == [5.0, 5.0, 3.0]  # a hyphen inside a word is not a minus
    assert extract_numbers("no digits here") == []


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("The answer is 42.", 42.0),
        ("The answer is 12. Check: 3 * 4 = 12, plus 1 is 13", 12.0),
        ("3 apples + 4 apples = 7 apples", 7.0),
        ("Answer: -$1,000", -1000.0),
        ("#### 1,080", 1080.0),
        ("so \\boxed{18} is it", 18.0),
        ("To answer this, 3 and 4 make 7", 7.0),  # 'answer' without 'is'/':' is not a marker
        ("nothing", None),
    ],
)
def test_answer_number(text, number):
    assert answer_number(text) == number


@pytest.mark.parametrize(
    ("gold", "predicted", "score"),
    [
        ("1234.5", "It costs $1,234.50.", 1.0),
        ("1080", "The answer is 1,080", 1.0),
        (18, "Janet makes 9 * 2 = $18 every day.", 1.0),
        ("-3", "3", 0.0),
        ("0.75", "3/4", 1.0),
        ("72", 72, 1.0),
        ("72", 72.0000001, 1.0),
        ("72", 73, 0.0),
    ],
)
def test_numeric_match(gold, predicted, score):
    assert NumericMatch().score(ex(gold), pred(predicted)).score == score


def test_numeric_match_tolerance_and_fraction_switch():
    assert NumericMatch(abs_tol=0.01).score(ex("3.14"), pred("about 3.14159")).score == 1.0
    assert NumericMatch().score(ex("3.14"), pred("about 3.14159")).score == 0.0
    assert NumericMatch(fractions=False).score(ex("0.75"), pred("3/4")).score == 0.0
    with pytest.raises(ValueError, match="tolerances must be >= 0"):
        NumericMatch(abs_tol=-1)


def test_numeric_match_feedback_and_bad_gold():
    wrong = NumericMatch().score(ex("18"), pred("She makes $17."))
    assert wrong == MetricResult(0.0, "expected 18, got 17 (read from 'She makes $17.')")
    none = NumericMatch().score(ex("18"), pred("I cannot tell."))
    assert none.score == 0.0 and "the prediction has no number" in none.feedback
    assert NumericMatch().score(ex("1"), pred(True)).score == 0.0  # a bool is not a number here
    with pytest.raises(ValueError, match="metric numeric_match: gold label 'unknown' holds no number"):
        NumericMatch().score(ex("unknown"), pred("3"))


# ------------------------------------------------------------------------------------- choice letters


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),
        ("(b)", "B"),
        ("B.", "B"),
        ("[C]", "C"),
        ("The answer is (C).", "C"),
        ("Answer: D", "D"),
        ("the answer is e", None),  # a lowercase bare letter after 'answer is' reads as a word
        ("the answer is (e)", "E"),
        ("So the answer is (A). (B) is wrong because ...", "A"),
        ("B) 12/25/1937", "B"),
        ("I think (C) fits best", "C"),
        ("(A) 12/11/1937\n(B) 12/25/1937", None),  # an echoed option list picks nothing
        ("The answer is Bob", None),
        ("no idea", None),
    ],
)
def test_extract_choice(text, letter):
    assert extract_choice(text) == letter


def test_choice_match_scores_and_explains():
    metric = ChoiceMatch()
    assert metric.score(ex("(B)"), pred("So the answer is (B).")).score == 1.0
    assert metric.score(ex("(B)"), pred("b")).score == 1.0
    assert metric.score(ex("(B)"), pred("(A)")) == MetricResult(0.0, "expected (B), got (A)")
    several = metric.score(ex("(B)"), pred("(A) one (B) two"))
    assert several.score == 0.0 and "names several options (A, B)" in several.feedback
    assert "no option letter found" in metric.score(ex("(B)"), pred("hmm")).feedback


def test_choice_match_accepts_option_text_golds_from_bbh():
    # movie_recommendation has the target "Monsters, Inc" instead of a letter upstream.
    assert ChoiceMatch().score(ex("Monsters, Inc"), pred("monsters inc")).score == 1.0
    assert ChoiceMatch().score(ex("Monsters, Inc"), pred("(A)")).score == 0.0


async def test_builtin_metrics_are_awaitable():
    assert await ExactMatch().ascore(ex("Paris"), pred("paris")) == MetricResult(1.0)
    assert (await NumericMatch().ascore(ex("3"), pred("three"))).score == 0.0
