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
