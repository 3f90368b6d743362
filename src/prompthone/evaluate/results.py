"""What an evaluation returns: one record per example, and the summary an optimizer compares."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from prompthone.evaluate.stats import mean_ci

Status = Literal["scored", "parse_failure", "error"]


@dataclass(frozen=True)
class ExampleRecord:
    """How one candidate did on one example.

    `status` keeps three outcomes apart: "scored" (the metric judged the outputs), "parse_failure"
    (the reply could not be read into the fields the metric needs: counted as score 0 in the mean,
    and counted on its own), and "error" (the LM or the program failed: no score, never a 0).
    """

    example_id: str
    status: Status
    score: float | None
    outputs: dict[str, Any]
    feedback: str | None = None
    error: str | None = None
    parse_failures: int = 0
    raw: str = ""  # the last module's raw reply, for reading failures
    latency_s: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    lm_calls: int = 0
    cached: bool = False  # every LM call of this example was served from a cache (or the score cache)

    @property
    def counted_score(self) -> float | None:
        """The score that enters the mean: parse failures count as 0, errors are left out."""
        if self.status == "error":
            return None
        return 0.0 if self.status == "parse_failure" else self.score

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExampleRecord:
        return cls(**d)


@dataclass
class EvalResult:
    """All records of one evaluation, with the mean and its 95% confidence interval."""

    candidate_hash: str
    records: list[ExampleRecord]
    wall_s: float = 0.0
    traces: dict[str, list] = field(default_factory=dict, repr=False)  # example id -> ModuleCalls

    @property
    def scores(self) -> list[float]:
        return [s for r in self.records if (s := r.counted_score) is not None]

    @property
    def mean(self) -> float:
        return mean_ci(self.scores)[0]

    @property
    def ci95(self) -> tuple[float, float]:
        _, lo, hi = mean_ci(self.scores)
        return (lo, hi)

    @property
    def n(self) -> int:
        return len(self.records)

    @property
    def n_scored(self) -> int:
        return sum(r.status == "scored" for r in self.records)

    @property
    def n_parse_failures(self) -> int:
        return sum(r.status == "parse_failure" for r in self.records)

    @property
    def n_errors(self) -> int:
        return sum(r.status == "error" for r in self.records)

    @property
    def prompt_tokens(self) -> int:
        return sum(r.prompt_tokens for r in self.records)

    @property
    def completion_tokens(self) -> int:
        return sum(r.completion_tokens for r in self.records)

    def by_id(self) -> dict[str, ExampleRecord]:
        return {r.example_id: r for r in self.records}

    def summary(self) -> str:
        lo, hi = self.ci95
        return (
            f"{self.mean:.3f} (95% CI {lo:.3f}-{hi:.3f}) on {self.n} examples: {self.n_scored} scored, "
            f"{self.n_parse_failures} parse failures, {self.n_errors} errors"
        )
