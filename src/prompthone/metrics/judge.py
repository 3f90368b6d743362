"""LLM-judge metrics: score an output against criteria written in words, by asking a (separate) judge model.

This is what GRAD-SUM's pitch rests on: a user gives a task description and evaluation criteria, with or
without a reference answer, and gets a metric. The judge answers with a short reasoning and a score on a
binary or graded scale; the score is mapped to [0, 1] and the reasoning becomes the `MetricResult`'s
feedback, which is what textual-gradient optimizers learn from.

Choices worth knowing:
- The judge is its own `LM` (a stronger or different model than the task model); every judge call goes
  through it, so judge calls are cached by the response cache and counted in its `usage` (give the same
  LM to `OptimizationSetup.judge_lm` so a budget counts it under the "judge" role).
- The judge runs at temperature 0: the same output gets the same verdict, so scores can be cached.
- A reply that cannot be read is retried once, as a follow-up turn that shows the judge its unreadable
  reply, says what was wrong and asks for the score line alone (at temperature 0 a plain re-ask would
  return the same text), under its own `sample_index`. A small judge that loops in its reasoning, or
  restates the output at length and never scores, does give a score when asked for nothing else; the
  first reply's reasoning stays the feedback. If the follow-up fails too, or the judge model itself
  fails, `JudgeError` is raised: a judge failure is not a wrong answer, and the evaluator records it as
  an error (never as a 0).
- A prediction without the judged field raises `MissingFieldError` like every field metric, so the
  evaluator counts it as a parse failure of the program rather than paying a judge to look at nothing.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from prompthone.data.example import Example
from prompthone.lm.client import LM
from prompthone.lm.errors import LMError
from prompthone.lm.types import Message
from prompthone.metrics.base import Metric, MetricResult, get_field
from prompthone.program.values import format_value, label_of
from prompthone.templates import render_template


class JudgeError(RuntimeError):
    """The judge gave no usable verdict (two unreadable replies, or the judge model failed).

    Not a wrong answer: the evaluator records the example as an error, which is never scored and counts
    against its `max_errors`. `replies` holds the judge's raw replies, for reading what went wrong.
    """

    def __init__(
        self, message: str, *, metric: str, example_id: str | None = None, replies: tuple[str, ...] = ()
    ) -> None:
        super().__init__(message)
        self.metric = metric
        self.example_id = example_id
        self.replies = replies


@dataclass(frozen=True)
class JudgeScale:
    """The judge's scale: integers from `low` (worst) to `high` (best), mapped linearly onto [0, 1].

    `JudgeScale.parse("binary")` is 0-1 (fails / meets the criteria); `"graded"` is 1-5; `"1-10"` (any
    `low-high`) is that range.
    """

    low: int = 0
    high: int = 1

    def __post_init__(self) -> None:
        if not isinstance(self.low, int) or not isinstance(self.high, int) or self.high <= self.low:
            raise ValueError(f"a judge scale needs integers low < high, got {self.low!r}-{self.high!r}")

    @classmethod
    def parse(cls, spec: JudgeScale | str) -> JudgeScale:
        if isinstance(spec, JudgeScale):
            return spec
        s = str(spec).strip().lower()
        if s == "binary":
            return cls(0, 1)
        if s == "graded":
            return cls(1, 5)
        m = re.fullmatch(r"(-?\d+)\s*-\s*(-?\d+)", s)
        if m:
            return cls(int(m.group(1)), int(m.group(2)))
        raise ValueError(f"unknown judge scale {spec!r}; expected 'binary', 'graded' (1-5) or 'LOW-HIGH' like '1-10'")

    @property
    def binary(self) -> bool:
        return self.high - self.low == 1

    def to_unit(self, value: int) -> float:
        return (value - self.low) / (self.high - self.low)

    def describe(self) -> str:
        """The scale as the judge reads it in its system prompt."""
        if self.binary:
            return f"{self.high} if the output meets the evaluation criteria, {self.low} if it does not."
        return (
            f"an integer from {self.low} (fails the evaluation criteria entirely) to {self.high} "
            "(meets them fully); use the values in between for partial success."
        )

    def score_format(self) -> str:
        return f"{self.low} or {self.high}" if self.binary else f"an integer from {self.low} to {self.high}"


@dataclass(frozen=True)
class Verdict:
    """What one judge reply says: the score on the judge's scale, in [0, 1], and its reasoning."""

    raw_score: int
    score: float
    reasoning: str


class VerdictParseError(ValueError):
    """A judge reply without a readable score on the scale."""


_SCORE = re.compile(
    r"score\s*(?:\*\*|__)?\s*[:=]\s*(?:\*\*|__)?\s*(-?\d+(?:\.\d+)?)(?:\s*(?:/|out of)\s*(\d+))?", re.IGNORECASE
)
_REASONING = re.compile(r"^\W*reasoning\W*?[:=]", re.IGNORECASE | re.MULTILINE)


def parse_verdict(text: str, scale: JudgeScale) -> Verdict:
    """Read a judge reply: `Reasoning: ...` / `Score: N` lines, a JSON object, or a bare number.

    The LAST `Score:` wins (a judge that restates the format ends with the score it means). A score that
    is not an integer on the scale (1.5, 7 on a 1-5 scale, "4/10" on a 1-5 scale) is unreadable, never
    clipped: guessing what the judge meant would turn a judge failure into a silent score.
    """
    t = (text or "").strip()
    if not t:
        raise VerdictParseError("the reply is empty")
    obj = _json_object(t)
    if obj is not None and "score" in obj:
        reasoning = obj.get("reasoning") or obj.get("explanation") or ""
        return _verdict(str(obj["score"]), None, str(reasoning), scale)
    matches = list(_SCORE.finditer(t))
    if matches:
        m = matches[-1]
        before = t[: m.start()]
        r = list(_REASONING.finditer(before))
        reasoning = before[r[-1].end() :] if r else before
        return _verdict(m.group(1), m.group(2), reasoning, scale)
    bare = re.fullmatch(r"\W*(-?\d+)\W*", t)
    if bare:
        return _verdict(bare.group(1), None, "", scale)
    raise VerdictParseError("no 'Score: N' line")


def _verdict(value: str, out_of: str | None, reasoning: str, scale: JudgeScale) -> Verdict:
    try:
        number = float(value)
    except ValueError:
        raise VerdictParseError(f"the score {value!r} is not a number") from None
    if out_of is not None and int(out_of) != scale.high:
        raise VerdictParseError(f"the score {value}/{out_of} is not on the {scale.low}-{scale.high} scale")
    if not number.is_integer() or not scale.low <= number <= scale.high:
        raise VerdictParseError(f"the score {value} is not an integer from {scale.low} to {scale.high}")
    raw = int(number)
    clean = " ".join(reasoning.replace("**", "").split()).strip(" -:")
    return Verdict(raw_score=raw, score=scale.to_unit(raw), reasoning=clean)


def _json_object(text: str) -> dict[str, Any] | None:
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end <= start:
        return None
    try:
        obj = json.loads(text[start : end + 1])
    except json.JSONDecodeError:
        return None
    return obj if isinstance(obj, dict) else None


SCORE_ONLY_TOKENS = 16  # the follow-up to an unreadable reply asks for "Score: N" alone


def _first_reasoning(text: str, max_chars: int = 300) -> str:
    """The reasoning of an unreadable first reply (cut off, or never scored), shortened, for feedback."""
    t = " ".join(re.sub(r"^\W*reasoning\W*:", "", text.strip(), flags=re.IGNORECASE).split())
    return (t[:max_chars].rsplit(" ", 1)[0] + " ...") if len(t) > max_chars else t


def _render(name: str, **values: object) -> str:
    return render_template(name, **values).strip()


class JudgeMetric(Metric):
    """A metric that asks `lm` to judge an output against `criteria`, optionally with a reference answer.

    >>> judge = JudgeMetric(
    ...     LM("local/qwen2.5-coder-1.5b"),
    ...     task_description="Answer the question in a few words.",
    ...     criteria="1 if the answer means the same as the reference answer; 0 if it differs, or if it "
    ...     "says it lacks the information.",
    ...     reference_field="answer",
    ... )

    `reference_field` names the example label shown as the reference (None: judge without one).
    `output_fields` are the prediction fields shown to the judge (None: every output the program returned);
    `input_fields` the example inputs shown (None: all). `scale` is a `JudgeScale` or "binary", "graded", "1-10".
    `structured=True` asks backends that can constrain decoding for a JSON verdict.
    """

    def __init__(
        self,
        lm: LM,
        *,
        task_description: str,
        criteria: str,
        reference_field: str | None = None,
        output_fields: Sequence[str] | None = ("answer",),
        input_fields: Sequence[str] | None = None,
        scale: JudgeScale | str = "binary",
        max_tokens: int = 200,
        structured: bool = False,
        name: str | None = None,
    ) -> None:
        if not isinstance(lm, LM):
            raise TypeError(f"the judge must be an LM, got {type(lm).__name__}")
        for what, text in (("task_description", task_description), ("criteria", criteria)):
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"a judge metric needs a non-empty {what} written in words")
        self.lm = lm
        self.task_description = task_description.strip()
        self.criteria = criteria.strip()
        self.reference_field = reference_field
        self.output_fields = tuple(output_fields) if output_fields is not None else None
        if self.output_fields == ():
            raise ValueError("output_fields must name at least one prediction field, or be None for all")
        self.input_fields = tuple(input_fields) if input_fields is not None else None
        self.scale = JudgeScale.parse(scale)
        self.max_tokens = int(max_tokens)
        self.structured = structured
        # The name keys cached scores, so it changes with everything that can change a verdict.
        config = {
            "judge": lm.identity,
            "task": self.task_description,
            "criteria": self.criteria,
            "reference": reference_field,
            "outputs": self.output_fields,
            "inputs": self.input_fields,
            "scale": [self.scale.low, self.scale.high],
            "max_tokens": self.max_tokens,
            "structured": structured,
        }
        digest = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]
        self.name = f"{name or 'judge'}:{digest}"

    # -- prompt ---------------------------------------------------------------------------------------
    def _shown_outputs(self, example: Example, prediction: Mapping[str, Any]) -> dict[str, Any]:
        if self.output_fields is None:
            shown = {k: v for k, v in prediction.items() if v is not None}
            if not shown:
                raise ValueError(f"metric {self.name}: the prediction for {example.id!r} has no outputs to judge")
            return shown
        return {
            f: get_field(prediction, f, metric=self.name, side="prediction", example=example)
            for f in self.output_fields
        }

    def messages(self, example: Example, prediction: Mapping[str, Any]) -> list[Message]:
        """The chat the judge is sent for this (example, prediction): system rules, then the case."""
        outputs = self._shown_outputs(example, prediction)
        inputs = {k: v for k, v in example.inputs.items() if self.input_fields is None or k in self.input_fields}
        values: dict[str, object] = dict(
            task_description=self.task_description,
            criteria=self.criteria,
            inputs=_fields_text(inputs) or "(none)",
            output=_fields_text(outputs),
        )
        template = "judge_user"
        if self.reference_field is not None:
            gold = get_field(example.labels, self.reference_field, metric=self.name, side="label", example=example)
            values["reference"] = _reference_text(gold)
            template = "judge_user_reference"
        system = _render("judge_system", scale=self.scale.describe(), score_format=self.scale.score_format())
        return [{"role": "system", "content": system}, {"role": "user", "content": _render(template, **values)}]

    def _schema(self) -> dict[str, Any] | None:
        if not self.structured:
            return None
        return {
            "type": "object",
            "properties": {
                "reasoning": {"type": "string"},
                "score": {"type": "integer", "enum": list(range(self.scale.low, self.scale.high + 1))},
            },
            "required": ["reasoning", "score"],
            "additionalProperties": False,
        }

    # -- scoring --------------------------------------------------------------------------------------
    async def ascore(self, example: Example, prediction: Mapping[str, Any]) -> MetricResult:
        """Ask the judge (temperature 0); one follow-up if its reply is unreadable, then `JudgeError`.

        The follow-up asks for the score line alone, in a few tokens; the first reply's reasoning (its
        opening, when it was cut off at the token limit) is kept as the feedback.
        """
        if not isinstance(prediction, Mapping):
            raise TypeError(f"metric {self.name}: a prediction must be a mapping, got {type(prediction).__name__}")
        messages = self.messages(example, prediction)
        replies: list[str] = []
        problem = ""
        first_reasoning = ""
        for attempt in range(2):
            max_tokens = self.max_tokens
            if attempt == 1:
                retry = _render("judge_retry", problem=problem, score_format=self.scale.score_format())
                max_tokens = SCORE_ONLY_TOKENS
                messages = [
                    *messages,
                    {"role": "assistant", "content": replies[-1]},
                    {"role": "user", "content": retry},
                ]
            try:
                completion = await self.lm.complete(
                    messages,
                    temperature=0.0,
                    max_tokens=max_tokens,
                    sample_index=attempt,
                    response_format=self._schema(),
                )
            except LMError as exc:
                raise JudgeError(
                    f"metric {self.name}: the judge model failed on example {example.id!r}: "
                    f"{type(exc).__name__}: {exc}",
                    metric=self.name,
                    example_id=example.id,
                    replies=tuple(replies),
                ) from exc
            replies.append(completion.text)
            try:
                verdict = parse_verdict(completion.text, self.scale)
            except VerdictParseError as exc:
                problem = str(exc)
                if attempt == 0:
                    if completion.finish_reason == "length":
                        problem = "it ran past its length limit before it gave the score"
                    first_reasoning = _first_reasoning(completion.text)
                continue
            if first_reasoning and not verdict.reasoning:
                verdict = replace(verdict, reasoning=first_reasoning)
            return MetricResult(verdict.score, self._feedback(verdict))
        raise JudgeError(
            f"metric {self.name}: the judge's reply on example {example.id!r} could not be read twice "
            f"({problem}); last reply: {replies[-1][:200]!r}",
            metric=self.name,
            example_id=example.id,
            replies=tuple(replies),
        )

    def _feedback(self, verdict: Verdict) -> str:
        reasoning = verdict.reasoning or "(the judge gave no reasoning)"
        return f"judge score {verdict.raw_score} on a {self.scale.low}-{self.scale.high} scale: {reasoning}"


#: below this many judged outputs, the share of top scores says little about the judge
LENIENT_MIN_OUTPUTS = 10
#: a judge that gives the top score to at least this share of the start's outputs is flagged
LENIENT_SHARE = 0.85


def lenient_judge_warning(scores: Sequence[float]) -> str | None:
    """A warning when a judge gave the top score to nearly every output of the start (`LENIENT_SHARE` of
    at least `LENIENT_MIN_OUTPUTS`).

    Why: a small judge can answer 1 to almost everything whatever its criteria say (the 1.5B judge did
    on 57 of 59 sports verdicts, wrong ones included, and on 25 of 29 (86%) TREC outputs its criteria
    rule out). Its scores then carry little signal and leave no room to rise, so a run would spend its
    budget to report "no gain" without saying why. Checked on the start's test outputs, at no extra
    cost. A start that truly meets the criteria almost everywhere triggers it too, and then there is
    little to optimize either. (A start scored 0 everywhere is common and leaves room, so it is not
    flagged.)
    """
    top = sum(1 for s in scores if s >= 1.0)
    if len(scores) < LENIENT_MIN_OUTPUTS or top < LENIENT_SHARE * len(scores):
        return None
    return (
        f"the judge gave the top score to {top} of the start's {len(scores)} judged outputs. Either the "
        "start already meets the criteria almost everywhere (little to optimize), or the judge is not "
        "applying them: read a few verdicts (the feedback in the run's report) and try a stronger judge "
        "model or more concrete criteria before trusting this run."
    )


def _fields_text(values: Mapping[str, Any]) -> str:
    lines = []
    for k, v in values.items():
        text = format_value(v)
        lines.append(f"{label_of(k)}:\n{text}" if "\n" in text else f"{label_of(k)}: {text}")
    return "\n".join(lines)


def _reference_text(gold: Any) -> str:
    if isinstance(gold, list | tuple):
        if len(gold) == 1:
            return format_value(gold[0])
        return "any of: " + "; ".join(format_value(g) for g in gold)
    return format_value(gold)


__all__ = [
    "JudgeError",
    "JudgeMetric",
    "JudgeScale",
    "Verdict",
    "VerdictParseError",
    "lenient_judge_warning",
    "parse_verdict",
]
