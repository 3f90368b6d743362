"""Reading runs back: the HTML report, and the `RunData` that `show`, `compare` and `export` share."""

from prompthone.report.html import REPORT_NAME, render_report, write_report
from prompthone.report.run_data import RUNS_DIR, RunData, RunDataError, Score, load_run, resolve_run

__all__ = [
    "REPORT_NAME",
    "RUNS_DIR",
    "RunData",
    "RunDataError",
    "Score",
    "load_run",
    "render_report",
    "resolve_run",
    "write_report",
]
