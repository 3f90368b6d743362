"""prompthone: optimize the prompts of LM programs.

`import prompthone as ph` gives the everyday names: `ph.Program`, `ph.Predict`, `ph.ChainOfThought`,
`ph.Signature`, `ph.Example`, `ph.LM`, `ph.Evaluator`, the metrics (`ph.ExactMatch`, ...) and
`ph.optimize(program, trainset=..., metric=...)`. Names load on first use, except `optimize`: the
subpackage `prompthone.optimize` (the methods) would otherwise take the name the moment it is imported,
so the function is bound once that subpackage is loaded, and `ph.optimize` is always the function
(`from prompthone.optimize import ...` and `sys.modules["prompthone.optimize"]` still reach the
subpackage; `import prompthone.optimize as x` gives the function, as Python looks the attribute up first).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the module that defines it
_NAMES: dict[str, str] = {
    "LM": "prompthone.lm",
    "Completion": "prompthone.lm",
    "LMError": "prompthone.lm",
    "Usage": "prompthone.lm",
    "Program": "prompthone.program",
    "Predict": "prompthone.program",
    "ChainOfThought": "prompthone.program",
    "Module": "prompthone.program",
    "Signature": "prompthone.program",
    "Field": "prompthone.program",
    "Candidate": "prompthone.program",
    "Prediction": "prompthone.program",
    "render_prompts": "prompthone.program",
    "using": "prompthone.program",
    "Example": "prompthone.data",
    "load_examples": "prompthone.data",
    "Evaluator": "prompthone.evaluate",
    "EvalResult": "prompthone.evaluate",
    "Metric": "prompthone.metrics",
    "MetricResult": "prompthone.metrics",
    "ExactMatch": "prompthone.metrics",
    "TokenF1": "prompthone.metrics",
    "NumericMatch": "prompthone.metrics",
    "ChoiceMatch": "prompthone.metrics",
    "JudgeMetric": "prompthone.metrics",
    "Budget": "prompthone.optimize",
    "OptimizedRun": "prompthone.runs",
}

__all__ = [
    "LM",
    "Budget",
    "Candidate",
    "ChainOfThought",
    "ChoiceMatch",
    "Completion",
    "EvalResult",
    "Evaluator",
    "ExactMatch",
    "Example",
    "Field",
    "JudgeMetric",
    "LMError",
    "Metric",
    "MetricResult",
    "Module",
    "NumericMatch",
    "OptimizedRun",
    "Predict",
    "Prediction",
    "Program",
    "Signature",
    "TokenF1",
    "Usage",
    "__version__",
    "load_examples",
    "optimize",
    "render_prompts",
    "using",
]


def __getattr__(name: str) -> Any:
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'prompthone' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__


if TYPE_CHECKING:  # for type checkers and editors; at run time `__getattr__` loads them
    from prompthone.data import Example, load_examples
    from prompthone.evaluate import EvalResult, Evaluator
    from prompthone.lm import LM, Completion, LMError, Usage
    from prompthone.metrics import ChoiceMatch, ExactMatch, JudgeMetric, Metric, MetricResult, NumericMatch, TokenF1
    from prompthone.optimize import Budget
    from prompthone.program import (
        Candidate,
        ChainOfThought,
        Field,
        Module,
        Predict,
        Prediction,
        Program,
        Signature,
        render_prompts,
        using,
    )
    from prompthone.runs import OptimizedRun

import prompthone.optimize  # noqa: E402, F401  (load the subpackage first, so that the function below keeps the name)
from prompthone.runs import optimize  # noqa: E402
