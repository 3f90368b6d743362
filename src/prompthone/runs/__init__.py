"""The application: a whole run of a program (splits, one LM per role, store, live progress, files).

`prompthone.optimize(...)` (in `python_api`) is the Python entry point; the CLI's `prompthone optimize`
runs the same runner with a config.
"""

from prompthone.runs.python_api import OptimizedRun, optimize

__all__ = ["OptimizedRun", "optimize"]
