"""OPRO's settings: the paper's defaults, with its ablation switches (see `OPRO`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prompthone.optimize.opro.meta import ORDERS
from prompthone.optimize.settings import MethodSettings
from prompthone.program.params import POSITIONS


@dataclass(frozen=True)
class OPROSettings(MethodSettings):
    """Defaults are the paper's: 8 candidates a step at temperature 1.0, the best 20 earlier instructions
    shown in ascending order of score bucketized to integers 0-100, 3 exemplars, the instruction before
    the question. The settings the paper ablated are switches here: `history_order` ("ascending",
    "descending", "random"), `score_buckets` (None: unrounded), `n_exemplars`, `candidates_per_step`,
    `temperature`, `start_instruction` (None: the program's own; "" is allowed).

    `steps` is per optimized module; `modules` picks which (default: all, in program order); `position`
    ("system", "question_begin", "question_end", "answer_start", or a mapping per module) is where
    proposed instructions sit; `train_batch` fixes a seeded subset of the training set to score on
    (None: all of it); `val_every`, `val_top_k`, `patience` and `min_delta` govern validation and the
    early stop.
    """

    method = "opro"

    steps: int = 20
    candidates_per_step: int = 8
    temperature: float = 1.0
    max_history: int = 20
    history_order: str = "ascending"
    score_buckets: int | None = 100
    n_exemplars: int = 3
    start_instruction: str | Mapping[str, str] | None = None
    position: str | Mapping[str, str] = "system"
    modules: Sequence[str] | None = None
    train_batch: int | None = None
    val_every: int = 2
    val_top_k: int = 2
    patience: int = 3
    min_delta: float = 0.0
    proposer_max_tokens: int = 300
    max_instruction_chars: int = 800

    def validate(self) -> None:
        for key in ("steps", "candidates_per_step", "max_history", "val_every", "val_top_k", "patience"):
            self.at_least(key, 1)
        self.at_least("n_exemplars", 0)
        self.at_least("proposer_max_tokens", 16)
        self.at_least("max_instruction_chars", 1)
        self.at_least("train_batch", 1, optional=True)
        self.at_least("score_buckets", 1, optional=True)
        self.in_range("temperature", 0.0, 2.0)
        self.one_of("history_order", ORDERS)
        for p in self.position.values() if isinstance(self.position, Mapping) else [self.position]:
            if p not in POSITIONS:
                self._fail("position", f"one of {list(POSITIONS)} (or a mapping per module)")
        self.normalize("min_delta", float(self.min_delta))
        if self.modules is not None:
            self.normalize("modules", list(self.modules))
