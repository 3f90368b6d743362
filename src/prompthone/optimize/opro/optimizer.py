"""OPRO for prompts: the proposer LM reads scored past instructions and writes better ones.

Each step: build the meta-prompt (the best earlier instructions with bucketized training scores, worst
first; three training exemplars drawn at random showing where the instruction sits and what output is
expected; the request for a new, different, better instruction), sample `candidates_per_step` replies
at `temperature`, parse an instruction from each, skip those already scored, and score the rest on a
fixed training subset through the shared evaluator. Every `val_every` steps the best instructions not
yet validated are scored on the validation split; the result is the best candidate there (the start
included), and a module's search stops after `patience` validation rounds without a gain. A program
with several modules has each module's instruction optimized in turn, always scored end to end.

Every parsed proposal passes the task-contract check shared with MIPRO and GRAD-SUM
(`proposers.contract`): one that talks about an instruction or is cut off is dropped (the step's
other samples stand in for it), one that drops the start's allowed labels or answer form gets the
start's contract sentences appended. The meta-prompt shows the output fields' descriptions and that
contract; each reply is recorded as a `proposal` event with the check's outcome.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from prompthone.data.example import Example
from prompthone.optimize.base import Estimate, OptimizationResult, OptimizationSetup, Optimizer, Run
from prompthone.optimize.opro.meta import (
    History,
    Scored,
    bucketize,
    draw,
    normalize_instruction,
    order_word,
    parse_instruction,
)
from prompthone.optimize.opro.settings import OPROSettings
from prompthone.optimize.proposers.calls import keep, propose_samples
from prompthone.optimize.proposers.contract import KEPT, REJECTED, REPAIRED, Contract, guard, runs_to_cutoff
from prompthone.optimize.proposers.cost import approx_tokens, run_tokens
from prompthone.program import Candidate
from prompthone.program.module import Module
from prompthone.program.values import format_value, label_of
from prompthone.templates import render_template

TEMPLATE = "opro_instruction"
PLACEHOLDER = "<INS>"
#: how the meta-prompt states the start's contract (nothing when the start has none)
CONTRACT_LINE = " Every instruction must keep this requirement of the first one, word for word: {statement}"
EXEMPLAR_VALUE_CHARS = 400
#: rough tokens of one proposal reply, for the estimate
PROPOSAL_TOKENS = 60


class OPRORun(Run):
    """One OPRO run: the sample index of the next meta-prompt sample, the step log and each module's
    history (also in the result of a run its budget stopped)."""

    def __init__(self, setup: OptimizationSetup) -> None:
        super().__init__(setup)
        self.sample_counter = 0
        self.steps: list[dict[str, Any]] = []
        self.modules: dict[str, dict[str, Any]] = {}

    def details(self) -> dict[str, Any]:
        return {"steps": self.steps, "modules": self.modules}


class OPRO(Optimizer):
    """Optimization by PROmpting (Yang et al. 2023) for the instructions of a program's modules; its
    settings (the paper's defaults and ablation switches) are `OPROSettings`."""

    name = "opro"
    settings_class = OPROSettings
    settings: OPROSettings

    # ----------------------------------------------------------------------------------------- setup

    def _targets(self, setup: OptimizationSetup) -> list[str]:
        names = list(setup.program.named_modules())
        targets = self.settings.modules if self.settings.modules is not None else names
        unknown = [m for m in targets if m not in names]
        if unknown or not targets:
            raise ValueError(f"modules {unknown or targets} to optimize are not in the program, which has {names}")
        for setting in ("position", "start_instruction"):
            value = getattr(self.settings, setting)
            if isinstance(value, Mapping):
                extra = [m for m in value if m not in names]
                if extra:
                    raise ValueError(f"{setting} names unknown module(s) {extra}; the program has {names}")
        return list(targets)

    def _position(self, module: str) -> str:
        if isinstance(self.settings.position, Mapping):
            return self.settings.position.get(module, "system")
        return self.settings.position

    def _start(self, module: str, base: Candidate) -> str:
        s = self.settings.start_instruction
        if isinstance(s, Mapping):
            s = s.get(module)
        return base[module].instruction if s is None else s

    def contract(self, setup: OptimizationSetup, module: str) -> Contract:
        """What `module`'s start instruction and output descriptions require of every proposal."""
        assert setup.start is not None
        mod = setup.program.named_modules()[module]
        return Contract.of(self._start(module, setup.start), mod.signature.outputs, optional=mod.optional_outputs)

    def training_subset(self, setup: OptimizationSetup) -> list[Example]:
        """The fixed training examples candidates are scored on: fixed, so that the scores in the
        history stay comparable from step to step."""
        train = list(setup.trainset)
        if self.settings.train_batch is None or self.settings.train_batch >= len(train):
            return train
        return setup.rng("opro:train_batch").sample(train, self.settings.train_batch)

    # ----------------------------------------------------------------------------------- meta-prompt

    def meta_prompt(
        self,
        setup: OptimizationSetup,
        module: str,
        shown: Sequence[Scored],
        exemplars: Sequence[Example],
    ) -> str:
        """The full meta-prompt for `module` given the history entries to show (already selected and
        ordered) and the exemplars drawn for this step."""
        mod = setup.program.named_modules()[module]
        history = "\n\n".join(
            f"text:\n{s.text}\nscore:\n{bucketize(s.value, self.settings.score_buckets)}" for s in shown
        )
        blocks = [self._exemplar(setup, mod, ex, self._position(module)) for ex in exemplars]
        contract = self.contract(setup, module)
        return render_template(
            TEMPLATE,
            module=module,
            inputs=_and(_field(f) for f in mod.signature.inputs) or "nothing",
            outputs=_and(_field(f) for f in mod.signature.outputs),
            contract=CONTRACT_LINE.format(statement=contract.statement) if contract else "",
            order=order_word(self.settings.history_order, minimize=False),
            history=history or "(none yet)",
            exemplars="\n\n".join(blocks) or "(no exemplars)",
        )

    def _exemplar(self, setup: OptimizationSetup, mod: Module, ex: Example, position: str) -> str:
        fields = "\n".join(f"{label_of(k)}: {_short(format_value(v))}" for k, v in ex.inputs.items())
        wanted = _checked_outputs(setup)
        labels = {k: v for k, v in ex.labels.items() if k in wanted} or dict(ex.labels)
        output = "\n".join(f"{label_of(k)}: {_short(format_value(v))}" for k, v in labels.items())
        if position == "system":
            return f"input:\n{PLACEHOLDER}\n\n{fields}\noutput:\n{output}"
        if position == "question_begin":
            return f"input:\n{PLACEHOLDER}\n{fields}\noutput:\n{output}"
        if position == "question_end":
            return f"input:\n{fields}\n{PLACEHOLDER}\noutput:\n{output}"
        return f"input:\n{fields}\noutput:\n{PLACEHOLDER}\n{output}"

    # ------------------------------------------------------------------------------------------ loop

    def start_run(self, setup: OptimizationSetup) -> OPRORun:
        return OPRORun(setup)

    async def _optimize(self, run: OPRORun) -> OptimizationResult:
        setup = run.setup
        targets = self._targets(setup)
        train = self.training_subset(setup)
        if not train:
            raise ValueError("OPRO needs training examples to score candidates on; the trainset is empty")
        if not setup.valset:
            raise ValueError("OPRO needs a validation split to choose the result on; the valset is empty")
        await run.score(setup.start, setup.valset, full=True, module=None, step=0, role="start")
        early = False
        for module in targets:
            stopped = await self._optimize_module(run, module, train)
            early = early or stopped == "early_stop"
        return run.result(stopped_by="early_stop" if early else "completed")

    async def _optimize_module(self, run: OPRORun, module: str, train: list[Example]) -> str:
        setup = run.setup
        assert run.best is not None  # the start was scored on validation first
        base_val, base = run.best  # the best candidate on validation so far: later modules build on earlier ones
        position = self._position(module)

        def make(instruction: str) -> Candidate:
            return base.with_module(module, base[module].with_instruction(instruction).with_position(position))

        history = History()
        validated: dict[str, float] = {}
        info = run.modules.setdefault(module, {"history": [], "validated": {}, "stopped_by": "completed"})
        contract = self.contract(setup, module)
        exemplar_rng = setup.rng(f"opro:exemplars:{module}")
        order_rng = setup.rng(f"opro:order:{module}")

        async def score_train(instruction: str, step: int) -> None:
            cand = make(instruction)
            trial, _ = await run.score(cand, train, full=False, module=module, step=step, instruction=instruction)
            text = instruction if instruction.strip() else "(empty)"
            history.add(normalize_instruction(instruction), instruction, text, trial.score, step)
            info["history"].append({"step": step, "instruction": instruction, "train": trial.score})
            if cand == base:
                validated[normalize_instruction(instruction)] = base_val

        await score_train(self._start(module, base), 0)
        stale = 0
        for step in range(1, self.settings.steps + 1):
            exemplars = draw(exemplar_rng, setup.trainset, self.settings.n_exemplars)
            shown = history.shown(self.settings.max_history, self.settings.history_order, order_rng)
            prompt = self.meta_prompt(setup, module, shown, exemplars)
            replies = await propose_samples(
                setup, prompt, n=self.settings.candidates_per_step, first_index=run.sample_counter,
                purpose="opro_instruction", module=module, temperature=self.settings.temperature,
                max_tokens=self.settings.proposer_max_tokens, seed=0,  # OPRO has always asked with seed 0
            )  # fmt: skip
            run.sample_counter += self.settings.candidates_per_step
            new, duplicates, unparsed, failed = [], 0, 0, 0
            checks = {KEPT: 0, REPAIRED: 0, REJECTED: 0}
            for reply in replies:
                if isinstance(reply, Exception):
                    failed += 1
                    continue
                text, record = reply
                instruction = parse_instruction(text, max_chars=self.settings.max_instruction_chars)
                status, why = "", ""
                if instruction is not None:
                    cut = runs_to_cutoff(text, instruction, record.finish_reason)
                    verdict = guard(instruction, contract, cut_off=cut)
                    instruction, status, why = verdict.text, verdict.status, verdict.reason
                    checks[status] += 1
                keep(setup, record, instruction, note=why or ("" if status else "no instruction found in the reply"),
                     contract=status, contract_reason=why)  # fmt: skip
                if instruction is None:
                    unparsed += status != REJECTED
                elif normalize_instruction(instruction) in history or any(
                    normalize_instruction(instruction) == normalize_instruction(n) for n in new
                ):
                    duplicates += 1
                else:
                    new.append(instruction)
            for instruction in new:
                await score_train(instruction, step)
            row = {
                "module": module,
                "step": step,
                "proposed": len(replies),
                "new": len(new),
                "duplicates": duplicates,
                "unparsed": unparsed,
                "off_contract": checks[REJECTED],
                "repaired": checks[REPAIRED],
                "failed": failed,
                "best_train": history.best().value,
            }
            if step % self.settings.val_every == 0 or step == self.settings.steps:
                before = run.best[0]
                row["validated"] = await self._validate(run, history, validated, make, module, step)
                stale = 0 if run.best[0] > before + self.settings.min_delta else stale + 1
            row["best_val"] = run.best[0]
            run.steps.append(row)
            setup.emit("step", **{k: v for k, v in row.items() if k != "validated"})
            if stale >= self.settings.patience:
                info["stopped_by"] = "early_stop"
                setup.emit(
                    "early_stop", module=module, step=step, best_val=run.best[0], patience=self.settings.patience
                )
                break
        info["validated"] = dict(validated)
        return info["stopped_by"]

    async def _validate(
        self, run: OPRORun, history: History, validated: dict[str, float], make, module: str, step: int
    ):
        """Score on validation the best `val_top_k` instructions (by training score) not scored there yet."""
        pending = [s for s in reversed(history.by_quality()) if s.key not in validated][: self.settings.val_top_k]
        out = []
        for s in pending:
            trial, _ = await run.score(
                make(s.solution), run.setup.valset, full=True, module=module, step=step, instruction=s.solution
            )
            validated[s.key] = trial.score
            out.append({"instruction": s.solution, "train": s.value, "val": trial.score})
        return out

    # ---------------------------------------------------------------------------------------- estimate

    def _estimate(self, setup: OptimizationSetup, est: Estimate) -> None:
        """Upper bound on LM calls (no early stop, no duplicates, no cache hits) and rough token counts
        (a full history in every meta-prompt, `PROPOSAL_TOKENS` a reply)."""
        s = self.settings
        targets = self._targets(setup)
        n_train, n_val = len(self.training_subset(setup)), len(setup.valset)
        rounds = math.ceil(s.steps / s.val_every)
        proposer_calls = len(targets) * s.steps * s.candidates_per_step
        candidates = len(targets) * (1 + s.steps * s.candidates_per_step)
        runs = candidates * n_train + (1 + len(targets) * rounds * s.val_top_k) * n_val
        probe = Scored("x", setup.start, "x" * 120, 0.5, 0)
        exemplars = list(setup.trainset)[: s.n_exemplars]
        shown = [probe] * s.max_history
        meta = sum(approx_tokens(self.meta_prompt(setup, m, shown, exemplars)) for m in targets) / len(targets)
        est.per_call("proposer", proposer_calls, meta, PROPOSAL_TOKENS)
        p, c, calls = run_tokens(setup, 0)
        est.add("task", runs * calls, runs * p, runs * c)


def _checked_outputs(setup: OptimizationSetup) -> set[str]:
    """Output fields an exemplar shows: every module's required outputs (chain-of-thought reasoning is
    optional, and a long gold rationale would crowd the meta-prompt)."""
    out: set[str] = set()
    for mod in setup.program.named_modules().values():
        out.update(mod.required_outputs)
    return out


def _field(f) -> str:
    """A field as the meta-prompt names it: quoted label, then its description in brackets if any."""
    return f'"{f.label}" ({f.description})' if f.description else f'"{f.label}"'


def _short(text: str) -> str:
    return text if len(text) <= EXEMPLAR_VALUE_CHARS else text[: EXEMPLAR_VALUE_CHARS - 3].rstrip() + "..."


def _and(items) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]
