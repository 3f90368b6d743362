"""The application: a whole run, from a config or from Python objects, on top of the methods.

A run is what ties the floors below together, so it lives here and not in `optimize/` (which holds the
methods only and imports neither the store, the tasks nor the terminal):

* `spec.py`: what to run (`RunSpec`, the stored config) and what came of it (`RunOutcome`);
* `runner.py`: `run_optimization`, one optimization end to end (splits, store and lock, caches, test
  scoring, resume by replay), used by `prompthone optimize`, `prompthone.optimize(...)` and the benchmarks;
* `roles.py`: one LM per role (task, proposer, teacher, judge) and what each call cost;
* `splits.py`: a run's train / val / test, and the check that they fit the program;
* `files.py`: the run folder and the files left in it (`summary.json`, `best_prompts.txt`, ...);
* `progress.py`: the live status line;
* `config.py`: a YAML run config, validated, to a `RunSpec`;
* `evaluation.py`: `prompthone eval`, the start prompt scored on held-out examples;
* `export.py`: `prompthone export` (json, yaml, messages) and loading an export back;
* `python_api.py`: `prompthone.optimize(program, trainset=..., metric=...)`.

No import circle: the modules import in that order, downwards (`spec` first).
"""

from prompthone.runs.python_api import OptimizedRun, optimize

__all__ = ["OptimizedRun", "optimize"]
