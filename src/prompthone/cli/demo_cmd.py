"""`prompthone demo`: the README demo, a real MIPRO optimization a newcomer can run with one command.

It optimizes the built-in TREC question classifier on the 80 questions shipped in the package (task
`trec-mini`: no data folder needed) with the embedded Qwen2.5-Coder-0.5B, through the same runner as
`prompthone optimize`, so the run folder, `run.sqlite`, live progress, summary and `best_prompts.txt`
are the ordinary ones. Then it writes the HTML report and the best prompts as plain chat messages, and
ends with start vs final test score and the paths of those files.

The sizes are chosen to finish in a few minutes on two CPU cores: 20 train / 20 val / 40 test
questions, 3 instruction candidates and 3 demo sets, 6 trials (each one a full validation pass, since
the minibatch is the whole validation set), answers capped at 10 tokens. The classifier is a `Predict`,
so it starts in the `json` format. In the `labels` layout it started in before, the zero-shot start
answered the question instead of classifying it; demos (labelled and bootstrapped) taught the 0.5B model
the task.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from prompthone.cli.checks import positive
from prompthone.lm import DEFAULT_MODEL
from prompthone.optimize.budget import Budget
from prompthone.runs.runner import run_optimization
from prompthone.runs.spec import RunOutcome, RunSpec

DEMO_TASK = "trec-mini"
DEMO_OPTIMIZER = "mipro"
#: MIPRO settings of the demo: small pools, one full validation pass per trial (minibatch = val size),
#: a one-batch data summary and no program description (two proposer calls saved: a 0.5B model's
#: description of a one-step program adds nothing the signature does not say)
DEMO_SETTINGS: dict[str, Any] = {
    "num_candidates": 3,
    "num_trials": 6,
    "minibatch_size": 20,
    "summary_batches": 1,
    "ground_program": False,
    "proposer_max_tokens": 100,
}


def demo_spec(
    model: str = DEFAULT_MODEL,
    proposer_model: str | None = None,
    *,
    threads: int | None = None,
    max_minutes: float | None = None,
    **overrides: Any,
) -> RunSpec:
    """The demo's run: MIPRO on the shipped TREC subset. `overrides` replace RunSpec fields (tests shrink it)."""
    spec = RunSpec(
        task=DEMO_TASK,
        optimizer=DEMO_OPTIMIZER,
        model=model,
        proposer_model=proposer_model,
        settings=dict(DEMO_SETTINGS),
        n_train=20,
        n_val=20,
        n_test=40,
        seed=0,
        max_tokens=10,
        threads=threads,
        budget=Budget(max_wall_s=max_minutes * 60 if max_minutes else None),
    )
    return replace(spec, **overrides)


@dataclass
class DemoFiles:
    """What the demo leaves behind, all inside the run folder."""

    run_dir: Path
    report: Path
    prompts: Path
    messages: Path


async def run_demo(
    spec: RunSpec, *, out_dir: Path, console: Console, on_running: Callable[[Path], None] | None = None
) -> tuple[RunOutcome, DemoFiles]:
    """Optimize `spec`, then write the report and the exported messages; print where everything is.
    `on_running(run_dir)` is told the run folder once it exists (so an interrupt can name it)."""
    from prompthone.report import write_report
    from prompthone.runs.export import export_run

    console.print(
        "[bold]prompthone demo[/]: MIPRO searches instructions and few-shot demos for a TREC question "
        "classifier (6 classes: what kind of answer does a question ask for?). The zero-shot start is "
        "scored on held-out test questions, then the best prompt found on train/validation is scored on "
        "the same test questions. A few minutes on two CPU cores.\n"
    )
    outcome = await run_optimization(spec, out_dir=out_dir, console=console, on_running=on_running)
    assert isinstance(outcome, RunOutcome)
    run_dir = outcome.run_dir
    files = DemoFiles(
        run_dir=run_dir,
        report=write_report(run_dir),
        prompts=run_dir / "best_prompts.txt",
        messages=export_run(run_dir, "messages")[0],
    )
    print_demo_summary(console, outcome, files)
    return outcome, files


def print_demo_summary(console: Console, outcome: RunOutcome, files: DemoFiles) -> None:
    """Start vs final test score, then one line per file, the report last (paths never wrapped)."""
    table = Table(title="Demo result", show_header=False, title_justify="left")
    for label, r in (("start test", outcome.start_test), ("final test", outcome.final_test)):
        lo, hi = r.ci95
        table.add_row(label, f"[bold]{r.mean:.1%}[/]  ({r.n} questions, 95% CI {lo:.1%} - {hi:.1%})")
    counts = [*outcome.usage.values(), outcome.test_usage]
    paid, replayed = (sum(int(u.get(k, 0)) for u in counts) for k in ("paid_calls", "cache_hits"))
    table.add_row("model calls", f"{paid} paid, {replayed} replayed from the response cache")
    table.add_row("wall time", f"{outcome.wall_s / 60:.1f} min (search stopped by: {outcome.result.stopped_by})")
    console.print(table)
    for label, path, note in (
        ("run folder", files.run_dir, "run.sqlite, summary.json; `prompthone show` reads it"),
        ("best prompts", files.prompts, "plain text"),
        ("chat messages", files.messages, "the best prompt as messages, usable without prompthone"),
        ("report", files.report, "open it in a browser"),
    ):
        console.print(Text.assemble(f"{label}: ", str(path), (f"  ({note})", "dim")), soft_wrap=True)


def register(app: typer.Typer, console: Console, fail: Any, interrupted: Any) -> None:
    """Add `demo` to `app`."""

    @app.command("demo")
    def demo_command(
        model: Annotated[str, typer.Option("--model", "-m", help="Task model string.")] = DEFAULT_MODEL,
        proposer_model: Annotated[
            str | None, typer.Option(help="Model that proposes instructions (default: the task model).")
        ] = None,
        out: Annotated[Path, typer.Option(help="Folder that holds run folders.")] = Path("prompthone-runs"),
        threads: Annotated[
            int | None, typer.Option(help="llama.cpp threads for embedded models (default: all cores).", min=1)
        ] = None,
        max_minutes: Annotated[
            float | None, typer.Option(help="Budget: stop the search after this long.", callback=positive)
        ] = None,
    ) -> None:
        """The README demo: optimize a TREC question classifier (MIPRO, shipped data, embedded model), a few minutes."""
        from prompthone.evaluate import EvaluationError
        from prompthone.lm import LMError, run_sync
        from prompthone.report import RunDataError

        spec = demo_spec(model, proposer_model, threads=threads, max_minutes=max_minutes)
        started: list[Path] = []
        try:
            run_sync(run_demo(spec, out_dir=out, console=console, on_running=started.append))
        except KeyboardInterrupt:
            raise interrupted(started[0] if started else None) from None
        except (LMError, EvaluationError, RunDataError, ValueError, KeyError) as exc:
            raise fail(str(exc).strip("'\"")) from None
