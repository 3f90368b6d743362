"""GRAD-SUM's settings, and its ablation's (see `GradSum`, `GradSumNoSummary`)."""

from __future__ import annotations

from dataclasses import dataclass

from prompthone.optimize.settings import MethodSettings

ATTRIBUTIONS = ("lm", "last")


@dataclass(frozen=True)
class GradSumSettings(MethodSettings):
    """`beam_width` prompts kept; `edits_per_prompt` new prompts per beam prompt and iteration;
    `iterations`; `minibatch_size` training examples per iteration; `patience` iterations without a
    better validation score before stopping (`min_delta` is how much better counts); `max_gradients` per
    prompt and iteration (failures beyond it are sampled); `edit_temperature` for the edits;
    `attribution` "lm" (ask the proposer which module went wrong, when no module failed to parse) or
    "last" (blame the last module called); `max_chars` caps each value shown to the proposer;
    `task_description` is the user's task in words (a judge metric's, when not given)."""

    method = "gradsum"

    beam_width: int = 3
    edits_per_prompt: int = 2
    iterations: int = 4
    minibatch_size: int = 8
    patience: int = 2
    min_delta: float = 0.0
    max_gradients: int = 8
    edit_temperature: float = 1.0
    attribution: str = "lm"
    max_chars: int = 600
    task_description: str | None = None

    def validate(self) -> None:
        for key in ("beam_width", "edits_per_prompt", "iterations", "minibatch_size", "patience", "max_gradients"):
            self.at_least(key, 1)
        self.at_least("max_chars", 50)  # values shown to the proposer
        self.in_range("edit_temperature", 0.0, 2.0, low_open=True)
        self.one_of("attribution", ATTRIBUTIONS)
        if not isinstance(self.min_delta, int | float) or isinstance(self.min_delta, bool) or self.min_delta < 0:
            self._fail("min_delta", "a number >= 0")
        self.normalize("min_delta", float(self.min_delta))
        self.normalize("task_description", self.task_description.strip() if self.task_description else None)


@dataclass(frozen=True)
class GradSumNoSummarySettings(GradSumSettings):
    """GRAD-SUM's settings, and `failures_per_edit`: how many raw gradients each edit is written from."""

    method = "gradsum-nosum"

    failures_per_edit: int = 2

    def validate(self) -> None:
        super().validate()
        self.at_least("failures_per_edit", 1)
