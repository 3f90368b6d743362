"""The DSPy half of the side-by-side benchmarks; runs under `.venv-dspy` (`make bench-dspy-env`).

Not run directly: `benchmarks/dspy_overhead.py` and `benchmarks/compare_dspy.py` start it as a
subprocess with a JSON job on stdin and read one JSON result from stdout. DSPy lives in its own venv
because its dependencies (litellm: openai < 3, python-dateutil < 3) cannot share prompthone's pins;
this process imports prompthone's data, metrics, retrieval and statistics from `src/` (no LM code),
so both sides use the same splits, metric functions and BM25 index.

Jobs:
* `{"job": "overhead", ...}`: `dspy.Evaluate` with `num_threads = concurrency` over examples that
  the fake OpenAI server answers; wall and CPU time of each run.
* `{"job": "optimize", ...}`: DSPy's `MIPROv2` or `COPRO` (or `none`: the zero-shot program) on one
  built-in task against an OpenAI-compatible server, every model call counted and capped by
  `CallCap`; the result scored on the test split with the prompthone metric.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import dspy

from sample_efficiency import CallCap, CallCapReached

warnings.filterwarnings("ignore")
logging.getLogger("dspy").setLevel(logging.ERROR)


# ----------------------------------------------------------------------------------- counted LM
class CountedLM(dspy.LM):
    """`dspy.LM` whose every request goes through a `CallCap`: repeats replayed, new ones counted.

    DSPy's own cache is off (`cache=False`), so a request this class lets through is really sent;
    `n` completions in one call count as `n` requests (DSPy's native engine sends them one by one).

    The limit on the reply's length is also sent as `max_tokens`: litellm sends DSPy's `max_tokens` as
    `max_completion_tokens`, which `llama_cpp.server` ignores, so without this a reply runs on until the
    model stops or the context is full (seen: a 93-token answer at max_tokens 32, and the long
    proposer runs of issue 15). prompthone sends `max_tokens`; both sides now stop at the same length.
    """

    def __init__(self, model: str, *, call_cap: CallCap, role: str, **kwargs: Any) -> None:
        super().__init__(model, cache=False, **kwargs)
        self.call_cap = call_cap
        self.role = role

    def __call__(self, prompt: Any = None, *, messages: Any = None, **kwargs: Any) -> Any:
        merged = {**self.kwargs, **kwargs}
        # where the server listens (and its key) is not part of the question: a replay in a later session,
        # on another port, must find the answer
        asked = {k: v for k, v in merged.items() if k not in ("api_base", "api_key")}
        limit = merged.get("max_tokens") or merged.get("max_completion_tokens")
        if limit:
            extra = {**(merged.get("extra_body") or {}), "max_tokens": int(limit)}
            kwargs["extra_body"] = extra
            asked["extra_body"] = extra
        key = self.call_cap.key(
            self.role, {"model": self.model, "prompt": prompt, "messages": messages, "kwargs": asked}
        )
        hit = self.call_cap.replay(self.role, key)
        if hit is not None:
            return list(hit)
        n = int(merged.get("n") or merged.get("num_generations") or 1)
        for _ in range(n):
            self.call_cap.reserve(self.role)
        out = super().__call__(prompt, messages=messages, **kwargs)
        prompt_tokens, completion_tokens = self._usage_of(messages)
        self.call_cap.store(self.role, key, list(out), prompt_tokens, completion_tokens)
        return out

    def _usage_of(self, messages: Any) -> tuple[int, int]:
        for entry in reversed(self.history[-32:]):
            if entry.get("messages") is messages or entry.get("messages") == messages:
                u = entry.get("usage") or {}
                return int(u.get("prompt_tokens") or 0), int(u.get("completion_tokens") or 0)
        return 0, 0


# ------------------------------------------------------------------------------------- overhead
class WholeTextAdapter(dspy.ChatAdapter):
    """ChatAdapter's prompt, with the whole completion taken as the one output field.

    The fake server echoes the prompt rather than writing DSPy's `[[ ## answer ## ]]` sections, and
    it only answers in JSON when asked for JSON mode, which DSPy does not ask of a model it does not
    know. Without this every example would fail to parse and be sent again (ChatAdapter's JSON
    fallback). Parsing here is cheaper than ChatAdapter's, so it favours DSPy, if anything.
    """

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        (name,) = signature.output_fields
        return {name: completion.strip()}


def job_overhead(job: dict[str, Any]) -> dict[str, Any]:
    """`dspy.Evaluate` over `n` questions the fake server echoes; caching off, one call each."""
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    lm = dspy.LM(
        "openai/fake", api_base=job["base_url"], api_key="bench", cache=False, temperature=0.0, max_tokens=64,
        num_retries=0,
    )  # fmt: skip
    dspy.configure(lm=lm, adapter=WholeTextAdapter())
    program = dspy.Predict("question -> answer")
    n, conc = job["n"], job["concurrency"]

    def make(k: int, prefix: str) -> list[dspy.Example]:
        return [
            dspy.Example(question=f"What is {i} plus {i + 1}? ({prefix})").with_inputs("question") for i in range(k)
        ]

    def metric(example: dspy.Example, pred: dspy.Prediction, trace: Any = None) -> bool:
        return str(pred.answer).startswith("echo: ")

    warm = make(2 * conc, "warm")
    dspy.Evaluate(devset=warm, metric=metric, num_threads=conc)(program)
    runs = []
    for r in range(job.get("repeats", 1)):
        devset = make(n, f"run {r}")  # new questions each run: nothing can be answered from memory
        t0, c0 = time.perf_counter(), time.process_time()
        res = dspy.Evaluate(devset=devset, metric=metric, num_threads=conc, max_errors=n)(program)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        ok = sum(1 for _, _, s in res.results if s)
        runs.append({"wall_s": wall, "cpu_s": cpu, "ok": ok})
    return {"dspy": dspy.__version__, "runs": runs}


# ------------------------------------------------------------------------------------- optimize
def dspy_signature(signature: Any, instruction: str) -> Any:
    """The DSPy signature of a prompthone one: the same fields, in order, with the same descriptions."""
    fields: dict[str, Any] = {}
    for f in signature.inputs:
        fields[f.name] = dspy.InputField(desc=f.description) if f.description else dspy.InputField()
    for f in signature.outputs:
        fields[f.name] = dspy.OutputField(desc=f.description) if f.description else dspy.OutputField()
    return dspy.Signature(fields, instruction)


class ClassifyProgram(dspy.Module):
    """prompthone's `Classify`: one `dspy.Predict` over the same signature (names, descriptions, instruction)."""

    def __init__(self, signature: Any, instruction: str) -> None:
        super().__init__()
        self.classify = dspy.Predict(dspy_signature(signature, instruction))

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return self.classify(**inputs)


class ReasonProgram(dspy.Module):
    """prompthone's `Reason`: one `dspy.ChainOfThought` over the same signature (DSPy adds its own
    `reasoning` output before the answer, as prompthone's `ChainOfThought` does)."""

    def __init__(self, signature: Any, instruction: str) -> None:
        super().__init__()
        self.solve = dspy.ChainOfThought(dspy_signature(signature, instruction))

    def forward(self, **inputs: Any) -> dspy.Prediction:
        return self.solve(**inputs)


class HotpotProgram(dspy.Module):
    """The same pipeline as prompthone's `MultiHopQA`: query, BM25 (prompthone's index), answer."""

    def __init__(self, index: Any, query_instruction: str, answer_instruction: str, k: int) -> None:
        super().__init__()
        self.query = dspy.Predict(dspy.Signature("question -> search_query", query_instruction))
        self.answer = dspy.Predict(dspy.Signature("context, question -> answer", answer_instruction))
        self._index = index
        self._k = k

    def forward(self, question: str) -> dspy.Prediction:
        q = self.query(question=question).search_query or question
        passages = self._index.search(q, k=self._k)
        return self.answer(context=passages, question=question)


def build_program(task_name: str, data_root: str | None) -> tuple[dspy.Module, list[str]]:
    """The DSPy twin of the task's start program, and the output fields the metric reads."""
    from prompthone.program import Signature
    from prompthone.tasks import get_task
    from prompthone.tasks.programs import Classify, MultiHopQA, Reason

    start = get_task(task_name).make_program(data_root)
    if isinstance(start, Classify):
        predict = start.classify
        return ClassifyProgram(predict.signature, predict.params.instruction), list(predict.signature.output_names)
    if isinstance(start, Reason):  # the signature without the `reasoning` prompthone's ChainOfThought prepends
        solve = start.solve
        sig = solve.signature
        own = Signature(
            inputs={f.name: f.description for f in sig.inputs},
            outputs={f.name: f.description for f in sig.outputs if f.name != "reasoning"},
            instruction=sig.instruction,
        )
        return ReasonProgram(own, solve.params.instruction), ["answer"]
    if isinstance(start, MultiHopQA):
        q, a = start.query.params.instruction, start.answer.params.instruction
        return HotpotProgram(start._index, q, a, start.k), ["answer"]
    raise SystemExit(f"no DSPy equivalent written for the start program of task {task_name!r}")


class Tracker:
    """Wraps `dspy.Evaluate.__call__`: marks every evaluation's score and size with the calls spent so
    far, and keeps a copy of the best program scored on the whole validation set with no refused call."""

    def __init__(self, cap: CallCap, n_val: int) -> None:
        self.cap, self.n_val = cap, n_val
        self.best: tuple[float, Any] | None = None
        self._lock = threading.Lock()

    def install(self) -> None:
        original = dspy.Evaluate.__call__
        tracker = self

        def call(ev: dspy.Evaluate, program: Any, *args: Any, **kwargs: Any) -> Any:
            devset = kwargs.get("devset") if kwargs.get("devset") is not None else ev.devset
            refused0 = tracker.cap.refused
            res = original(ev, program, *args, **kwargs)
            clean = tracker.cap.refused == refused0
            score = float(res.score) / 100.0
            tracker.cap.mark("eval", n=len(devset), score=score, clean=clean)
            if clean and len(devset) == tracker.n_val:
                with tracker._lock:
                    if tracker.best is None or score > tracker.best[0]:
                        tracker.best = (score, program.deepcopy())
            return res

        dspy.Evaluate.__call__ = call


def instructions_of(program: dspy.Module) -> dict[str, Any]:
    """Each predictor's instruction and demos (their fields, so a row shows which labels the demos cover)."""
    out = {}
    for name, p in program.named_predictors():
        shown = [d.toDict() if hasattr(d, "toDict") else dict(d) for d in p.demos]
        out[name] = {"instruction": p.signature.instructions, "demos": len(p.demos), "demo_fields": shown}
    return out


def job_optimize(job: dict[str, Any]) -> dict[str, Any]:
    from prompthone.data import split
    from prompthone.tasks import get_task

    t_all = time.perf_counter()
    dspy.configure_cache(enable_disk_cache=False, enable_memory_cache=False)
    cap = CallCap(job.get("cap"), path=job.get("cache_path"))
    common = dict(api_base=job["base_url"], api_key="bench", num_retries=2, timeout=job.get("timeout_s", 600))
    task_lm = CountedLM(
        f"openai/{job['model']}", call_cap=cap, role="task", temperature=0.0, max_tokens=job["max_tokens"], **common
    )
    proposer_lm = CountedLM(
        f"openai/{job['model']}", call_cap=cap, role="proposer", temperature=1.0,
        max_tokens=job.get("proposer_max_tokens", 200), **common,
    )  # fmt: skip
    # max_errors: a 0.5B model breaks DSPy's output format now and then; DSPy scores such an example 0
    # (as prompthone scores a parse failure 0) instead of halting the optimization at the 10th one.
    dspy.configure(lm=task_lm, max_errors=10**6)

    task = get_task(job["task"])
    metric_obj = task.metric()
    parts = split(
        task.load(job.get("data_root")), train=job["n_train"], val=job["n_val"], test=job["n_test"], seed=job["seed"]
    )
    by_id: dict[str, Any] = {}
    student, outputs = build_program(job["task"], job.get("data_root"))

    def to_dspy(examples: Any) -> list[dspy.Example]:
        out = []
        for ex in examples:
            by_id[ex.id] = ex
            # the labels named like the program's outputs: what a labelled demo shows as the answer
            labels = {name: ex.labels[name] for name in outputs if name in ex.labels}
            fields = {**dict(ex.inputs), **labels, "ph_id": ex.id}
            out.append(dspy.Example(**fields).with_inputs(*ex.inputs.keys()))
        return out

    train, val, test = to_dspy(parts.train), to_dspy(parts.val), to_dspy(parts.test)

    def score(example: dspy.Example, pred: Any) -> float:
        got = {}
        for name in outputs:
            value = pred.get(name) if isinstance(pred, dict) else getattr(pred, name, None)
            got[name] = value if value is not None else ""
        return metric_obj.score(by_id[example.ph_id], got).score

    def metric(example: dspy.Example, pred: Any, trace: Any = None) -> float | bool:
        s = score(example, pred)
        return s >= 1.0 if trace is not None else s  # a bootstrapped demo must be fully right, as in prompthone

    tracker = Tracker(cap, len(val))
    tracker.install()
    method = job["method"]
    conc = job["concurrency"]
    seed = job["seed"]
    settings = job.get("settings", {})
    t_opt = time.perf_counter()
    stopped_by = "completed"
    if method == "none":
        best = student
    elif method == "miprov2":
        auto = settings.get("auto")
        if auto:  # DSPy's own defaults: `auto` sets candidates, trials and the validation size; the rest as DSPy has it
            opt = dspy.MIPROv2(
                metric=metric, prompt_model=proposer_lm, task_model=task_lm, auto=auto, num_threads=conc,
                seed=seed, verbose=False, track_stats=True, metric_threshold=1.0,
            )  # fmt: skip
            compile_kwargs: dict[str, Any] = {}
        else:
            opt = dspy.MIPROv2(
                metric=metric, prompt_model=proposer_lm, task_model=task_lm, auto=None,
                num_candidates=settings.get("num_candidates", 4),
                max_bootstrapped_demos=settings.get("max_bootstrapped_demos", 2),
                max_labeled_demos=settings.get("max_labeled_demos", 2),
                num_threads=conc, seed=seed, init_temperature=1.0, verbose=False, track_stats=True,
                metric_threshold=1.0,
            )  # fmt: skip
            compile_kwargs = dict(
                num_trials=settings.get("num_trials", 6),
                minibatch=settings.get("minibatch_size", 35) < len(val),
                minibatch_size=min(settings.get("minibatch_size", 35), len(val)),
                minibatch_full_eval_steps=settings.get("minibatch_full_eval_steps", 5),
                view_data_batch_size=settings.get("view_data_batch_size", 10),
                data_aware_proposer=settings.get("data_aware_proposer", True),
                program_aware_proposer=settings.get("program_aware_proposer", True),
            )
        try:
            best = opt.compile(student, trainset=train, valset=val, **compile_kwargs)
        except CallCapReached as exc:
            stopped_by, best = f"call cap: {exc}", None
        except Exception as exc:  # e.g. the proposer's output not in DSPy's format: DSPy stops the compile
            stopped_by, best = f"DSPy error: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}", None
    elif method == "copro":
        opt = dspy.COPRO(
            prompt_model=proposer_lm, metric=metric, breadth=settings.get("breadth", 3), depth=settings.get("depth", 2),
            init_temperature=settings.get("init_temperature", 1.4), track_stats=False,
        )  # fmt: skip
        try:
            # COPRO scores its candidates on `trainset`; the validation split plays that part here, as
            # prompthone's OPRO scores candidates on validation.
            best = opt.compile(student, trainset=val, eval_kwargs={"num_threads": conc, "display_progress": False})
        except CallCapReached as exc:
            stopped_by, best = f"call cap: {exc}", None
        except Exception as exc:
            stopped_by, best = f"DSPy error: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:160]}", None
    else:
        raise SystemExit(f"unknown DSPy method {method!r}")
    if cap.refused and stopped_by == "completed":
        stopped_by = f"call cap ({cap.refused} requests refused)"
    fallback = None
    if best is None or cap.refused:
        # the compile stopped, or DSPy scored refused requests as failures: the best program scored on the
        # whole validation set before that (the zero-shot program if none was)
        fallback = "best full-validation program so far" if tracker.best is not None else "the zero-shot program"
        best = tracker.best[1] if tracker.best is not None else student
    optimize_wall = time.perf_counter() - t_opt
    usage_opt = {
        "paid": dict(cap.paid), "replayed": dict(cap.replayed), "from_file": dict(cap.from_file),
        "tokens": dict(cap.tokens),
    }  # fmt: skip

    # test: the chosen program on every test example, scored by the prompthone metric; no cap
    cap.cap = None
    paid0, tokens0, file0 = dict(cap.paid), dict(cap.tokens), dict(cap.from_file)
    scores: list[float] = [0.0] * len(test)
    failures = 0

    def run_one(i: int) -> None:
        nonlocal failures
        try:
            scores[i] = score(test[i], best(**test[i].inputs()))
        except Exception:
            failures += 1  # DSPy could not parse the answer (or the call failed): scored 0, counted

    with dspy.context(lm=task_lm), ThreadPoolExecutor(conc) as pool:
        list(pool.map(run_one, range(len(test))))
    usage_test = {
        "paid": {k: v - paid0.get(k, 0) for k, v in cap.paid.items()},
        "tokens": {k: v - tokens0.get(k, 0) for k, v in cap.tokens.items()},
        "from_file": {k: v - file0.get(k, 0) for k, v in cap.from_file.items()},
    }
    cap.close()
    return {
        "dspy": dspy.__version__,
        "method": method,
        "stopped_by": stopped_by,
        "fallback": fallback,
        "test_scores": scores,
        "test_failures": failures,
        "marks": cap.marks,
        "usage_optimization": usage_opt,
        "usage_test_scoring": usage_test,
        "wall_s_optimization": optimize_wall,
        "wall_s_total": time.perf_counter() - t_all,
        "best_program": instructions_of(best),
    }


def main() -> None:
    job = json.loads(sys.stdin.read())
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    result = job_overhead(job) if job["job"] == "overhead" else job_optimize(job)
    sys.stdout.write(json.dumps(result, default=str) + "\n")


if __name__ == "__main__":
    main()
