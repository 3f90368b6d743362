"""`prompthone eval`'s summary table; the evaluation run itself is `prompthone.runs.evaluation`."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from prompthone.runs.evaluation import EvalOutcome


def print_summary(console: Console, outcome: EvalOutcome) -> None:
    """The score with its interval, what happened to the examples, what was paid, and where the files are."""
    result, lm, wall, path = outcome.result, outcome.lm, outcome.wall_s, outcome.run_dir
    lo, hi = result.ci95
    u = lm.usage
    table = Table(title="Evaluation", show_header=False)
    table.add_row("score", f"[bold]{result.mean:.1%}[/]  (95% CI {lo:.1%} - {hi:.1%})")
    outcomes = f"{result.n_scored} scored, {result.n_parse_failures} parse failures, {result.n_errors} errors"
    table.add_row("examples", f"{result.n}: {outcomes}")
    table.add_row("LM calls", f"{u.calls} ({u.cache_hits} from cache)")
    table.add_row("tokens paid", f"{u.prompt_tokens} prompt + {u.completion_tokens} completion")
    table.add_row("wall time", f"{wall:.1f} s")
    table.add_row("files", str(path))
    console.print(table)
