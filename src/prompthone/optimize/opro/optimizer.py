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
from prompthone.optimize.base import OptimizationResult, OptimizationSetup, Optimizer
from prompthone.optimize.opro.meta import (
    ORDERS,
    History,
    Scored,
    bucketize,
    draw,
    normalize_instruction,
    order_word,
    parse_instruction,
    sample_replies,
)
from prompthone.optimize.proposers.calls import emit_proposal
from prompthone.optimize.proposers.contract import KEPT, REJECTED, REPAIRED, Contract, guard, runs_to_cutoff
from prompthone.program import Candidate, render_messages
from prompthone.program.module import Module
from prompthone.program.params import POSITIONS
from prompthone.program.values import format_value, label_of
from prompthone.templates import render_template

TEMPLATE = "opro_instruction"
PLACEHOLDER = "<INS>"
#: how the meta-prompt states the start's contract (nothing when the start has none)
CONTRACT_LINE = " Every instruction must keep this requirement of the first one, word for word: {statement}"
EXEMPLAR_VALUE_CHARS = 400


class OPRO(Optimizer):
    """Optimization by PROmpting (Yang et al. 2023) for the instructions of a program's modules.

    Defaults are the paper's: 8 candidates a step at temperature 1.0, the best 20 earlier instructions
    shown in ascending order of score bucketized to integers 0-100, 3 exemplars, the instruction before
    the question. The settings the paper ablated are switches here: `history_order`
    ("ascending", "descending", "random"), `score_buckets` (None: unrounded), `n_exemplars`,
    `candidates_per_step`, `temperature`, `start_instruction` (None: the program's own; "" is allowed).

    `steps` is per optimized module; `modules` picks which (default: all, in program order);
    `position` ("system", "question_begin", "question_end", "answer_start", or a mapping per module)
    is where proposed instructions sit; `train_batch` fixes a seeded subset of the training set to
    score on (None: all of it); `val_every`, `val_top_k`, `patience` and `min_delta` govern validation
    and the early stop.
    """

    name = "opro"

    def __init__(
        self,
        *,
        steps: int = 20,
        candidates_per_step: int = 8,
        temperature: float = 1.0,
        max_history: int = 20,
        history_order: str = "ascending",
        score_buckets: int | None = 100,
        n_exemplars: int = 3,
        start_instruction: str | Mapping[str, str] | None = None,
        position: str | Mapping[str, str] = "system",
        modules: Sequence[str] | None = None,
        train_batch: int | None = None,
        val_every: int = 2,
        val_top_k: int = 2,
        patience: int = 3,
        min_delta: float = 0.0,
        proposer_max_tokens: int = 300,
        max_instruction_chars: int = 800,
    ) -> None:
        _at_least("steps", steps, 1)
        _at_least("candidates_per_step", candidates_per_step, 1)
        _at_least("max_history", max_history, 1)
        _at_least("n_exemplars", n_exemplars, 0)
        _at_least("val_every", val_every, 1)
        _at_least("val_top_k", val_top_k, 1)
        _at_least("patience", patience, 1)
        _at_least("proposer_max_tokens", proposer_max_tokens, 16)
        _at_least("max_instruction_chars", max_instruction_chars, 1)
        if train_batch is not None:
            _at_least("train_batch", train_batch, 1)
        if not 0.0 <= float(temperature) <= 2.0:
            raise ValueError(f"temperature must be in [0, 2], got {temperature!r}")
        if history_order not in ORDERS:
            raise ValueError(f"history_order must be one of {list(ORDERS)}, got {history_order!r}")
        if score_buckets is not None:
            _at_least("score_buckets", score_buckets, 1)
        for p in position.values() if isinstance(position, Mapping) else [position]:
            if p not in POSITIONS:
                raise ValueError(f"position must be one of {list(POSITIONS)} (or a mapping per module), got {p!r}")
        self.steps = int(steps)
        self.candidates_per_step = int(candidates_per_step)
        self.temperature = float(temperature)
        self.max_history = int(max_history)
        self.history_order = history_order
        self.score_buckets = score_buckets
        self.n_exemplars = int(n_exemplars)
        self.start_instruction = start_instruction
        self.position = position
        self.modules = list(modules) if modules is not None else None
        self.train_batch = train_batch
        self.val_every = int(val_every)
        self.val_top_k = int(val_top_k)
        self.patience = int(patience)
        self.min_delta = float(min_delta)
        self.proposer_max_tokens = int(proposer_max_tokens)
        self.max_instruction_chars = int(max_instruction_chars)

    # ----------------------------------------------------------------------------------------- setup

    def _targets(self, setup: OptimizationSetup) -> list[str]:
        names = list(setup.program.named_modules())
        targets = self.modules if self.modules is not None else names
        unknown = [m for m in targets if m not in names]
        if unknown or not targets:
            raise ValueError(f"modules {unknown or targets} to optimize are not in the program, which has {names}")
        for setting in ("position", "start_instruction"):
            value = getattr(self, setting)
            if isinstance(value, Mapping):
                extra = [m for m in value if m not in names]
                if extra:
                    raise ValueError(f"{setting} names unknown module(s) {extra}; the program has {names}")
        return list(targets)

    def _position(self, module: str) -> str:
        if isinstance(self.position, Mapping):
            return self.position.get(module, "system")
        return self.position

    def _start(self, module: str, base: Candidate) -> str:
        s = self.start_instruction
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
        if self.train_batch is None or self.train_batch >= len(train):
            return train
        return setup.rng("opro:train_batch").sample(train, self.train_batch)

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
        history = "\n\n".join(f"text:\n{s.text}\nscore:\n{bucketize(s.value, self.score_buckets)}" for s in shown)
        blocks = [self._exemplar(setup, mod, ex, self._position(module)) for ex in exemplars]
        contract = self.contract(setup, module)
        return render_template(
            TEMPLATE,
            module=module,
            inputs=_and(_field(f) for f in mod.signature.inputs) or "nothing",
            outputs=_and(_field(f) for f in mod.signature.outputs),
            contract=CONTRACT_LINE.format(statement=contract.statement) if contract else "",
            order=order_word(self.history_order, minimize=False),
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

    async def _optimize(self, setup: OptimizationSetup) -> OptimizationResult:
        targets = self._targets(setup)
        train = self.training_subset(setup)
        if not train:
            raise ValueError("OPRO needs training examples to score candidates on; the trainset is empty")
        if not setup.valset:
            raise ValueError("OPRO needs a validation split to choose the result on; the valset is empty")
        self._sample_counter = 0
        self._steps_log: list[dict[str, Any]] = []
        self._module_info: dict[str, dict[str, Any]] = {}
        await self.score(setup, setup.start, setup.valset, full=True, module=None, step=0, role="start")
        early = False
        for module in targets:
            stopped = await self._optimize_module(setup, module, train)
            early = early or stopped == "early_stop"
        return self._result(
            setup, stopped_by="early_stop" if early else "completed", steps=self._steps_log, modules=self._module_info
        )

    async def _optimize_module(self, setup: OptimizationSetup, module: str, train: list[Example]) -> str:
        base_val, base = self._best  # the best candidate on validation so far: later modules build on earlier ones
        position = self._position(module)

        def make(instruction: str) -> Candidate:
            return base.with_module(module, base[module].with_instruction(instruction).with_position(position))

        history = History()
        validated: dict[str, float] = {}
        info = self._module_info.setdefault(module, {"history": [], "validated": {}, "stopped_by": "completed"})
        contract = self.contract(setup, module)
        exemplar_rng = setup.rng(f"opro:exemplars:{module}")
        order_rng = setup.rng(f"opro:order:{module}")

        async def score_train(instruction: str, step: int) -> None:
            cand = make(instruction)
            trial, _ = await self.score(
                setup, cand, train, full=False, module=module, step=step, instruction=instruction
            )
            text = instruction if instruction.strip() else "(empty)"
            history.add(normalize_instruction(instruction), instruction, text, trial.score, step)
            info["history"].append({"step": step, "instruction": instruction, "train": trial.score})
            if cand == base:
                validated[normalize_instruction(instruction)] = base_val

        await score_train(self._start(module, base), 0)
        stale = 0
        for step in range(1, self.steps + 1):
            setup.budget.check()
            exemplars = draw(exemplar_rng, setup.trainset, self.n_exemplars)
            shown = history.shown(self.max_history, self.history_order, order_rng)
            prompt = self.meta_prompt(setup, module, shown, exemplars)
            replies = await sample_replies(
                setup.proposer_lm,
                prompt,
                n=self.candidates_per_step,
                temperature=self.temperature,
                first_index=self._sample_counter,
                max_tokens=self.proposer_max_tokens,
            )
            first_index = self._sample_counter
            self._sample_counter += self.candidates_per_step
            new, duplicates, unparsed, failed = [], 0, 0, 0
            checks = {KEPT: 0, REPAIRED: 0, REJECTED: 0}
            for i, reply in enumerate(replies):
                if isinstance(reply, Exception):
                    failed += 1
                    continue
                instruction = parse_instruction(reply.text, max_chars=self.max_instruction_chars)
                status, why = "", ""
                if instruction is not None:
                    cut = runs_to_cutoff(reply.text, instruction, reply.finish_reason)
                    verdict = guard(instruction, contract, cut_off=cut)
                    instruction, status, why = verdict.text, verdict.status, verdict.reason
                    checks[status] += 1
                emit_proposal(
                    setup, purpose="opro_instruction", module=module, sample_index=first_index + i,
                    temperature=self.temperature, kept=instruction, cached=reply.cached, reply=reply.text,
                    note=why or ("" if status else "no instruction found in the reply"), contract=status,
                    contract_reason=why,
                )  # fmt: skip
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
            if step % self.val_every == 0 or step == self.steps:
                before = self._best[0]
                row["validated"] = await self._validate(setup, history, validated, make, module, step)
                stale = 0 if self._best[0] > before + self.min_delta else stale + 1
            row["best_val"] = self._best[0]
            self._steps_log.append(row)
            setup.emit("step", **{k: v for k, v in row.items() if k != "validated"})
            if stale >= self.patience:
                info["stopped_by"] = "early_stop"
                setup.emit("early_stop", module=module, step=step, best_val=self._best[0], patience=self.patience)
                break
        info["validated"] = dict(validated)
        return info["stopped_by"]

    async def _validate(self, setup, history: History, validated: dict[str, float], make, module: str, step: int):
        """Score on validation the best `val_top_k` instructions (by training score) not scored there yet."""
        pending = [s for s in reversed(history.by_quality()) if s.key not in validated][: self.val_top_k]
        out = []
        for s in pending:
            trial, _ = await self.score(
                setup, make(s.solution), setup.valset, full=True, module=module, step=step, instruction=s.solution
            )
            validated[s.key] = trial.score
            out.append({"instruction": s.solution, "train": s.value, "val": trial.score})
        return out

    def _partial(self, setup: OptimizationSetup, *, stopped_by: str) -> OptimizationResult:
        """The base result, plus the step log and per-module history, also when a budget cut the run."""
        result = super()._partial(setup, stopped_by=stopped_by)
        result.info.setdefault("steps", getattr(self, "_steps_log", []))
        result.info.setdefault("modules", getattr(self, "_module_info", {}))
        return result

    # ---------------------------------------------------------------------------------------- estimate

    def estimate(self, setup: OptimizationSetup) -> dict[str, dict[str, float]]:
        """Upper bound on LM calls (no early stop, no duplicates, no cache hits) and rough token counts
        (4 characters a token, a full history, half the task model's token cap per reply)."""
        targets = self._targets(setup)
        n_train, n_val = len(self.training_subset(setup)), len(setup.valset)
        calls_per_example = len(setup.program.named_modules())
        rounds = math.ceil(self.steps / self.val_every)
        proposer_calls = len(targets) * self.steps * self.candidates_per_step
        candidates = len(targets) * (1 + self.steps * self.candidates_per_step)
        task_calls = calls_per_example * (candidates * n_train + (1 + len(targets) * rounds * self.val_top_k) * n_val)
        base = setup.start
        probe = Scored("x", base, "x" * 120, 0.5, 0)
        exemplars = list(setup.trainset)[: self.n_exemplars]
        meta_chars = sum(len(self.meta_prompt(setup, m, [probe] * self.max_history, exemplars)) for m in targets) / len(
            targets
        )
        ex = next(iter(setup.trainset), None)
        task_chars = 0
        if ex is not None:
            for name, mod in setup.program.named_modules().items():
                inputs = {n: ex.inputs.get(n, "") for n in mod.signature.input_names}
                msgs = render_messages(mod.signature, base[name], inputs)
                task_chars += sum(len(m["content"]) for m in msgs)
        reply_tokens = setup.evaluator.lm_options.get("max_tokens", 256) / 2
        return {
            "proposer": {
                "calls": proposer_calls,
                "prompt_tokens": proposer_calls * meta_chars / 4,
                "completion_tokens": proposer_calls * 60,
            },
            "task": {
                "calls": task_calls,
                "prompt_tokens": task_calls * task_chars / max(calls_per_example, 1) / 4,
                "completion_tokens": task_calls * reply_tokens,
            },
        }


def _checked_outputs(setup: OptimizationSetup) -> set[str]:
    """Output fields an exemplar shows: every module's required outputs (chain-of-thought reasoning is
    optional, and a long gold rationale would crowd the meta-prompt)."""
    out: set[str] = set()
    for mod in setup.program.named_modules().values():
        out.update(n for n in mod.signature.output_names if n not in mod.optional_outputs)
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


def _at_least(name: str, value: Any, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
