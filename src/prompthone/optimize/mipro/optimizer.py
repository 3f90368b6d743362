"""MIPRO (Opsahl-Ong et al. 2024) and its variants, on the shared optimizer core.

One run: score the start candidate on the validation set; build the candidate pool (bootstrapped
and labelled demo sets per module, grounded instruction proposals per module); then search with
Optuna's TPE over categorical (instruction, demo set) choices per module (and, with `search_formats`,
its prompt format), scoring each trial on a minibatch of validation examples and, every
`full_eval_every` trials, the best configuration by mean minibatch score that has no full score yet
on the whole validation set. The result is the
best fully-scored configuration, which is never worse on validation than the start (scored first).

Where this goes beyond the reference implementation:
- a seeded schedule of minibatches shared across trials (trial t uses batch t mod K, or, for a
  configuration already scored on it, the next batch it has not seen), and TPE is
  told the *paired* advantage over the start on that same batch (the start's per-example scores
  are known from its full evaluation), so scores from different batches are comparable;
- TPE's random start-up sized to the budget (20% of trials, at least 2);
- several trials in flight (`parallel_trials`, constant-liar TPE, ask a batch / tell in order, so
  the run stays deterministic) under the task LM's own bound on concurrent requests;
- `estimate(setup)` of LM calls and tokens per role before anything is spent (`--dry-run`);
- an evaluation that errors (`EvaluationError`) marks its Optuna trial FAIL, never a score of 0;
- the study (pool, trials, full scores) can live in SQLite (`storage=...`): a killed run resumes
  where it stopped, and a finished one re-run with the same seed returns the same result without
  an LM call.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, cast

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import TrialState

from prompthone.data.example import Example
from prompthone.evaluate import EvalResult, EvaluationError
from prompthone.optimize.base import Estimate, OptimizationResult, OptimizationSetup, Optimizer
from prompthone.optimize.budget import BudgetExhausted
from prompthone.optimize.mipro.estimate import estimate_mipro
from prompthone.optimize.mipro.search import (
    ConfigStats,
    asked_count,
    finished_count,
    make_sampler,
    pick_for_full_eval,
    quiet_optuna,
)
from prompthone.optimize.mipro.settings import MIPROSettings
from prompthone.optimize.mipro.study import MIPRORun, Pool, open_run_study
from prompthone.optimize.proposers import (
    TIPS,
    BootstrapResult,
    DemoSet,
    Grounding,
    InstructionProposer,
    ProposalOptions,
    bootstrap_demos,
    demo_set_candidates,
    describe_program,
    labeled_demos,
    summarize_dataset,
)
from prompthone.program import Candidate, Demo
from prompthone.sqlurl import safe_url

#: temperatures MIPRO++ may choose for a proposal
PLUS_TEMPERATURES = (0.5, 0.8, 1.0, 1.2)


class MIPROFamily(Optimizer):
    """What MIPRO, 0-shot MIPRO, Bayesian Bootstrap and MIPRO++ share; see the module docstring.

    Subclasses say what is searched (`searches_instructions`, `searches_demos`) and may replace
    how trial parameters become a candidate (`_distributions`, `_decode`).
    """

    name = "mipro"
    searches_instructions = True
    searches_demos = True
    proposes_in_trials = False  # MIPRO++: instructions are proposed inside each trial
    settings_class = MIPROSettings  # what `**settings` accepts, for the registry's type check

    def __init__(self, preset: str | None = "light", **settings: Any) -> None:
        self.settings = MIPROSettings.build(preset, **settings)

    # ----------------------------------------------------------------------------- sizing
    def _variables_per_module(self) -> int:
        return int(self.searches_instructions) + int(self.searches_demos)

    def n_instructions(self) -> int:
        """Instruction candidates per module (the start's included) for this member of the family."""
        return self.settings.instructions_for(self.searches_demos)

    def plan(self, setup: OptimizationSetup) -> dict[str, int]:
        """The sizes a run on `setup` will use: validation examples, trials, start-up trials, trials in
        flight, minibatch size."""
        s = self.settings
        m = len(setup.program.named_modules())
        n_cand = max(
            self.n_instructions() if self.searches_instructions else 1, s.n_demo_sets if self.searches_demos else 1
        )
        n_trials = s.trials_for(m * max(1, self._variables_per_module()), n_cand)
        val = min(len(setup.valset), s.val_size)
        return {
            "modules": m,
            "val": val,
            "trials": n_trials,
            "startup_trials": s.startup_for(n_trials),
            "parallel_trials": s.parallel_for(setup.task_lm.max_concurrency),
            "minibatch": min(s.minibatch_size, val),
            "full_eval_every": s.full_eval_every,
        }

    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        """Calls are upper bounds for a cold cache (no repeated configuration served from the score
        cache); tokens are approximations from the rendered prompts (about 4 characters a token)."""
        estimate_mipro(self, setup, est)

    def _validation(self, setup: OptimizationSetup) -> list[Example]:
        val = list(setup.valset)
        if len(val) > self.settings.val_size:
            keep = set(e.id for e in setup.rng("mipro:valset").sample(val, self.settings.val_size))
            val = [e for e in val if e.id in keep]
        return val

    # ----------------------------------------------------------------------------- the run
    def start_run(self, setup: OptimizationSetup) -> MIPRORun:
        return MIPRORun(setup, self.settings)

    async def _optimize(self, run: MIPRORun) -> OptimizationResult:
        setup, s = run.setup, self.settings
        val = self._validation(setup)
        plan = self._plan_checked(setup, val)
        storage = s.storage or setup.storage_url
        with quiet_optuna():
            study = open_run_study(storage, self.name, s, setup, val, plan)
            run.open(val, study, plan)
            setup.emit(
                "step", stage="plan", **plan, storage=safe_url(storage) if storage else None, study=study.study_name,
                resumed=bool(study.user_attrs.get("full")),
            )  # fmt: skip
            await self._start(run)
            await self._pool(run)
            run.restore_trials()
            await self._search(run)
            return run.result()

    def _plan_checked(self, setup: OptimizationSetup, val: list[Example]) -> dict[str, int]:
        if not val:
            raise ValueError("MIPRO needs a non-empty validation set to select on")
        plan = self.plan(setup)
        plan["val"] = len(val)
        return plan

    # ----------------------------------------------------------------------------- start
    async def _start(self, run: MIPRORun) -> None:
        """Score the start on the whole validation set first (or restore that score), so the result is
        never worse than the start, and keep its per-example scores as the baseline for pairing."""
        if run.restore_start():
            return
        trial, result = await run.score(run.setup.start, run.val, full=True, phase="start")
        run.save_start(trial, result)

    # ----------------------------------------------------------------------------- pool
    async def _pool(self, run: MIPRORun) -> None:
        run.pool = run.stored_pool()
        if run.pool is None:
            run.pool = await self._build_pool(run)
            run.save_pool(run.pool)

    def _needs_bootstrap(self) -> bool:
        s = self.settings
        proposes = self.searches_instructions or self.proposes_in_trials
        return (self.searches_demos and s.max_bootstrapped_demos > 0) or (proposes and s.ground_demos)

    async def _build_pool(self, run: MIPRORun) -> Pool:
        setup, s = run.setup, run.s
        program, start = setup.program, setup.start
        modules = list(program.named_modules())
        boot = BootstrapResult({m: () for m in modules}, (), 0, 0, 0)
        if self._needs_bootstrap():
            setup.emit("step", stage="bootstrap")
            boot = await bootstrap_demos(
                setup,
                max_traces=max(1, s.max_bootstrapped_demos) * s.n_demo_sets,
                threshold=s.metric_threshold,
                teacher_labeled=s.teacher_labeled,
            )
        labeled = labeled_demos(program, setup.trainset)
        if self.searches_demos:
            demo_sets = demo_set_candidates(
                program, start=start, bootstrapped=boot.demos, labeled=labeled, n_sets=s.n_demo_sets,
                max_bootstrapped=s.max_bootstrapped_demos, max_labeled=s.max_labeled_demos,
                rng=setup.rng("mipro:demo-sets"), cover_labels=s.cover_labels, max_demos=s.max_demos,
            )  # fmt: skip
        else:
            demo_sets = {m: [start[m].demos] for m in modules}
        proposer_demos = {
            m: _rotations(list(boot.demos.get(m, ())) or list(labeled.get(m, ())), 3, self.n_instructions())
            for m in modules
        }
        grounding = Grounding()
        instructions = {m: [start[m].instruction] for m in modules}
        if self.searches_instructions or self.proposes_in_trials:
            grounding = await self._grounding(run)
        if self.searches_instructions:
            setup.emit("step", stage="propose instructions")
            proposer = self._proposer(run, grounding)
            rng = setup.rng("mipro:tips")
            options: dict[str, list[ProposalOptions]] = {}
            for m in modules:
                tips = [rng.choice(list(TIPS)) if s.tips else "none" for _ in range(self.n_instructions() - 1)]
                options[m] = [self._options(tip=t) for t in tips]
            shown = {m: proposer_demos[m] if s.ground_demos else [] for m in modules}
            found = await asyncio.gather(
                *(proposer.propose_many(m, start[m].instruction, options[m], demo_sets=shown[m]) for m in modules)
            )
            for m, extra in zip(modules, found, strict=True):
                instructions[m] += extra
        bootstrap = {"tried": boot.tried, "passed": boot.passed, "errors": boot.errors}
        return Pool(instructions, demo_sets, proposer_demos, grounding, bootstrap)

    async def _grounding(self, run: MIPRORun) -> Grounding:
        s, setup = run.s, run.setup
        summary, desc = "", None
        if s.ground_dataset:
            setup.emit("step", stage="dataset summary")
            summary = await summarize_dataset(setup, max_batches=s.summary_batches, log=run.log)
        if s.ground_program:
            setup.emit("step", stage="program description")
            desc = await describe_program(setup, log=run.log)
        return Grounding(summary, desc.program if desc else "", dict(desc.modules) if desc else {})

    def _proposer(self, run: MIPRORun, grounding: Grounding) -> InstructionProposer:
        s = run.s
        return InstructionProposer(
            run.setup, grounding, max_tokens=s.proposer_max_tokens, max_attempts=s.max_attempts, log=run.log,
            history_size=max(1, s.history_size),
        )  # fmt: skip

    def _options(self, **overrides: Any) -> ProposalOptions:
        s = self.settings
        base = dict(
            use_dataset=s.ground_dataset,
            use_program=s.ground_program,
            use_demos=s.ground_demos,
            tip="none",
            temperature=s.proposal_temperature,
        )
        base.update(overrides)
        return ProposalOptions(**base)

    # ----------------------------------------------------------------------------- search space
    def _distributions(self, run: MIPRORun) -> dict[str, BaseDistribution]:
        assert run.pool is not None
        out: dict[str, BaseDistribution] = {}
        for m in run.setup.program.named_modules():
            if self.searches_instructions and len(run.pool.instructions[m]) > 1:
                out[f"{m}::instruction"] = CategoricalDistribution(list(range(len(run.pool.instructions[m]))))
            if self.searches_demos and len(run.pool.demo_sets[m]) > 1:
                out[f"{m}::demos"] = CategoricalDistribution(list(range(len(run.pool.demo_sets[m]))))
            self._add_format(run, m, out)
        return out

    def _add_format(self, run: MIPRORun, module: str, out: dict[str, BaseDistribution]) -> None:
        """`{module}::format` over the module's allowed formats (the start's first), when searched:
        with `search_formats` off the search space, and so every trial, is what it was without it."""
        choices = run.format_choices(module)
        if len(choices) > 1:
            out[f"{module}::format"] = CategoricalDistribution(choices)

    def _with_format(self, run: MIPRORun, cand: Candidate, params: Mapping[str, Any]) -> Candidate:
        """`cand` with each module in the format the trial chose (its start's when none was chosen)."""
        for m in run.setup.program.named_modules():
            chosen = params.get(f"{m}::format")
            if chosen is not None and chosen != cand[m].format:
                cand = cand.with_module(m, cand[m].with_format(str(chosen)))
        return cand

    def _start_params(self, run: MIPRORun) -> dict[str, Any] | None:
        """Parameters of the start configuration (the first choice everywhere: index 0, the start's
        format), tried first: its minibatch scores come from the start's full evaluation, so it anchors
        TPE for free."""
        return {name: cast(CategoricalDistribution, d).choices[0] for name, d in self._distributions(run).items()}

    async def _decode(self, run: MIPRORun, params: Mapping[str, Any], number: int) -> Candidate:
        assert run.pool is not None
        cand = run.setup.start
        for m in run.setup.program.named_modules():
            i = int(params.get(f"{m}::instruction", 0))
            d = int(params.get(f"{m}::demos", 0))
            p = cand[m].with_instruction(run.pool.instructions[m][i]).with_demos(run.pool.demo_sets[m][d])
            cand = cand.with_module(m, p)
        return self._with_format(run, cand, params)

    # ----------------------------------------------------------------------------- search loop
    async def _search(self, run: MIPRORun) -> None:
        study = run.study
        if not study.get_trials(deepcopy=False):
            params = self._start_params(run)
            if params is not None:
                study.enqueue_trial(params, skip_if_exists=True)
        stale = sorted(study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)), key=lambda t: t.number)
        if stale:  # asked by a process that was killed: score them now, with the parameters it drew
            items = []
            for t in stale:
                run.live[t.number] = optuna.trial.Trial(study, t._trial_id)
                h = t.user_attrs.get("candidate")
                cand = Candidate.from_json(study.user_attrs[f"cand:{h}"]) if h else None
                if cand is None:
                    cand = await self._decode(run, t.params, t.number)
                    self._mark(run, t.number, cand)
                elif "batch" in t.user_attrs:  # the batch it was given when asked
                    run.batch_of[t.number] = int(t.user_attrs["batch"])
                else:  # asked by an earlier version, which chose the batch when scoring
                    self._plan_batch(run, t.number, cand)
                items.append((t.number, cand))
            await self._run_batch(run, items)
        elif finished_count(study) > run.processed:
            # killed during a full evaluation: run it now, before new trials add to what it picks from
            await self._catch_up(run)
        dists = self._distributions(run)
        if not dists:  # every module has one choice (all proposals rejected, no demos): nothing to search
            run.setup.emit("step", stage="search skipped", reason="the pool offers no alternative to the start")
            return
        while asked_count(study) < run.n_trials:
            k = min(run.parallel, run.n_trials - asked_count(study))
            asked: list[optuna.Trial] = []
            for _ in range(k):
                study.sampler = make_sampler(run.setup.seed, asked_count(study), run.n_startup)
                trial = study.ask(dists)
                run.live[trial.number] = trial
                asked.append(trial)
            cands = await asyncio.gather(*(self._decode(run, t.params, t.number) for t in asked))
            for t, c in zip(asked, cands, strict=True):  # in trial order: a repeat in this ask sees the first
                self._mark(run, t.number, c)
            await self._run_batch(run, [(t.number, c) for t, c in zip(asked, cands, strict=True)])
        if not run.final_done:
            done = finished_count(study)
            await self._full_eval(run, after=done, at=done, kind="final")
            run.final_done = True
            run.persist("final_done", True)

    def _mark(self, run: MIPRORun, number: int, cand: Candidate) -> None:
        """Note a trial's configuration and the minibatch it will be scored on, in the study, so a run
        killed before scoring it scores it on the same examples when resumed."""
        run.remember(cand)
        run.live[number].set_user_attr("candidate", cand.hash)
        if run.minibatching:
            run.live[number].set_user_attr("batch", self._plan_batch(run, number, cand))

    def _plan_batch(self, run: MIPRORun, number: int, cand: Candidate) -> int:
        """Trial `number`'s minibatch: the schedule's, unless this configuration was scored on it already
        (by a finished trial, or one asked with it and still in flight), then one it has not seen: TPE
        asking again for a configuration it likes gets new evidence on it instead of the same score."""
        st = run.stats.get(cand.hash)
        seen = st.batches_seen(len(run.schedule)) if st is not None else set()
        seen |= {run.batch_of[n] for n, h in run.in_flight.items() if h == cand.hash and n in run.batch_of}
        b = run.schedule.index_for(number, seen)
        run.batch_of[number] = b
        run.in_flight[number] = cand.hash
        return b

    async def _trial(self, run: MIPRORun, number: int, cand: Candidate) -> tuple[EvalResult, int, float]:
        """Score one trial through the shared evaluator. It is recorded by `_run_batch`, in trial
        order, so that trials in flight at once leave the same record whatever finished first."""
        if run.minibatching:
            b = run.batch_of[number]
            examples = run.schedule.batches[b]
        else:
            b, examples = 0, tuple(run.val)
        run.setup.budget.check()
        result = await run.setup.evaluator.evaluate(cand, examples)
        return result, b, result.mean - run.baseline_mean(examples)

    async def _run_batch(self, run: MIPRORun, items: list[tuple[int, Candidate]]) -> None:
        """Score trials concurrently, then tell Optuna in trial order (determinism), then run the full
        evaluations whose turn came. A crash (anything but a budget stop or an evaluation error) leaves
        its trial and every later one of the batch RUNNING, as a kill at that moment would: a resumed run
        scores them in trial order (from its response cache), so it records what an uninterrupted run does."""
        results = await asyncio.gather(*(self._trial(run, n, c) for n, c in items), return_exceptions=True)
        stop: BudgetExhausted | None = None
        crash: BaseException | None = None
        for (number, cand), res in zip(items, results, strict=True):
            live = run.live.pop(number)
            run.in_flight.pop(number, None)
            if crash is not None:
                continue
            if isinstance(res, BudgetExhausted):
                stop = stop or res  # left RUNNING: a resumed run scores it
                continue
            if isinstance(res, EvaluationError):
                msg = str(res)
                live.set_user_attr("error", msg[:500])
                run.study.tell(number, state=TrialState.FAIL)
                run.failures.append({"trial": number, "error": msg[:500]})
                run.setup.emit("trial_failed", optuna_trial=number, error=msg[:500], candidate=cand.hash)
                continue
            if isinstance(res, BaseException):
                crash = crash or res
                continue
            result, b, adv = res
            trial = run.record(
                cand, result.mean, result.n, full=not run.minibatching, phase="trial",
                optuna_trial=number, batch=b, advantage=adv,
            )  # fmt: skip
            live.set_user_attr("score", trial.score)
            live.set_user_attr("n", trial.n)
            live.set_user_attr("batch", b)
            run.study.tell(number, adv)
            st = run.stats.setdefault(cand.hash, ConfigStats(cand, number))
            st.minibatch.append((b, trial.score, adv))
            if not run.minibatching:
                st.full = trial.score
        if crash is not None:
            raise crash
        await self._catch_up(run)
        if stop is not None:
            raise stop

    async def _catch_up(self, run: MIPRORun) -> None:
        """Run the full evaluations whose turn came with the trials finished so far (every
        `full_eval_every` of them), and note how far that got."""
        finished = finished_count(run.study)
        for c in range(run.processed + 1, finished + 1):
            if run.minibatching and c % run.s.full_eval_every == 0:
                await self._full_eval(run, after=c, at=finished, kind="full")
        run.processed = max(run.processed, finished)
        run.persist("processed", run.processed)

    async def _full_eval(self, run: MIPRORun, *, after: int, at: int, kind: str) -> None:
        """Score on the whole validation set the best configuration by mean minibatch advantage that
        has not been fully scored. The final one is only spent if that configuration could beat the
        best fully-scored one (its advantage is above the best's)."""
        if not run.minibatching:
            return
        pick = pick_for_full_eval(run.stats)
        if pick is None:
            return
        if kind == "final":
            best_adv = max(st.full - run.start_full for st in run.stats.values() if st.full is not None)
            if pick.advantage <= best_adv:
                return
        try:
            trial, _ = await run.score(pick.candidate, run.val, full=True, phase=kind)
        except EvaluationError as exc:
            pick.full_failed = True
            run.full_log.append({"hash": pick.candidate.hash, "after": after, "at": at, "kind": kind, "failed": True})
            run.persist("full", run.full_log)
            run.setup.emit("full_eval_failed", error=str(exc)[:500], candidate=pick.candidate.hash)
            return
        pick.full = trial.score
        run.full_log.append({"hash": pick.candidate.hash, "score": trial.score, "n": trial.n, "after": after,
                             "at": at, "kind": kind})  # fmt: skip
        run.persist("full", run.full_log)


def _rotations(demos: list[Demo], size: int, count: int) -> list[DemoSet]:
    """`count` windows of `size` demos, rotating through `demos`, to show proposals different demos."""
    if not demos or size <= 0:
        return []
    size = min(size, len(demos))
    return [tuple(demos[(k * size + j) % len(demos)] for j in range(size)) for k in range(max(1, count))]


class MIPRO(MIPROFamily):
    """MIPRO: instructions and demos of every module searched jointly with TPE.

    Presets (`preset`): light = 3 instruction candidates and 6 demo sets per module (MIPROv2's light),
    up to 100 validation examples, 11 trials for one module (21 for two); medium = 6 + 12 / 300 / 18
    (29); heavy = 9 + 18 / 1000 / 27 (34). Minibatches of 35 (or the whole validation set if smaller,
    then every trial is a full evaluation), a full evaluation every 6 trials, up to 4 bootstrapped + 4
    labelled demos per set.
    LM calls, roughly: task = start and full evaluations × |val| + trials × minibatch, times modules;
    teacher <= |train| runs; proposer = a few calls for grounding + (candidates - 1) per module, more
    when proposals are rejected (at most `max_attempts` each). `estimate(setup)` gives the numbers.
    Every setting can be overridden (`MIPRO(preset="light", num_trials=20, storage="run.sqlite")`).
    """

    name = "mipro"


class MIPRO0Shot(MIPROFamily):
    """0-shot MIPRO: only instructions are searched; every candidate keeps the start's demos (none for
    the built-in tasks), which is checked on every trial. Bootstrapped demos may still be shown to the
    proposer (`ground_demos`), never to the task model."""

    name = "mipro-0shot"
    searches_demos = False

    async def _decode(self, run: MIPRORun, params: Mapping[str, Any], number: int) -> Candidate:
        cand = await super()._decode(run, params, number)
        for m in run.setup.program.named_modules():
            if cand[m].demos != run.setup.start[m].demos:
                raise AssertionError(f"0-shot MIPRO: demos leaked into module {m!r} (trial {number})")
        return cand


class BayesianBootstrap(MIPROFamily):
    """Bayesian Bootstrap: only demo sets are searched (TPE over demo-set index per module); every
    candidate keeps the start's instructions and no proposer call is made."""

    name = "bayesian-bootstrap"
    searches_instructions = False

    def _needs_bootstrap(self) -> bool:
        return self.settings.max_bootstrapped_demos > 0


class MIPROPlusPlus(MIPROFamily):
    """MIPRO++: TPE also chooses how each module's instruction is proposed in each trial.

    Per module, a trial draws: which grounding is shown (data summary, program description,
    bootstrapped demos: each on or off), the tip, the proposal temperature, and the demo set. The
    instruction is then proposed with those choices and the module's instruction history (earlier
    instructions with their estimated scores, best last), and the configuration is scored as usual.
    One proposer call per module per trial (more if a proposal is rejected); a proposal that fails
    every attempt falls back to the start's instruction. Trials default to the MIPRO formula with two
    variables per module.
    """

    name = "mipro++"
    searches_instructions = False
    proposes_in_trials = True

    def _variables_per_module(self) -> int:
        return 2

    def n_instructions(self) -> int:
        """The proposer's demo rotations a trial cycles through: one per candidate, as before presets
        halved MIPRO's instruction pool (MIPRO++ has no pool; it proposes in every trial)."""
        return self.settings.instructions_for(searches_demos=False)

    def _distributions(self, run: MIPRORun) -> dict[str, BaseDistribution]:
        assert run.pool is not None
        g = run.pool.grounding
        out: dict[str, BaseDistribution] = {}
        for m in run.setup.program.named_modules():
            if g.dataset_summary:
                out[f"{m}::use_dataset"] = CategoricalDistribution([True, False])
            if g.program_description:
                out[f"{m}::use_program"] = CategoricalDistribution([True, False])
            if run.pool.proposer_demos.get(m):
                out[f"{m}::use_demos"] = CategoricalDistribution([True, False])
            out[f"{m}::tip"] = CategoricalDistribution(list(TIPS))
            out[f"{m}::temperature"] = CategoricalDistribution(list(PLUS_TEMPERATURES))
            if len(run.pool.demo_sets[m]) > 1:
                out[f"{m}::demos"] = CategoricalDistribution(list(range(len(run.pool.demo_sets[m]))))
            self._add_format(run, m, out)
        return out

    def _start_params(self, run: MIPRORun) -> dict[str, Any] | None:
        return None  # the start's instruction is not a proposal; it is scored in full anyway

    def _history(self, run: MIPRORun, module: str) -> list[tuple[str, float]]:
        """(instruction, estimated score) for this module: the start's full score, and for each
        configuration tried, the start's score plus its mean paired advantage."""
        out = [(run.setup.start[module].instruction, run.start_full)]
        for st in run.stats.values():
            if st.minibatch:
                est = st.full if st.full is not None else min(1.0, max(0.0, run.start_full + st.advantage))
                out.append((st.candidate[module].instruction, est))
        return out

    async def _decode(self, run: MIPRORun, params: Mapping[str, Any], number: int) -> Candidate:
        assert run.pool is not None
        proposer = self._proposer(run, run.pool.grounding)
        s = self.settings
        modules = list(run.setup.program.named_modules())

        async def one(m: str) -> str:
            options = ProposalOptions(
                use_dataset=bool(params.get(f"{m}::use_dataset", False)),
                use_program=bool(params.get(f"{m}::use_program", False)),
                use_demos=bool(params.get(f"{m}::use_demos", False)),
                tip=str(params.get(f"{m}::tip", "none")),
                temperature=float(params.get(f"{m}::temperature", s.proposal_temperature)),
            )
            demo_sets = run.pool.proposer_demos.get(m) or []
            demos = demo_sets[number % len(demo_sets)] if demo_sets else ()
            history = self._history(run, m) if s.history_size else []
            text = await proposer.propose_one(
                m, run.setup.start[m].instruction, options, sample_base=number * s.max_attempts, demos=demos,
                history=history,
            )  # fmt: skip
            return text if text is not None else run.setup.start[m].instruction

        texts = await asyncio.gather(*(one(m) for m in modules))
        cand = run.setup.start
        for m, text in zip(modules, texts, strict=True):
            d = int(params.get(f"{m}::demos", 0))
            cand = cand.with_module(m, cand[m].with_instruction(text).with_demos(run.pool.demo_sets[m][d]))
        return self._with_format(run, cand, params)


__all__ = ["MIPRO", "PLUS_TEMPERATURES", "BayesianBootstrap", "MIPRO0Shot", "MIPROFamily", "MIPROPlusPlus", "Pool"]
