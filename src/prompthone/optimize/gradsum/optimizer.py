"""GRAD-SUM (arXiv 2407.12865) and its ablation without gradient summarization.

One iteration, for every prompt in the beam:
1. generation + evaluation: the prompt runs on a training minibatch through the shared evaluator, whose
   metric is an exact metric or an LLM judge (`JudgeMetric`); the metric's feedback / judge's reasoning
   comes back with each score;
2. attribution: each example below the top score (1.0) is attributed to the module at fault (see
   `steps.attribute_without_lm` / `attribute_with_lm`), so multi-module programs get gradients where
   they belong and untouched modules keep their prompts;
3. gradients: one textual gradient per such example, for its module;
4. summarization: all gradients of a module become one general direction (GRAD-SUM's addition; the
   ablation `GradSumNoSummary` skips it and edits from `failures_per_edit` raw gradients at a time, as
   ProTeGi did);
5. editing: `edits_per_prompt` new instructions per prompt at temperature > 0, each with its own
   `sample_index` (distinct, yet replayed exactly from the response cache on a re-run); each edit
   passes the task-contract check shared with MIPRO and OPRO (`proposers.contract`: re-sampled when it
   talks about the instruction or is cut off, the start's contract appended when it drops the allowed
   labels or answer form) and is recorded as a `proposal` event.
The new prompts are scored on the whole validation set (`full=True`); the best `beam_width` of the
beam and its children survive. The run stops after `iterations`, or early when the best validation
score has not risen for `patience` iterations, or when the budget is spent.

Where the paper is silent (our choices): the minibatch is drawn by walking a seeded shuffle of the
trainset (every example is used before any repeats); "below the top score" means below 1.0; gradients,
summaries and attribution run at temperature 0; only instructions are edited (demos are kept); a child
edits every module that received gradients; a beam tie keeps the older prompt.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from prompthone.data.example import Example
from prompthone.evaluate import EvalResult
from prompthone.metrics.judge import JudgeMetric
from prompthone.optimize.base import Estimate, OptimizationResult, OptimizationSetup, Optimizer, Run, Trial
from prompthone.optimize.gradsum import steps
from prompthone.optimize.gradsum.settings import GradSumNoSummarySettings, GradSumSettings
from prompthone.optimize.gradsum.steps import Failure, Gradient
from prompthone.optimize.proposers.calls import keep
from prompthone.optimize.proposers.contract import contracts_for
from prompthone.optimize.proposers.cost import run_tokens
from prompthone.program import Candidate, ModuleCall

TOP_SCORE = 1.0
#: rough tokens per call, for the estimate: a proposer prompt shows a trace or gradients
PROPOSER_PROMPT_TOKENS, PROPOSER_REPLY_TOKENS = 600.0, 150.0
JUDGE_PROMPT_TOKENS, JUDGE_REPLY_TOKENS = 350.0, 60.0


@dataclass
class BeamEntry:
    """A prompt in the beam: its candidate, validation score, and when it was first scored."""

    candidate: Candidate
    val_score: float
    order: int
    iteration: int
    parent: str | None = None


@dataclass
class IterationLog:
    """What one iteration did, kept in `OptimizationResult.info["history"]` for reading a run."""

    iteration: int
    parents: list[dict[str, Any]] = field(default_factory=list)
    children: list[dict[str, Any]] = field(default_factory=list)
    best_val: float = float("nan")


class GradSumRun(Run):
    """One GRAD-SUM run: the beam, the iteration log, the candidates seen, the traces kept for
    attribution, the task in words, and the seeded draw of failures and gradients."""

    def __init__(self, setup: OptimizationSetup, settings: GradSumSettings) -> None:
        super().__init__(setup)
        assert setup.start is not None
        self.settings = settings
        self.task = settings.task_description
        self.traces: dict[tuple[str, str], list[ModuleCall]] = {}
        self.history: list[IterationLog] = []
        self.seen: set[Candidate] = {setup.start}
        self.order = 0
        self.beam: list[BeamEntry] = []
        self.pick = setup.rng("gradsum:pick")

    def next_order(self) -> int:
        self.order += 1
        return self.order

    async def score_traced(
        self, candidate: Candidate, examples: Sequence[Example], *, full: bool, **info: Any
    ) -> tuple[Trial, EvalResult]:
        """`Run.score`, keeping the traces the evaluator returns for attribution later."""
        trial, res = await self.score(candidate, examples, full=full, **info)
        for ex_id, trace in res.traces.items():
            self.traces[(candidate.hash, ex_id)] = trace
        return trial, res

    def details(self) -> dict[str, Any]:
        return {
            "settings": self.settings.to_dict(),
            "beam": [
                {"candidate": e.candidate.hash, "val": e.val_score, "iteration": e.iteration, "parent": e.parent}
                for e in self.beam
            ],
            "history": [vars(h) for h in self.history],
        }


class GradSum(Optimizer):
    """GRAD-SUM: judged generations -> per-example textual gradients -> one summarized direction -> edits,
    with a beam of the best prompts scored on validation. Settings: `GradSumSettings`."""

    name = "gradsum"
    summarize = True
    settings_class: type[GradSumSettings] = GradSumSettings
    settings: GradSumSettings

    # -- the loop -------------------------------------------------------------------------------------
    def start_run(self, setup: OptimizationSetup) -> GradSumRun:
        return GradSumRun(setup, self.settings)

    async def _optimize(self, run: GradSumRun) -> OptimizationResult:
        setup = run.setup
        if not setup.trainset:
            raise ValueError(f"{self.name} needs a non-empty trainset to draw minibatches from")
        if not setup.valset:
            raise ValueError(f"{self.name} needs a non-empty valset to score the beam on")
        metric = setup.evaluator.metric
        if isinstance(metric, JudgeMetric):
            if setup.judge_lm is None:
                setup.budget.track("judge", metric.lm)  # judge calls count against the budget like any other
            run.task = run.task or metric.task_description  # GRAD-SUM's input: the user's task in words
        batches = _Minibatches(setup.trainset, self.settings.minibatch_size, setup.rng("gradsum:minibatch"))

        _, start_res = await run.score_traced(setup.start, setup.valset, full=True, stage="validation", iteration=0)
        run.beam = [BeamEntry(setup.start, start_res.mean, run.next_order(), 0)]
        best_val, stall = start_res.mean, 0
        stopped_by = "completed"
        for it in range(1, self.settings.iterations + 1):
            log = IterationLog(it)
            run.history.append(log)
            minibatch = batches.next()
            children: list[BeamEntry] = []
            for parent in list(run.beam):
                for child, info in await self._expand(run, parent, minibatch, it, log):
                    _, res = await run.score_traced(
                        child,
                        setup.valset,
                        full=True,
                        stage="validation",
                        iteration=it,
                        parent=parent.candidate.hash[:12],
                        **info,
                    )
                    entry = BeamEntry(child, res.mean, run.next_order(), it, parent.candidate.hash)
                    children.append(entry)
                    log.children.append({"candidate": child.hash[:12], "val": res.mean, **info})
            pool = run.beam + children
            pool.sort(key=lambda e: (-e.val_score, e.order))
            run.beam = pool[: self.settings.beam_width]
            top = run.beam[0].val_score
            log.best_val = top
            setup.emit(
                "step", iteration=it, beam=[round(e.val_score, 4) for e in run.beam], children=len(children), best=top
            )
            if top > best_val + self.settings.min_delta:
                best_val, stall = top, 0
            else:
                stall += 1
                if stall >= self.settings.patience:
                    setup.emit("early_stop", iteration=it, best=best_val, patience=self.settings.patience)
                    stopped_by = "early_stop"
                    break
        return run.result(stopped_by=stopped_by)

    async def _trace(self, run: GradSumRun, candidate: Candidate, example: Example) -> list[ModuleCall]:
        """The trace of `candidate` on `example`.

        A score served from the score cache comes without a trace; the evaluator then replays it
        (`Evaluator.trace`), which the response cache answers for free. Nothing is scored.
        """
        hit = run.traces.get((candidate.hash, example.id))
        if hit is not None:
            return hit
        trace = await run.setup.evaluator.trace(candidate, example)
        run.traces[(candidate.hash, example.id)] = trace
        return trace

    async def _expand(
        self, run: GradSumRun, parent: BeamEntry, minibatch: Sequence[Example], it: int, log: IterationLog
    ) -> list[tuple[Candidate, dict[str, Any]]]:
        """Children of one beam prompt: minibatch -> failures -> gradients -> (summary) -> edits."""
        setup, cand = run.setup, parent.candidate
        _, res = await run.score_traced(
            cand, minibatch, full=False, stage="minibatch", iteration=it, parent=cand.hash[:12]
        )
        plog: dict[str, Any] = {"candidate": cand.hash[:12], "minibatch": res.mean, "failures": 0}
        log.parents.append(plog)
        by_id = {ex.id: ex for ex in minibatch}
        below = [r for r in res.records if r.status != "error" and (r.counted_score or 0.0) < TOP_SCORE]
        if len(below) > self.settings.max_gradients:
            below = sorted(run.pick.sample(below, self.settings.max_gradients), key=lambda r: r.example_id)
        plog["failures"] = len(below)
        if not below:
            return []
        setup.budget.check()
        failures = await asyncio.gather(*(self._attribute(run, cand, by_id[r.example_id], r) for r in below))
        for f in failures:
            if f.call is not None:
                keep(setup, f.call, f.module, note=f.how)
        gradients = await asyncio.gather(
            *(
                steps.write_gradient(
                    setup, f, cand[f.module].instruction, max_chars=self.settings.max_chars, task=run.task
                )
                for f in failures
            )
        )
        by_module: dict[str, list[Gradient]] = {}
        for g, call in gradients:
            keep(setup, call, g.text if g is not None else None, note="" if g is not None else "empty reply")
            if g is not None:
                by_module.setdefault(g.module, []).append(g)
        plog["attributed"] = {f.example_id: [f.module, f.how] for f in failures}
        plog["gradients"] = {m: [g.text for g in gs] for m, gs in by_module.items()}
        if not by_module:
            return []
        setup.budget.check()
        feedback = await self._feedback(run, cand, by_module, plog)
        return await self._edits(run, cand, feedback, it, plog)

    async def _attribute(self, run: GradSumRun, cand: Candidate, ex: Example, record) -> Failure:
        setup = run.setup
        trace = await self._trace(run, cand, ex)
        names = list(setup.program.named_modules())
        found = steps.attribute_without_lm(trace, names)
        if found is None:
            if self.settings.attribution == "last" or not trace:
                found = (trace[-1].module if trace else names[-1], "last")
            else:
                module, how, call = await steps.attribute_with_lm(
                    setup, record, trace, names, max_chars=self.settings.max_chars, task=run.task
                )
                return Failure(ex.id, record, tuple(trace), module, how, call)
        return Failure(ex.id, record, tuple(trace), found[0], found[1])

    async def _feedback(
        self, run: GradSumRun, cand: Candidate, by_module: dict[str, list[Gradient]], plog: dict[str, Any]
    ) -> dict[str, list[str]]:
        """What each edit of each module is told: the same summarized direction for every edit.

        Returns {module: [feedback for edit 0, edit 1, ...]}.
        """
        modules = list(by_module)
        summaries = await asyncio.gather(
            *(steps.summarize(run.setup, m, cand[m].instruction, by_module[m], task=run.task) for m in modules)
        )
        out: dict[str, list[str]] = {}
        plog["summaries"] = {}
        for m, (summary, call) in zip(modules, summaries, strict=True):
            keep(run.setup, call, summary, note="" if summary is not None else "empty reply; the gradients are used")
            text = summary if summary is not None else steps.gradient_list(by_module[m])
            plog["summaries"][m] = text
            out[m] = [text] * self.settings.edits_per_prompt
        return out

    async def _edits(
        self, run: GradSumRun, cand: Candidate, feedback: dict[str, list[str]], it: int, plog: dict[str, Any]
    ) -> list[tuple[Candidate, dict[str, Any]]]:
        setup = run.setup
        modules = setup.program.named_modules()
        assert setup.start is not None
        contracts = contracts_for(modules, {m: setup.start[m].instruction for m in modules})
        jobs = []
        for k in range(self.settings.edits_per_prompt):
            index = (it - 1) * self.settings.edits_per_prompt + k  # distinct per iteration and edit, replayable
            for m, texts in feedback.items():
                jobs.append(
                    (
                        k,
                        m,
                        steps.edit_instruction(
                            setup,
                            m,
                            modules[m],
                            cand[m].instruction,
                            texts[k],
                            temperature=self.settings.edit_temperature,
                            sample_index=index,
                            task=run.task,
                            contract=contracts[m],
                        ),
                    )
                )
        done = await asyncio.gather(*(job for _, _, job in jobs))
        for edit in done:
            for a in edit.attempts:
                keep(setup, a.call, a.kept, note=a.reason, contract=a.contract,
                     contract_reason=a.reason if a.contract in ("repaired", "rejected") else "")  # fmt: skip
        new = [edit.text for edit in done]
        children: list[tuple[Candidate, dict[str, Any]]] = []
        plog["edits"] = []
        for k in range(self.settings.edits_per_prompt):
            child, edited = cand, []
            for (kk, m, _), instruction in zip(jobs, new, strict=True):
                if kk == k and instruction is not None:
                    child = child.with_module(m, cand[m].with_instruction(instruction))
                    edited.append(m)
            plog["edits"].append({"edit": k, "modules": edited, "candidate": child.hash[:12]})
            if not edited or child in run.seen:
                continue
            run.seen.add(child)
            children.append((child, {"edit": k, "modules": edited}))
        return children

    # -- cost -----------------------------------------------------------------------------------------
    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        """Upper-bound-ish counts: every iteration runs, the beam is full from the second iteration on,
        half of each minibatch fails, and every edit is new. Proposer tokens are rough per-call averages."""
        s = self.settings
        n_mod = max(1, len(setup.program.named_modules()))
        n_val, mb = len(setup.valset), min(s.minibatch_size, len(setup.trainset))
        parents = 1 + (s.iterations - 1) * s.beam_width
        val_evals = 1 + parents * s.edits_per_prompt
        examples = n_val * val_evals + mb * parents
        fails = min(s.max_gradients, max(1, mb // 2))
        per_parent = fails + s.edits_per_prompt * n_mod + (n_mod if self.summarize else 0)
        if n_mod > 1 and s.attribution == "lm":
            per_parent += fails
        p, c, calls = run_tokens(setup, 0)
        est.add("task", examples * calls, examples * p, examples * c)
        est.per_call("proposer", parents * per_parent, PROPOSER_PROMPT_TOKENS, PROPOSER_REPLY_TOKENS)
        if isinstance(setup.evaluator.metric, JudgeMetric):
            est.per_call("judge", examples, JUDGE_PROMPT_TOKENS, JUDGE_REPLY_TOKENS)


class GradSumNoSummary(GradSum):
    """The ablation: GRAD-SUM without gradient summarization, as earlier textual-gradient methods (ProTeGi)
    edited: each edit is written from the raw gradients of `failures_per_edit` failures drawn at random
    (a different draw per edit), so a prompt may follow a few single examples. Same loop and budget
    otherwise, so the paper's "summarization adds about 5%" can be re-run.
    """

    name = "gradsum-nosum"
    summarize = False
    settings_class = GradSumNoSummarySettings
    settings: GradSumNoSummarySettings

    async def _feedback(
        self, run: GradSumRun, cand: Candidate, by_module: dict[str, list[Gradient]], plog: dict[str, Any]
    ) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        plog["picked"] = {}
        for m, gradients in by_module.items():
            texts, picked = [], []
            for _ in range(self.settings.edits_per_prompt):
                few = run.pick.sample(gradients, min(self.settings.failures_per_edit, len(gradients)))
                few.sort(key=lambda g: g.example_id)
                texts.append(steps.gradient_list(few))
                picked.append([g.example_id for g in few])
            out[m] = texts
            plog["picked"][m] = picked
        return out


class _Minibatches:
    """Successive minibatches from a seeded shuffle of the trainset, reshuffled once it is used up."""

    def __init__(self, trainset: Sequence[Example], size: int, rng: random.Random) -> None:
        self.items = list(trainset)
        self.size = min(size, len(self.items))
        self.rng = rng
        self.order: list[Example] = []

    def next(self) -> list[Example]:
        if len(self.order) < self.size:
            fresh = list(self.items)
            self.rng.shuffle(fresh)
            taken = {e.id for e in self.order}
            self.order += [e for e in fresh if e.id not in taken]
        batch, self.order = self.order[: self.size], self.order[self.size :]
        return batch
