"""`prompthone opro-numeric linreg|tsp`: OPRO on the paper's numeric problems, from the command line.

Each run prints the best solution found, its gap to the true optimum and to a plain baseline, and
saves a PNG of the best value per step next to a `summary.json`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from prompthone.lm import DEFAULT_MODEL, LM, LMError, run_sync, thread_options

console = Console()
err = Console(stderr=True)


def register(app: typer.Typer) -> None:
    """Add the `opro-numeric` command group (linreg, tsp) to `app`."""
    numeric = typer.Typer(
        help="OPRO on numeric problems: the LM proposes solutions from scored earlier ones.", no_args_is_help=True
    )

    @numeric.command("linreg")
    def linreg_command(
        model: Annotated[str, typer.Option("--model", "-m", help="Optimizer model string.")] = DEFAULT_MODEL,
        w: Annotated[float, typer.Option(help="True slope.")] = 15.0,
        b: Annotated[float, typer.Option(help="True intercept.")] = 14.0,
        points: Annotated[int, typer.Option(help="Number of noisy points (x = 1..points).")] = 50,
        noise: Annotated[float, typer.Option(help="Standard deviation of the Gaussian noise.")] = 1.0,
        box: Annotated[
            tuple[float, float], typer.Option(help="Range of w and b for the starting pairs and the random search.")
        ] = (10.0, 20.0),
        steps: Annotated[int, typer.Option(help="Optimization steps.")] = 20,
        candidates: Annotated[int, typer.Option(help="Samples per step.")] = 8,
        temperature: Annotated[float, typer.Option(help="Sampling temperature of the optimizer model.")] = 1.0,
        max_history: Annotated[int, typer.Option(help="Best earlier solutions shown.")] = 20,
        order: Annotated[str, typer.Option(help="History order: ascending (best last), descending, random.")] = (
            "ascending"
        ),
        n_initial: Annotated[int, typer.Option(help="Random starting solutions.")] = 5,
        seed: Annotated[int, typer.Option(help="Seed of the data, starting solutions and baseline.")] = 0,
        max_tokens: Annotated[int, typer.Option(help="Cap on tokens per optimizer reply.")] = 256,
        threads: Annotated[int | None, typer.Option(help="llama.cpp threads of an embedded model.")] = None,
        out: Annotated[Path, typer.Option(help="Folder for the plot and summary.")] = Path("prompthone-runs"),
    ) -> None:
        """Linear regression: find (w, b) for noisy points y = w x + b + noise."""
        from prompthone.experiments.opro_numeric import LinearRegression

        if box[0] >= box[1]:
            raise _fail(f"--box needs LOW < HIGH, got {box[0]} {box[1]}")
        problem = LinearRegression(w, b, n_points=points, noise=noise, seed=seed, init_range=box)
        _run(
            problem,
            model,
            steps,
            candidates,
            temperature,
            max_history,
            order,
            n_initial,
            seed,
            max_tokens,
            threads,
            out,
        )

    @numeric.command("tsp")
    def tsp_command(
        model: Annotated[str, typer.Option("--model", "-m", help="Optimizer model string.")] = DEFAULT_MODEL,
        n: Annotated[int, typer.Option("--n", help="Number of cities (exact optimum up to --max-exact).")] = 8,
        max_exact: Annotated[int, typer.Option(help="Largest n solved exactly (Held-Karp).")] = 15,
        steps: Annotated[int, typer.Option(help="Optimization steps.")] = 20,
        candidates: Annotated[int, typer.Option(help="Samples per step.")] = 8,
        temperature: Annotated[float, typer.Option(help="Sampling temperature of the optimizer model.")] = 1.0,
        max_history: Annotated[int, typer.Option(help="Best earlier tours shown.")] = 20,
        order: Annotated[str, typer.Option(help="History order: ascending (best last), descending, random.")] = (
            "ascending"
        ),
        n_initial: Annotated[int, typer.Option(help="Random starting tours.")] = 5,
        seed: Annotated[int, typer.Option(help="Seed of the cities and starting tours.")] = 0,
        max_tokens: Annotated[int, typer.Option(help="Cap on tokens per optimizer reply.")] = 256,
        threads: Annotated[int | None, typer.Option(help="llama.cpp threads of an embedded model.")] = None,
        out: Annotated[Path, typer.Option(help="Folder for the plot and summary.")] = Path("prompthone-runs"),
    ) -> None:
        """Travelling salesman: a shortest closed tour through n random cities."""
        from prompthone.experiments.opro_numeric import TSP

        try:
            problem = TSP(n, seed=seed, max_exact=max_exact)
        except ValueError as exc:
            raise _fail(str(exc)) from None
        _run(
            problem,
            model,
            steps,
            candidates,
            temperature,
            max_history,
            order,
            n_initial,
            seed,
            max_tokens,
            threads,
            out,
        )

    app.add_typer(numeric, name="opro-numeric")


def _fail(message: str) -> typer.Exit:
    err.print(f"[bold red]error:[/] {message}", highlight=False)
    return typer.Exit(1)


def _run(
    problem, model, steps, candidates, temperature, max_history, order, n_initial, seed, max_tokens, threads, out
) -> None:
    from prompthone.experiments.opro_numeric import plot_run, run_numeric

    def on_event(kind: str, data: dict) -> None:
        if kind == "step":
            console.print(
                f"  step {data['step']:>3}: best {data['best']:,.2f}  ({data['new']} new, {data['duplicates']} "
                f"duplicates, {data['unparsed']} unparsed so far)",
                highlight=False,
            )

    try:
        lm = LM(model, **thread_options(model, threads))
        console.print(f"[bold]OPRO[/] on [bold]{problem.name}[/] with optimizer model {lm.model}, seed {seed}")
        run = run_sync(
            run_numeric(
                problem, lm, steps=steps, candidates_per_step=candidates, temperature=temperature,
                max_history=max_history, history_order=order, n_initial=n_initial, seed=seed, max_tokens=max_tokens,
                events=on_event,
            )
        )  # fmt: skip
    except (LMError, ValueError) as exc:
        raise _fail(str(exc)) from None
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) / f"opro-{problem.name}-{stamp}"
    png = plot_run(run, run_dir / "best_per_step.png")
    summary = run.summary()
    summary.update(model=lm.model, seed=seed, steps=steps, candidates_per_step=candidates, temperature=temperature)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    (run_dir / "last_meta_prompt.txt").write_text(run.meta_prompts[-1] if run.meta_prompts else "")
    _print_summary(run, png)


def _print_summary(run, png: Path) -> None:
    s = run.summary()
    table = Table(title=f"OPRO on {run.problem.name}", show_header=False)
    table.add_row("best found", f"{s['best_value']:,.3f} at {_fmt(s['best_solution'])}")
    if "optimum" in s:
        rel = s["relative_gap_to_optimum"]
        table.add_row("true optimum", f"{s['optimum']['value']:,.3f} at {_fmt(s['optimum']['solution'])}")
        table.add_row("gap to optimum", f"{s['gap_to_optimum']:,.3f} ({rel:.2%})")
    else:
        table.add_row("true optimum", "not computed (too many cities for the exact solver)")
    base = s["baseline"]
    table.add_row("baseline", f"{base['name']}: {base['value']:,.3f}")
    if "gap_to_optimum" in base:
        table.add_row("baseline gap to optimum", f"{base['gap_to_optimum']:,.3f}")
    better = "better" if s["gap_to_baseline"] < 0 else "worse" if s["gap_to_baseline"] > 0 else "equal"
    table.add_row("OPRO - baseline", f"{s['gap_to_baseline']:,.3f} (OPRO is {better})")
    c = s["counts"]
    table.add_row(
        "evaluations",
        f"{s['evaluations']} ({c['new']} new from {c['proposed']} samples, {c['duplicates']} duplicates, "
        f"{c['unparsed']} unparsed, {c['failed']} failed) in {s['steps_run']} steps, stopped by {s['stopped_by']}",
    )
    u = s["usage"]
    table.add_row("LM", f"{u['calls']} calls ({u['cache_hits']} cached), {u['prompt_tokens']:,} prompt + "
                        f"{u['completion_tokens']:,} completion tokens paid")  # fmt: skip
    table.add_row("wall time", f"{s['wall_s']:.1f} s")
    table.add_row("plot", str(png))
    console.print(table)


def _fmt(solution) -> str:
    return "(" + ", ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in solution) + ")"
