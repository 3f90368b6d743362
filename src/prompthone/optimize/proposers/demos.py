"""Demonstrations: bootstrapped from the program's own successful runs, labelled from raw examples,
and grouped into candidate demo sets per module.

Bootstrapping is how a pipeline gets demos for modules that have no labels (a query writer in
multi-hop QA): run the whole program with the teacher LM on training inputs, and keep the trace of
a run only if its FINAL output passes the metric. Every module's call in that trace then becomes one
demo for that module, so the query module learns from queries that led to right answers, whatever
the query itself looked like. Runs go through the shared `Evaluator` class (with the teacher LM),
so errors, parse failures and concurrency are handled exactly as in scoring.

What bootstrapping tolerates is what a single example can cause: a wrong answer, an unreadable reply,
an error on that example. A teacher that cannot answer at all is not tolerated, or the run would end
"completed" with no demos and nobody told: a permanent LM error (a refused key, a missing model) is
raised by the evaluator at once, and a first chunk of runs that all errored stops it too.

Demo sets cover the output space where they can: when a module's output takes a small set of values
(a classifier's labels; see `label_field`), a set of k demos takes distinct labels before repeating
one (`covering_sample`), so four TREC demos show four classes rather than four "entity" questions.
The choice stays seeded and deterministic; `demo_set_candidates(cover_labels=False)` turns it off.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from prompthone.data.example import Example
from prompthone.evaluate import EvaluationError, Evaluator, ScoreCache
from prompthone.optimize.base import OptimizationSetup
from prompthone.program import Candidate, Demo, Module, Program, trace_to_demos

DemoSet = tuple[Demo, ...]


@dataclass(frozen=True)
class BootstrapResult:
    """Demos from passing traces, per module (one per passing trace, in the order tried)."""

    demos: dict[str, tuple[Demo, ...]]
    passed_ids: tuple[str, ...]
    tried: int
    errors: int
    parse_failures: int

    @property
    def passed(self) -> int:
        return len(self.passed_ids)


async def bootstrap_demos(
    setup: OptimizationSetup,
    examples: Sequence[Example] | None = None,
    *,
    max_traces: int | None = None,
    threshold: float = 1.0,
    candidate: Candidate | None = None,
    teacher_labeled: int = 0,
    shuffle: bool = True,
) -> BootstrapResult:
    """Run the program with the teacher LM on `examples` (default: the trainset) and keep passing traces.

    A run passes when its metric score is at least `threshold`; errors and parse failures never pass.
    A permanent LM error is raised as itself; `EvaluationError` when every run tried so far errored.
    Examples are tried in a seeded shuffled order, in chunks of the evaluator's concurrency, stopping
    once `max_traces` runs have passed, so a large trainset does not cost more than needed.
    `candidate` is what the teacher runs (default: the setup's start candidate). With
    `teacher_labeled=k`, the first k examples (after shuffling) become labelled demos of the teacher's
    candidate, for the modules whose fields they hold, and are not bootstrapped themselves (an example
    must never be shown its own answer): a zero-shot program that never passes (a 0.5B model that
    answers TREC questions instead of classifying them) still yields traces this way.
    """
    examples = list(setup.trainset if examples is None else examples)
    if shuffle:
        setup.rng("proposers:bootstrap-order").shuffle(examples)
    candidate = candidate or setup.start
    if teacher_labeled > 0:
        shown, examples = examples[:teacher_labeled], examples[teacher_labeled:]
        for name, demos in labeled_demos(setup.program, shown).items():
            if demos:
                candidate = candidate.with_module(name, candidate[name].with_demos(demos))
    base = setup.evaluator
    teacher = setup.teacher_lm
    assert teacher is not None
    # A fresh score cache: a served score carries no trace, and bootstrapping needs every trace.
    evaluator = Evaluator(
        base.program,
        base.metric,
        teacher,
        concurrency=base.concurrency,
        max_errors=len(examples),
        score_cache=ScoreCache(),
        lm_for=base.lm_for,
        keep_traces=True,
        **base.lm_options,
    )
    demos: dict[str, list[Demo]] = {name: [] for name in base.program.named_modules()}
    passed: list[str] = []
    tried = errors = parse_failures = 0
    first_error: str | None = None
    chunk = max(1, base.concurrency)
    for start in range(0, len(examples), chunk):
        if max_traces is not None and len(passed) >= max_traces:
            break
        setup.budget.check()
        batch = examples[start : start + chunk]
        result = await evaluator.evaluate(candidate, batch, description="bootstrapping")
        for ex, rec in zip(batch, result.records, strict=True):
            tried += 1
            errors += rec.status == "error"
            parse_failures += rec.status == "parse_failure"
            first_error = first_error or (rec.error if rec.status == "error" else None)
            if max_traces is not None and len(passed) >= max_traces:
                continue
            if rec.status != "scored" or rec.score is None or rec.score < threshold:
                continue
            trace = result.traces.get(ex.id)
            if not trace:
                continue
            passed.append(ex.id)
            for module, demo in trace_to_demos(trace).items():
                demos.setdefault(module, []).append(demo)
        if errors == tried:  # not one run answered: the teacher is broken, not the examples
            setup.emit("bootstrap", tried=tried, passed=0, errors=errors, parse_failures=parse_failures)
            raise EvaluationError(
                f"bootstrapping: all {tried} teacher runs failed with an error, so no demo can be bootstrapped; "
                f"first: {first_error}. Check the teacher model (models.teacher, else the task model)",
                result,
            )
    out = BootstrapResult({m: tuple(d) for m, d in demos.items()}, tuple(passed), tried, errors, parse_failures)
    setup.emit("bootstrap", tried=tried, passed=out.passed, errors=errors, parse_failures=parse_failures)
    return out


def labeled_demos(program: Program, examples: Sequence[Example]) -> dict[str, tuple[Demo, ...]]:
    """Demos made directly from examples, for each module whose fields the examples hold.

    A module gets a labelled demo from an example only if the example has every input and every
    required output of that module (inputs first, then labels). Chain-of-thought reasoning is
    optional and left out. In multi-stage programs, intermediate modules (a query writer) usually get
    none: the data has no labels for them, which is why bootstrapping exists.
    """
    out: dict[str, tuple[Demo, ...]] = {}
    for name, module in program.named_modules().items():
        sig = module.signature
        required = [*sig.input_names, *module.required_outputs]
        fields = [*sig.input_names, *sig.output_names]
        demos: list[Demo] = []
        for ex in examples:
            values = {**dict(ex.labels), **dict(ex.inputs)}
            if not all(values.get(f) is not None for f in required):
                continue
            demos.append(Demo({f: _first(values[f]) for f in fields if values.get(f) is not None}))
        out[name] = tuple(demos)
    return out


def _first(value: object) -> object:
    """A label holding several acceptable answers shows the first one."""
    if isinstance(value, list | tuple) and value and all(isinstance(v, str) for v in value):
        return value[0]
    return value


def _input_key(demo: Demo, input_names: Sequence[str]) -> tuple[tuple[str, str], ...]:
    return tuple((n, demo[n]) for n in input_names if n in demo)


def with_labeled_fill(
    chosen: Sequence[Demo], labeled: Sequence[Demo], max_labeled: int, input_names: Sequence[str], rng: random.Random
) -> DemoSet:
    """`chosen` demos plus up to `max_labeled` labelled ones whose inputs `chosen` does not already show."""
    taken = {_input_key(d, input_names) for d in chosen}
    pool = [d for d in labeled if _input_key(d, input_names) not in taken]
    return (*chosen, *rng.sample(pool, min(max_labeled, len(pool))))


def demo_set_candidates(
    program: Program,
    *,
    start: Candidate,
    bootstrapped: Mapping[str, Sequence[Demo]],
    labeled: Mapping[str, Sequence[Demo]],
    n_sets: int,
    max_bootstrapped: int,
    max_labeled: int,
    rng: random.Random,
    cover_labels: bool = True,
    max_demos: int | None = None,
) -> dict[str, list[DemoSet]]:
    """Up to `n_sets` distinct demo sets per module, in this order:

    0. the start candidate's own demos (so the start configuration is in the search space);
    1. no demos (zero-shot), if different from 0;
    2. labelled demos only (a seeded sample of up to `max_labeled`), if the module has any;
    3. the first `max_bootstrapped` bootstrapped demos, plus labelled demos to fill;
    4+. shuffled bootstrapped demos of a random size in [1, max_bootstrapped], plus labelled fill;
    then, while fewer than `n_sets`, labelled samples of a random size in [1, max_labeled].

    Labelled fill never repeats an input that a bootstrapped demo of the set already shows. With
    `cover_labels` (the default), a module whose output is a small label set (`label_field`) gets its
    demos by `covering_sample` wherever a set is sampled: distinct labels before repeats, the fill
    preferring labels the set's bootstrapped demos do not show yet.

    `max_demos` caps a set's demos in all (None: up to `max_bootstrapped` + `max_labeled`): the labelled
    fill then only tops a set up to it, so a set of 4 bootstrapped demos gets no labelled ones at 4. None
    gives exactly the sets of before the cap existed (same draws, same sizes).
    """
    if n_sets < 1:
        raise ValueError(f"n_sets must be >= 1, got {n_sets}")
    if max_demos is not None:
        max_bootstrapped, max_labeled = min(max_bootstrapped, max_demos), min(max_labeled, max_demos)

    def room(chosen: Sequence[Demo]) -> int:
        """How many labelled demos may join `chosen`."""
        return max_labeled if max_demos is None else max(0, min(max_labeled, max_demos - len(chosen)))

    out: dict[str, list[DemoSet]] = {}
    for name, module in program.named_modules().items():
        inputs = module.signature.input_names
        boot = list(bootstrapped.get(name, ()))
        lab = list(labeled.get(name, ()))
        label = label_field(module, [*boot, *lab]) if cover_labels else None
        sets: list[DemoSet] = []
        seen: set[DemoSet] = set()

        def add(demos: Sequence[Demo], sets: list[DemoSet] = sets, seen: set[DemoSet] = seen) -> None:
            key = tuple(demos)
            if key not in seen and len(sets) < n_sets:
                seen.add(key)
                sets.append(key)

        def fill(
            chosen: list[Demo], lab: list[Demo] = lab, inputs: Sequence[str] = inputs, label: str | None = label
        ) -> DemoSet:
            if label is not None:
                return covering_fill(chosen, lab, room(chosen), inputs, label, rng)
            return with_labeled_fill(chosen, lab, room(chosen), inputs, rng)

        def pick(pool: list[Demo], k: int, shuffle: bool = True, label: str | None = label) -> list[Demo]:
            """k demos of `pool`: covering labels if the module has them, else a seeded sample (or the
            first k, unshuffled)."""
            if label is not None:
                return covering_sample(pool, k, label, rng if shuffle else None)
            return rng.sample(pool, min(k, len(pool))) if shuffle else pool[:k]

        add(start[name].demos)
        add(())
        if lab and max_labeled > 0:
            add(pick(lab, max_labeled))
        if boot and max_bootstrapped > 0:
            add(fill(pick(boot, max_bootstrapped, shuffle=False)))
            for _ in range(n_sets * 5):
                if len(sets) >= n_sets:
                    break
                size = rng.randint(1, min(max_bootstrapped, len(boot)))
                add(fill(pick(boot, size) if label is not None else rng.sample(boot, len(boot))[:size]))
        # Few or no bootstraps (a teacher that rarely passes): other samples of labelled demos instead.
        if lab and max_labeled > 0:
            for _ in range(n_sets * 5):
                if len(sets) >= n_sets:
                    break
                add(pick(lab, rng.randint(1, min(max_labeled, len(lab)))))
        out[name] = sets
    return out


# -- label-covering demo sets ---------------------------------------------------------------------------
#: an output is a label when the demos hold at most this many distinct values, each seen twice on average
MAX_LABEL_VALUES = 12


def _label_value(value: str) -> str:
    return " ".join(value.split()).lower()


def label_field(module: Module, demos: Sequence[Demo]) -> str | None:
    """The required output whose values across `demos` form a small label set (2 to `MAX_LABEL_VALUES`
    distinct values, each seen at least twice on average), or None. Decided from the data, not the
    signature, so a TREC classifier or SST-2 qualifies and a GSM8K answer or a search query does not."""
    for name in module.required_outputs:
        values = [_label_value(d[name]) for d in demos if name in d]
        distinct = set(values)
        if 2 <= len(distinct) <= MAX_LABEL_VALUES and len(values) >= 2 * len(distinct):
            return name
    return None


def covering_sample(
    pool: Sequence[Demo], k: int, field: str, rng: random.Random | None, *, already: Sequence[Demo] = ()
) -> list[Demo]:
    """Up to `k` demos of `pool` that show as many distinct values of `field` as they can.

    Each pick takes the label shown least so far (counting `already`, the demos a set holds before
    these), ties broken by a seeded order of the labels; within a label, demos come in a seeded order.
    With `rng` None both orders are the pool's own (first appearance), so the first demos are kept.
    Demos without `field` come last. Deterministic for a given pool, k and rng state.
    """
    groups: dict[str, list[Demo]] = {}
    rest: list[Demo] = []
    for d in pool:
        if field in d:
            groups.setdefault(_label_value(d[field]), []).append(d)
        else:
            rest.append(d)
    labels = list(groups)
    if rng is not None:
        rng.shuffle(labels)
        for key in labels:
            rng.shuffle(groups[key])
    counts = {key: 0 for key in labels}
    for d in already:
        key = _label_value(d[field]) if field in d else None
        if key in counts:
            counts[key] += 1
    order = {key: i for i, key in enumerate(labels)}
    out: list[Demo] = []
    while len(out) < k:
        open_ = [key for key in labels if groups[key]]
        if not open_:
            break
        key = min(open_, key=lambda x: (counts[x], order[x]))
        out.append(groups[key].pop(0))
        counts[key] += 1
    return out + rest[: max(0, k - len(out))]


def covering_fill(
    chosen: Sequence[Demo],
    labeled: Sequence[Demo],
    max_labeled: int,
    input_names: Sequence[str],
    field: str,
    rng: random.Random,
) -> DemoSet:
    """`chosen` plus up to `max_labeled` labelled demos with new inputs, preferring labels `chosen` does
    not show yet (`with_labeled_fill` with a label-covering choice)."""
    taken = {_input_key(d, input_names) for d in chosen}
    pool = [d for d in labeled if _input_key(d, input_names) not in taken]
    return (*chosen, *covering_sample(pool, max_labeled, field, rng, already=chosen))
