"""The DSPy half of `benchmarks/formats.py`; runs under `.venv-dspy` (`make bench-dspy-env`).

Not run directly: `formats.py` starts it with one JSON job on stdin and reads one JSON result from
stdout. DSPy itself runs the zero-shot program (its default `ChatAdapter`, with its own fallback to
`JSONAdapter` when a reply does not parse), against the same `llama_cpp.server` prompthone's side
uses, with the same signature (field names, descriptions, instruction), temperature and max_tokens.
Nothing is scored here: the outputs go back to `formats.py`, which scores both sides with the same
prompthone metric. DSPy's own disk cache (in the job's `cache_dir`) holds every answer, so a rerun
replays what was paid for (DSPy leaves the server address out of its cache keys).

Job: {"kind": "predict" | "cot" | "hotpot", "inputs": {name: description}, "outputs": {...},
"instruction": str, "demos": [{field: value}], "examples": [{"id", "inputs"}], "base_url", "model",
"max_tokens", "cache_dir",
"hotpot": {"query_instruction", "answer_instruction", "k"}}.
Result: {"dspy": version, "predictions": {id: {"outputs": {...}} | {"error": str} | {"lm_error": str}}}
("error": DSPy could not parse the reply; "lm_error": no reply at all).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import dspy
from dspy.utils.exceptions import AdapterParseError

warnings.filterwarnings("ignore")
logging.getLogger("dspy").setLevel(logging.ERROR)


def make_signature(job: dict[str, Any]) -> type[dspy.Signature]:
    """The user's signature as a DSPy user would write it: a description only where there is one."""
    fields: dict[str, Any] = {}
    for name, desc in job["inputs"].items():
        fields[name] = (str, dspy.InputField(desc=desc) if desc else dspy.InputField())
    for name, desc in job["outputs"].items():
        fields[name] = (str, dspy.OutputField(desc=desc) if desc else dspy.OutputField())
    return dspy.Signature(fields, job["instruction"])


def make_program(job: dict[str, Any]) -> Any:
    kind = job["kind"]
    if kind == "predict":
        return dspy.Predict(make_signature(job))
    if kind == "cot":
        return dspy.ChainOfThought(make_signature(job))
    if kind == "hotpot":
        from dspy_side import HotpotProgram
        from prompthone.data import load_hotpotqa_distractor
        from prompthone.data.retrieval import BM25Index

        h = job["hotpot"]
        index = BM25Index(list(load_hotpotqa_distractor(root=job.get("data_root")).corpus))
        return HotpotProgram(index, h["query_instruction"], h["answer_instruction"], h["k"])
    raise SystemExit(f"unknown program kind {kind!r}")


def main() -> None:
    job = json.loads(sys.stdin.read())
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    dspy.configure_cache(enable_disk_cache=True, enable_memory_cache=True, disk_cache_dir=job["cache_dir"])
    lm = dspy.LM(
        f"openai/{job['model']}", api_base=job["base_url"], api_key="bench", temperature=0.0,
        max_tokens=job["max_tokens"], num_retries=2, timeout=job.get("timeout_s", 600),
    )  # fmt: skip
    dspy.configure(lm=lm)
    program = make_program(job)
    if job.get("demos"):  # the same labelled demos prompthone's side shows, as a DSPy user would set them
        inputs = list(job["inputs"])
        for predictor in program.predictors():
            predictor.demos = [dspy.Example(**d).with_inputs(*inputs) for d in job["demos"]]
    out: dict[str, Any] = {}
    for i, ex in enumerate(job["examples"], 1):
        if i % 20 == 0:
            print(f"dspy: {i}/{len(job['examples'])}", file=sys.stderr, flush=True)
        try:
            pred = program(**ex["inputs"])
            out[ex["id"]] = {"outputs": dict(pred.items())}
        except AdapterParseError as exc:  # DSPy could not parse the reply even after its JSON fallback
            out[ex["id"]] = {"error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
        except Exception as exc:  # not an answer at all (the server went away, ...): the row is not measured
            out[ex["id"]] = {"lm_error": f"{type(exc).__name__}: {str(exc).strip()[:300]}"}
    sys.stdout.write(json.dumps({"dspy": dspy.__version__, "predictions": out}, default=str) + "\n")


if __name__ == "__main__":
    main()
