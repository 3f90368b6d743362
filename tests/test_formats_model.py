"""Every prompt format is read back from what the embedded model really writes, not only from our own demos."""

import pytest

from prompthone.data import Example
from prompthone.evaluate import Evaluator
from prompthone.lm import LM
from prompthone.lm.local.backend import LocalBackend
from prompthone.metrics import ExactMatch
from prompthone.program import Predict, Signature
from prompthone.program.params import PROMPT_FORMATS

pytestmark = pytest.mark.model

SIG = Signature(
    {"review": ""},
    {"sentiment": "one of: positive, negative"},
    "Classify the sentiment of the review. The sentiment must be exactly one of: positive, negative.",
)
EXAMPLES = [
    Example(id=str(i), inputs={"review": text}, labels={"answer": gold})
    for i, (text, gold) in enumerate(
        [
            ("A wonderful, warm film; I loved every minute.", "positive"),
            ("Dull, far too long and badly acted.", "negative"),
            ("The best meal I have had in years.", "positive"),
        ]
    )
]


@pytest.fixture(scope="module")
def qwen():
    return LocalBackend("qwen2.5-coder-0.5b", n_threads=2)


@pytest.mark.parametrize("fmt", PROMPT_FORMATS)
def test_every_format_parses_the_embedded_models_replies(qwen, tmp_path, fmt):
    lm = LM(qwen, cache=tmp_path / "c.sqlite")
    metric = ExactMatch(pred_field="sentiment")
    result = Evaluator(Predict(SIG, format=fmt), metric, lm, concurrency=1, max_tokens=24).evaluate_sync(None, EXAMPLES)
    assert result.n_errors == 0
    for r in result.records:
        assert r.status == "scored", f"{fmt}: {r.raw!r} did not parse ({r.feedback})"
        assert r.outputs["sentiment"].strip().lower() in ("positive", "negative"), f"{fmt}: {r.raw!r}"


TREC_LABELS = "abbreviation, description, entity, human, location, number"
#: the README's Python example: this classifier, at max_tokens=8
TREC = Signature(
    {"question": ""},
    {"label": f"one of: {TREC_LABELS}"},
    f"Classify the question by the type of answer it expects: {TREC_LABELS}.",
)
QUESTIONS = [
    Example(id=str(i), inputs={"question": q}, labels={"label": gold})
    for i, (q, gold) in enumerate(
        [("How many legs does a spider have ?", "number"), ("Where is the Eiffel Tower ?", "location")]
    )
]


def test_the_default_format_reads_replies_cut_off_at_a_tight_max_tokens(qwen, tmp_path):
    """The model pretty-prints its JSON for the README's classifier, so max_tokens=8 cuts the closing brace
    off; the label must still come out without JSON's quotes."""
    lm = LM(qwen, cache=tmp_path / "c.sqlite")
    module = Predict(TREC)
    assert module.format == "json"
    metric = ExactMatch(label_field="label")
    result = Evaluator(module, metric, lm, concurrency=1, max_tokens=8).evaluate_sync(None, QUESTIONS)
    assert result.n_errors == 0
    for r in result.records:
        assert r.status == "scored", f"{r.raw!r} did not parse ({r.feedback})"
        assert r.outputs["label"] in TREC_LABELS.split(", "), r.raw


def test_a_module_without_a_format_starts_in_its_models_and_the_embedded_model_answers_in_it(qwen, tmp_path):
    """The embedded model told to start modules in `labels` (as the catalog tells the 1.5B model): a module
    that names no format is rendered in it, and the real reply parses in it."""
    from prompthone.program import using

    module = Predict(SIG)
    assert module.format == "json"
    lm = LM(qwen, cache=tmp_path / "c.sqlite", start_format="labels")
    replies: list[str] = []
    lm.listeners.append(lambda c: replies.append(c.text))
    with using(lm):
        for example in EXAMPLES[:2]:
            got = module(**example.inputs)
            assert got.sentiment.strip().lower() == example.labels["answer"]
    assert module.format == "labels"
    assert len(replies) == 2 and all(r.startswith("Sentiment:") for r in replies), replies
