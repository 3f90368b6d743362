"""MIPRO's resume state, in one place: the Optuna study of a run and what is mirrored in it.

A MIPRO run resumes from its study (normally in the run's own store): the study carries a fingerprint
of what the run is (settings, plan, data, models, seed: another run must not continue it), the start's
full score and per-example baseline, the candidate pool (`Pool`, as JSON: trial parameters index into
it, so a resumed run must see exactly the same pool), every candidate a trial named (by hash), every
full evaluation, and how far the run got. `MIPRORun` is one run's state: it writes those as the run
goes (`persist`, `remember`, `save_start`, `save_pool`) and reads them back (`restore_start`,
`stored_pool`, `restore_trials`, which re-enters what an earlier process scored without re-scoring
it). The search itself lives in `mipro.optimizer`.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from prompthone.data.example import Example
from prompthone.evaluate import EvalResult
from prompthone.optimize.base import OptimizationSetup, Run, Trial
from prompthone.optimize.format_search import fingerprint_settings, format_choices
from prompthone.optimize.mipro.search import ConfigStats, MinibatchSchedule, open_study
from prompthone.optimize.mipro.settings import MIPROSettings
from prompthone.optimize.proposers import DemoSet, Grounding, ProposalLog
from prompthone.program import Candidate, Demo
from prompthone.sqlurl import safe_url


@dataclass
class Pool:
    """Everything proposed before the search: it is what trial parameters index into, so a resumed
    study must see exactly the same pool (it is stored in the study)."""

    instructions: dict[str, list[str]]
    demo_sets: dict[str, list[DemoSet]]
    proposer_demos: dict[str, list[DemoSet]]
    grounding: Grounding
    bootstrap: dict[str, int] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        def sets(d: Mapping[str, Sequence[DemoSet]]) -> dict[str, list[list[dict[str, str]]]]:
            return {m: [[x.to_dict() for x in s] for s in v] for m, v in d.items()}

        return {
            "instructions": self.instructions,
            "demo_sets": sets(self.demo_sets),
            "proposer_demos": sets(self.proposer_demos),
            "grounding": {
                "dataset_summary": self.grounding.dataset_summary,
                "program_description": self.grounding.program_description,
                "module_roles": dict(self.grounding.module_roles),
            },
            "bootstrap": self.bootstrap,
        }

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> Pool:
        def sets(v: Mapping[str, Any]) -> dict[str, list[DemoSet]]:
            return {m: [tuple(Demo(x) for x in s) for s in lst] for m, lst in v.items()}

        g = d["grounding"]
        return cls(
            instructions={m: list(v) for m, v in d["instructions"].items()},
            demo_sets=sets(d["demo_sets"]),
            proposer_demos=sets(d["proposer_demos"]),
            grounding=Grounding(g["dataset_summary"], g["program_description"], dict(g["module_roles"])),
            bootstrap=dict(d.get("bootstrap", {})),
        )


def fingerprint(
    optimizer: str, settings: MIPROSettings, setup: OptimizationSetup, val: Sequence[Example], plan: dict[str, int]
) -> str:
    """What makes a run this run: a study with another fingerprint belongs to another run."""
    assert setup.start is not None
    kept = {k: v for k, v in vars(settings).items() if k not in ("storage", "study_name")}
    modules = setup.program.named_modules()
    if all(len(format_choices(setup.start[m].format, settings.search_formats)) == 1 for m in modules):
        kept.pop("search_formats", None)  # searches no format: the fingerprint a run had before formats were
    if kept.get("max_demos") is None:
        kept.pop("max_demos", None)  # no cap: the fingerprint a run had before the setting existed
    if kept.get("num_instructions_with_demos") is None:
        kept.pop("num_instructions_with_demos", None)  # candidates given outright: as before it existed
    payload = {
        "optimizer": optimizer,
        "settings": fingerprint_settings(kept),
        "plan": plan,
        "program": f"{type(setup.program).__module__}.{type(setup.program).__qualname__}",
        "start": setup.start.hash,
        "train": [e.id for e in setup.trainset],
        "val": [e.id for e in val],
        "seed": setup.seed,
        "task_lm": setup.task_lm.model,
        "proposer_lm": setup.proposer_lm.model if setup.proposer_lm else None,
        "teacher_lm": setup.teacher_lm.model if setup.teacher_lm else None,
        "metric": setup.evaluator.metric.name,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def open_run_study(
    storage: str | None,
    optimizer: str,
    settings: MIPROSettings,
    setup: OptimizationSetup,
    val: Sequence[Example],
    plan: dict[str, int],
) -> optuna.Study:
    """The run's study: a new one, or the one an earlier process of this same run left (resume); a
    study of another run under the same name is refused."""
    mark = fingerprint(optimizer, settings, setup, val, plan)
    study = open_study(storage, settings.study_name or f"{optimizer}-{mark[:16]}", setup.seed)
    stored = study.user_attrs.get("fingerprint")
    if stored is not None and stored != mark:
        raise ValueError(
            f"study {study.study_name!r} in {safe_url(storage)} belongs to a different run (other data, "
            "settings, models or seed); give another study_name or storage file to start afresh"
        )
    if stored is None:
        study.set_user_attr("fingerprint", mark)
    return study


class MIPRORun(Run):
    """The state of one MIPRO `optimize` call; what must survive a kill is mirrored in its study."""

    #: set by `open` once the study is there
    val: list[Example]
    study: optuna.Study
    schedule: MinibatchSchedule

    def __init__(self, setup: OptimizationSetup, settings: MIPROSettings) -> None:
        super().__init__(setup)
        self.s = settings
        self.opened = False
        self.n_trials = self.n_startup = self.parallel = 0
        self.minibatching = False
        self.stats: dict[str, ConfigStats] = {}
        self.baseline: dict[str, float] = {}
        self.start_full = math.nan
        self.full_log: list[dict[str, Any]] = []
        self.processed = 0
        self.final_done = False
        self.failures: list[dict[str, Any]] = []
        self.log: ProposalLog = []
        self.pool: Pool | None = None
        self.live: dict[int, optuna.Trial] = {}
        #: trial number -> the minibatch it is scored on, and the configuration of each trial asked but not told
        self.batch_of: dict[int, int] = {}
        self.in_flight: dict[int, str] = {}
        self.resumed = False
        self.known: set[str] = set()

    def open(self, val: list[Example], study: optuna.Study, plan: Mapping[str, int]) -> None:
        """Start on `study` with the validation examples and the plan's sizes."""
        self.val = val
        self.study = study
        self.n_trials, self.n_startup, self.parallel = plan["trials"], plan["startup_trials"], plan["parallel_trials"]
        self.minibatching = self.s.minibatch_size < len(val)
        self.schedule = MinibatchSchedule(val, self.s.minibatch_size, self.setup.rng("mipro:minibatches"))
        self.known = {k for k in study.user_attrs if k.startswith("cand:")}
        self.opened = True

    def format_choices(self, module: str) -> list[str]:
        """The prompt formats `module` may take in this run (its start's first; one: not searched)."""
        assert self.setup.start is not None
        return format_choices(self.setup.start[module].format, self.s.search_formats)

    def baseline_mean(self, examples: Sequence[Example]) -> float:
        vals = [self.baseline[e.id] for e in examples if e.id in self.baseline]
        return sum(vals) / len(vals) if vals else self.start_full

    # -- writing the study --------------------------------------------------------------------------
    def persist(self, key: str, value: Any) -> None:
        self.study.set_user_attr(key, value)

    def remember(self, candidate: Candidate) -> None:
        """Store a candidate in the study once, so trials can name it by hash."""
        key = f"cand:{candidate.hash}"
        if key not in self.known:
            self.study.set_user_attr(key, candidate.to_dict())
            self.known.add(key)

    def save_start(self, trial: Trial, result: EvalResult) -> None:
        """The start's full score and per-example scores (the baseline trials are paired against)."""
        start = self.setup.start
        assert start is not None
        self.start_full = trial.score
        self.baseline = {r.example_id: s for r in result.records if (s := r.counted_score) is not None}
        self.full_log = [{"hash": start.hash, "score": trial.score, "n": trial.n, "after": 0, "at": 0, "kind": "start"}]
        self.remember(start)
        self.persist("baseline", self.baseline)
        self.persist("full", self.full_log)

    def save_pool(self, pool: Pool) -> None:
        self.persist("pool", pool.to_json())

    # -- reading it back ----------------------------------------------------------------------------
    def restore_start(self) -> bool:
        """Read back the start's score, the full evaluations and the progress an earlier process
        stored; False when the study is new."""
        attrs = self.study.user_attrs
        if not attrs.get("full"):
            return False
        self.resumed = True
        self.full_log = list(attrs["full"])
        self.baseline = dict(attrs["baseline"])
        self.processed = int(attrs.get("processed", 0))
        self.final_done = bool(attrs.get("final_done", False))
        self.start_full = float(self.full_log[0]["score"])
        return True

    def stored_pool(self) -> Pool | None:
        stored = self.study.user_attrs.get("pool")
        return None if stored is None else Pool.from_json(stored)

    def candidate(self, h: str) -> Candidate:
        """A candidate a trial named by hash."""
        return Candidate.from_json(self.study.user_attrs[f"cand:{h}"])

    def restore_trials(self) -> None:
        """Re-enter what an earlier process already scored (nothing when the study is new), in the order
        a live run recorded it: the start, then each finished trial with the full evaluations made by then."""
        start = self.setup.start
        assert start is not None
        entries = list(self.full_log)
        # the start's full score first, as in a live run
        first = entries.pop(0)
        if self.resumed:
            self.record(start, float(first["score"]), int(first["n"]), full=True, phase="start")
        self.stats.setdefault(start.hash, ConfigStats(start, -1))
        self.stats[start.hash].full = self.start_full
        done = sorted(
            self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)),
            key=lambda t: t.number,
        )
        for finished, t in enumerate(done, 1):
            if t.state == TrialState.COMPLETE:
                h = t.user_attrs["candidate"]
                st = self.stats.setdefault(h, ConfigStats(self.candidate(h), t.number))
                st.minibatch.append((int(t.user_attrs["batch"]), float(t.user_attrs["score"]), float(t.value)))
                self.record(
                    st.candidate, float(t.user_attrs["score"]), int(t.user_attrs["n"]), full=not self.minibatching,
                    phase="trial", optuna_trial=t.number, batch=t.user_attrs["batch"], advantage=t.value,
                    restored=True,
                )  # fmt: skip
                if not self.minibatching:
                    st.full = float(t.user_attrs["score"])
            else:
                self.failures.append({"trial": t.number, "error": t.user_attrs.get("error", "")})
            entries = self._restore_full(entries, finished)
        self._restore_full(entries, math.inf)

    def _restore_full(self, entries: list[dict[str, Any]], upto: float) -> list[dict[str, Any]]:
        rest = []
        for e in entries:  # `at`: how many trials had finished when it was scored
            if e["at"] > upto:
                rest.append(e)
                continue
            st = self.stats.setdefault(e["hash"], ConfigStats(self.candidate(e["hash"]), 10**9))
            if e.get("failed"):
                st.full_failed = True
                continue
            st.full = float(e["score"])
            self.record(st.candidate, st.full, int(e["n"]), full=True, phase=e["kind"], restored=True)
        return rest

    # -- the result's account -----------------------------------------------------------------------
    def details(self) -> dict[str, Any]:
        if not self.opened:
            return {}
        pool = self.pool
        return {
            "plan": {"trials": self.n_trials, "startup_trials": self.n_startup, "parallel_trials": self.parallel,
                     "minibatch": min(self.s.minibatch_size, len(self.val)), "minibatches": len(self.schedule),
                     "val": len(self.val)},
            "study": self.study.study_name,
            "resumed": self.resumed,
            "failed_trials": list(self.failures),
            "full_evals": list(self.full_log),
            "pool_sizes": {
                m: {"instructions": len(pool.instructions.get(m, ())), "demo_sets": len(pool.demo_sets.get(m, ()))}
                | ({"formats": self.format_choices(m)} if len(self.format_choices(m)) > 1 else {})
                for m in self.setup.program.named_modules()
            } if pool else {},
            "bootstrap": pool.bootstrap if pool else {},
            "proposals": [r.to_dict() for r in self.log],
        }  # fmt: skip
