"""The parity world (test_mipro_world.py) with a task model that answers right only in one prompt format,
and a footprint of a run (its trials, every request sent, its stored study) to compare runs byte for byte.

Only names that existed before formats could be searched are used here, so the same footprint can be
taken with the code before the change (how the golden values in test_format_search.py were made).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import optuna

from prompthone.lm.types import Request
from test_mipro_world import number_of

#: the one format in which the scripted task model knows the answer
GOOD_FORMAT = "tags"


def request_format(req: Request) -> str:
    """Which prompt format a request was rendered in, read from its system message."""
    system = req.messages[0][1]
    if "Inputs, each inside its tags" in system:
        return "tags"
    if "one JSON object" in system:
        return "json"
    if "Your task:" in system:
        return "recap"
    return "labels"


def format_answer(req: Request) -> str:
    """Right on every question in `GOOD_FORMAT` (answering in its tags), right on 1 in 5 otherwise,
    whatever the instruction and the demos."""
    n = number_of(req)
    right = "even" if n % 2 == 0 else "odd"
    if request_format(req) == GOOD_FORMAT:
        return f"<answer>{right}</answer>"
    return f"Answer: {right if n % 5 == 0 else ('odd' if right == 'even' else 'even')}"


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def footprint(result: Any, backends: list[Any], storage: str | None = None) -> dict[str, Any]:
    """What must not change when format search is off: the trials (candidate hash, score, kind), every
    request sent to the task and proposer models (as a multiset: the order requests leave in is not
    part of a run's result), and the stored Optuna study (its name, attributes and trials)."""
    out: dict[str, Any] = {
        "trail": digest([(t.candidate.hash, round(t.score, 9), t.full, t.info.get("phase")) for t in result.trials]),
        "requests": digest(sorted(repr(r) for b in backends for r in b.requests)),
        "best": result.best.hash,
    }
    if storage is not None:
        name = result.info["study"]
        study = optuna.load_study(study_name=name, storage=f"sqlite:///{storage}")
        trials = [(t.number, t.state.name, t.params, t.value, t.user_attrs) for t in study.get_trials()]
        out |= {"study": name, "study_attrs": digest(study.user_attrs), "study_trials": digest(trials)}
    return out
