"""Evaluation: score a candidate on examples, concurrently, keeping errors apart from wrong answers."""

from prompthone.evaluate.evaluator import EvaluationError, Evaluator
from prompthone.evaluate.results import EvalResult, ExampleRecord
from prompthone.evaluate.score_cache import ScoreCache, score_key
from prompthone.evaluate.stats import mean_ci

__all__ = [
    "EvalResult",
    "EvaluationError",
    "Evaluator",
    "ExampleRecord",
    "ScoreCache",
    "mean_ci",
    "score_key",
]
