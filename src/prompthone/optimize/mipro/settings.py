"""MIPRO's settings, presets and the numbers derived from them (trials, start-up trials, val size).

Presets follow the reference defaults (DSPy MIPROv2) where the paper is silent:

| preset | candidates n per module | validation examples used | trials (1 module / 2 modules) |
|--------|------|------|---------|
| light  | 6    | 100  | 11 / 21 |
| medium | 12   | 300  | 18 / 29 |
| heavy  | 18   | 1000 | 27 / 34 |

Under a preset, as under MIPROv2's `auto`, a module gets n demo sets and n/2 instructions (the start's
and n/2 - 1 proposals) when demos are searched too (`num_instructions_with_demos`), n instructions when
only instructions are (0-shot MIPRO). A `num_candidates` given outright is both counts, as in MIPROv2
without `auto`; `num_instructions` and `num_demo_sets` set either count outright.

Trials default to max(2·V·log2(n), 1.5·n), rounded up, with V the number of searched variables
(modules × 2 for MIPRO, modules × 1 for the 0-shot and demos-only variants) and n the candidates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Any

from prompthone.optimize.format_search import check_search_formats
from prompthone.optimize.settings import MethodSettings

PRESETS: dict[str, dict[str, Any]] = {
    "light": {"num_candidates": 6, "num_instructions_with_demos": 3, "val_size": 100},
    "medium": {"num_candidates": 12, "num_instructions_with_demos": 6, "val_size": 300},
    "heavy": {"num_candidates": 18, "num_instructions_with_demos": 9, "val_size": 1000},
}


@dataclass(frozen=True)
class MIPROSettings(MethodSettings):
    """Every knob of the MIPRO family; `preset` (light, medium, heavy: DSPy's `auto`) picks
    the values that explicit settings override.

    Search: `num_trials` (None: from the formula in the module docstring), `minibatch_size` examples
    per trial from a fixed seeded schedule, a full validation score every `full_eval_every` trials,
    `n_startup_trials` random trials before TPE models (None: 20% of trials, at least 2),
    `parallel_trials` in flight at once (None: 1 when the task LM serves one request at a time, as the
    embedded model does, else 4), `storage` a SQLite file or database URL for the Optuna study (None:
    the run's own store, `setup.storage_url`, if the runner gives one, else in memory).
    Demos: `max_bootstrapped_demos` and `max_labeled_demos` per set (`max_demos`: at most this many in
    all, the labelled ones topping a set up to it; None: both counts add up), `teacher_labeled` labelled demos
    shown to the teacher while bootstrapping, `metric_threshold` for a trace to pass, `cover_labels`
    (demo sets of a module whose output is a small label set show distinct labels before repeats).
    Proposals: `proposal_temperature`, `proposer_max_tokens`, `max_attempts` per proposal, which
    grounding is shown (`ground_dataset` with `summary_batches` batches read, `ground_program`,
    `ground_demos`), `tips` on or off, and (MIPRO++) `history_size` earlier instructions shown.
    Formats: `search_formats` (a list of `PROMPT_FORMATS`, True: all of them, False: none, or a mapping
    from a start format to one of these) adds one categorical `{module}::format` per module whose
    start is in another format, the start's format first; it shares the trials (the default trial
    count does not grow with it). The default, `{"json": ["tags"]}`, lets a module that starts in JSON
    (a `Predict`'s start, unless its model's start format is another) take the tagged layout: measured
    on trec-label at the light preset, three seeds, it raised the test score from 0.575 / 0.600 / 0.605
    (the earlier default, `["labels"]`) to 0.640 / 0.655 / 0.655 (n=200; docs/benchmarks.md); a module
    that starts in labelled lines (a `ChainOfThought`'s) searches nothing.

    Values are kept exactly as given (no int-to-float normalizing): they are part of the study's
    fingerprint, which a resumed run must match.
    """

    method = "mipro"

    preset: str | None = "light"
    num_candidates: int = 6
    num_instructions: int | None = None  # None: num_candidates (or the next, when demos are searched too)
    num_instructions_with_demos: int | None = None  # a preset's pool beside demo sets; None: as above
    num_demo_sets: int | None = None  # None: num_candidates
    val_size: int = 100
    num_trials: int | None = None
    minibatch_size: int = 35
    full_eval_every: int = 6
    n_startup_trials: int | None = None
    parallel_trials: int | None = None
    storage: str | None = None
    study_name: str | None = None
    max_bootstrapped_demos: int = 4
    max_labeled_demos: int = 4
    max_demos: int | None = None  # a set's demos in all (None: max_bootstrapped_demos + max_labeled_demos)
    teacher_labeled: int = 4
    metric_threshold: float = 1.0
    cover_labels: bool = True
    proposal_temperature: float = 1.0
    proposer_max_tokens: int = 200
    max_attempts: int = 3
    ground_dataset: bool = True
    summary_batches: int = 3  # batches of 10 training examples the proposer reads for the data summary
    ground_program: bool = True
    ground_demos: bool = True
    tips: bool = True
    history_size: int = 5  # MIPRO++: earlier instructions shown with their scores
    #: bool, a list of format names or a mapping from a start format to either; typed Any so that
    #: `validate` gives the one message for every kind
    search_formats: Any = field(default_factory=lambda: {"json": ("tags",)})

    @classmethod
    def build(cls, preset: str | None = "light", **overrides: Any) -> MIPROSettings:  # type: ignore[override]
        """A preset's values, then `overrides`; unknown names raise, listing the known ones."""
        known = {f.name for f in fields(cls)} - {"preset"}
        unknown = sorted(set(overrides) - known)
        if unknown:
            hint = " (DSPy's `auto` is called `preset` here)" if "auto" in unknown else ""
            raise TypeError(
                f"unknown MIPRO setting(s) {unknown}{hint}; known settings: preset, {', '.join(sorted(known))}"
            )
        if preset is not None and preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; expected one of {', '.join(PRESETS)} or None")
        values = dict(PRESETS[preset]) if preset else {}
        if "num_candidates" in overrides:  # candidates given outright are both counts (MIPROv2 without `auto`)
            values.pop("num_instructions_with_demos", None)
        values.update({k: v for k, v in overrides.items() if v is not None or k in ("storage", "study_name")})
        return cls(preset=preset, **values)

    def validate(self) -> None:
        for name in ("num_candidates", "val_size", "minibatch_size", "full_eval_every", "max_attempts",
                     "summary_batches"):  # fmt: skip
            self.at_least(name, 1)
        for name in ("num_trials", "n_startup_trials", "parallel_trials", "num_instructions", "num_demo_sets",
                     "max_demos", "num_instructions_with_demos"):  # fmt: skip
            self.at_least(name, 1, optional=True)
        for name in ("max_bootstrapped_demos", "max_labeled_demos", "teacher_labeled", "history_size"):
            self.at_least(name, 0)
        self.boolean("cover_labels")
        check_search_formats(self)
        self.in_range("proposal_temperature", 0.0, 2.0, low_open=True, normalize=False)

    def instructions_for(self, searches_demos: bool) -> int:
        """Instruction candidates per module, the start's included: `num_instructions`, else the preset's
        smaller pool when demos are searched too (MIPROv2's `auto` halves it the same way; on trec-label,
        5 seeds: validation 0.738 with 3 vs 0.734 with 6, test 0.663 vs 0.643, n=200 each;
        docs/benchmarks.md), else `num_candidates`."""
        if self.num_instructions:
            return self.num_instructions
        if searches_demos and self.num_instructions_with_demos:
            return self.num_instructions_with_demos
        return self.num_candidates

    @property
    def n_demo_sets(self) -> int:
        return self.num_demo_sets or self.num_candidates

    def trials_for(self, n_variables: int, n_candidates: int) -> int:
        """`num_trials`, or the default max(2·V·log2(n), 1.5·n) rounded up (at least 2)."""
        if self.num_trials is not None:
            return int(self.num_trials)
        n = max(2, n_candidates)
        return max(2, math.ceil(max(2 * n_variables * math.log2(n), 1.5 * n)))

    def startup_for(self, n_trials: int) -> int:
        """TPE's random start-up sized to the budget: 20% of the trials, at least 2 (never all of them
        when there are more than 2), so a short run still gets model-guided trials."""
        if self.n_startup_trials is not None:
            return int(self.n_startup_trials)
        return max(2, min(n_trials - 1, math.ceil(0.2 * n_trials))) if n_trials > 2 else n_trials

    def parallel_for(self, task_lm_concurrency: int) -> int:
        if self.parallel_trials is not None:
            return int(self.parallel_trials)
        # One context serving one request at a time gains nothing from interleaving trials, and loses
        # its prompt-prefix reuse between consecutive calls of one candidate.
        return 1 if task_lm_concurrency <= 1 else 4
