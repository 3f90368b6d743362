"""`prompthone report|export|show|compare RUN`: look at a run, and take its prompts elsewhere.

RUN is a run folder, a run name (or a unique prefix of one) under `--runs-dir` (default
`./prompthone-runs`), or a database URL. Everything shown comes from `prompthone.report.RunData`, the
same values the HTML report shows. Text that came from models, data or users is printed as plain text
(`rich.text.Text`), never as console markup, so a prompt holding `[bold]` or `[/]` prints as written.
"""

from __future__ import annotations

import math
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from prompthone.report.diff import diff_pieces
from prompthone.report.run_data import RUNS_DIR, RunData, RunDataError, Score, load_run

RunArg = Annotated[str, typer.Argument(help="Run folder, run name under --runs-dir (or a unique prefix), or DB URL.")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Folder that holds run folders.")]
DataRoot = Annotated[
    str | None, typer.Option("--data-root", help="Data folder to rebuild the program from (else the run's own).")
]


class ExportFormat(StrEnum):
    json = "json"
    yaml = "yaml"
    messages = "messages"


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(Text.assemble(("error: ", "bold red"), message))
    return typer.Exit(1)


def _load(run: str, runs_dir: Path, data_root: str | None) -> RunData:
    try:
        return load_run(run, runs_dir=runs_dir, data_root=data_root)
    except RunDataError as exc:
        raise _fail(str(exc)) from None


def register(app: typer.Typer) -> None:
    """Add `report`, `export`, `show` and `compare` to `app`."""

    @app.command("report")
    def report_command(
        run: RunArg,
        out: Annotated[Path | None, typer.Option("--out", "-o", help="HTML file (default RUN/report.html).")] = None,
        runs_dir: RunsDir = RUNS_DIR,
        data_root: DataRoot = None,
    ) -> None:
        """Write one self-contained HTML page about a run: progress, spend, prompts and their diffs, scores."""
        from prompthone.report.html import write_report

        try:
            path = write_report(run, out=out, runs_dir=runs_dir, data_root=data_root)
        except RunDataError as exc:
            raise _fail(str(exc)) from None
        Console().print(Text.assemble("report: ", (str(path), "bold")))

    @app.command("export")
    def export_command(
        run: RunArg,
        fmt: Annotated[
            ExportFormat,
            typer.Option("--format", "-f", help="json/yaml: the program for prompthone; messages: plain chat prompts."),
        ] = ExportFormat.json,
        out: Annotated[
            Path | None, typer.Option("--out", "-o", help="File to write (default: in the run folder).")
        ] = None,
        runs_dir: RunsDir = RUNS_DIR,
        data_root: DataRoot = None,
    ) -> None:
        """Export a run's best program: JSON or YAML (loadable with `load_exported`) or plain chat messages."""
        from prompthone.runs.export import ExportError, export_run

        try:
            paths = export_run(run, fmt.value, out, runs_dir=runs_dir, data_root=data_root)
        except (RunDataError, ExportError) as exc:
            raise _fail(str(exc)) from None
        console = Console()
        for p in paths:
            console.print(Text.assemble("wrote ", (str(p), "bold")))

    @app.command("show")
    def show_command(run: RunArg, runs_dir: RunsDir = RUNS_DIR, data_root: DataRoot = None) -> None:
        """A readable summary of a run: config, scores, usage by role, and the best prompts."""
        show_run(_load(run, runs_dir, data_root), Console(highlight=False))

    @app.command("compare")
    def compare_command(run_a: RunArg, run_b: RunArg, runs_dir: RunsDir = RUNS_DIR, data_root: DataRoot = None) -> None:
        """Two runs side by side: scores with CIs, calls and tokens, wall time, and per-module prompt diffs."""
        a, b = _load(run_a, runs_dir, data_root), _load(run_b, runs_dir, data_root)
        compare_runs(a, b, Console(highlight=False))


# -- show ------------------------------------------------------------------------------------------------
def _score(s: Score | None) -> str:
    return s.fmt() if s is not None else "–"


def _num(v: float | None, digits: int = 3) -> str:
    return "–" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _duration(seconds: float) -> str:
    from prompthone.report.html import fmt_duration

    return fmt_duration(seconds)


def diff_text(old: str, new: str) -> Text:
    """A word diff for the terminal in git's word-diff style, `[-deleted-]{+inserted+}`, coloured when the
    terminal has colours: the brackets keep it readable when piped to a file or a pager without them."""
    out = Text()
    for op, piece in diff_pieces(old, new):
        if op == "same":
            out.append(piece)
        elif op == "del":
            out.append(f"[-{piece}-]", style="red strike")
        else:
            out.append(f"{{+{piece}+}}", style="bold green")
    return out


def show_run(data: RunData, console: Console) -> None:
    """Print `data` as panels and tables."""
    head = Text.assemble(
        (data.id, "bold"),
        "  ",
        (data.status, {"completed": "green", "failed": "red"}.get(data.status, "yellow")),
        f"  ·  {data.optimizer} on {data.task}  ·  stopped by {data.stopped_by}  ·  wall {_duration(data.wall_s)}",
    )
    console.print(head)
    if data.error:
        console.print(Text(f"failed: {data.error}", style="red"))
    for note in (data.program_note, data.start_note, data.best_note):
        if note:
            console.print(Text(f"note: {note}", style="yellow"))

    cfg = Table(title="Config", show_header=False, title_justify="left")
    cfg.add_column(style="dim")
    cfg.add_column()
    c = data.config
    rows = [
        ("task", data.task),
        ("optimizer", data.optimizer),
        ("settings", ", ".join(f"{k}={v}" for k, v in (c.get("settings") or {}).items()) or "(defaults)"),
        ("task model", data.task_model),
        ("proposer model", data.proposer_model),
        ("splits", f"{c.get('n_train')} train / {c.get('n_val')} val / {c.get('n_test')} test, seed {c.get('seed')}"),
    ]
    budget = {k: v for k, v in (c.get("budget") or {}).items() if v not in (None, {}, [])}
    if budget:
        rows.append(("budget", ", ".join(f"{k}={v}" for k, v in budget.items())))
    for k, v in rows:
        cfg.add_row(k, Text(str(v)))
    console.print(cfg)

    scores = Table(title="Scores", title_justify="left")
    for col in ("", "test (95% CI)", "validation"):
        scores.add_column(col, justify="right" if col else "left")
    scores.add_row("start", _score(data.start_test), _num(data.start_val))
    scores.add_row("best", _score(data.final_test), _num(data.best_val))
    console.print(scores)
    n_full = len(data.full_trials)
    console.print(
        f"{len(data.trials)} trials: {n_full} on the full validation set, {len(data.trials) - n_full} on minibatches"
    )

    console.print(usage_table(data))
    console.print(prompts_panel(data))


def usage_table(data: RunData) -> Table:
    t = Table(title="Usage by role", title_justify="left")
    for col in ("role", "model", "calls", "paid", "prompt tok", "compl. tok", "cached tok", "cost"):
        t.add_column(col, justify="left" if col in ("role", "model") else "right", overflow="fold")
    for u in sorted(data.usage, key=lambda u: (u["role"], u["model"])):
        t.add_row(
            Text(u["role"]),
            Text(u["model"]),
            f"{u['calls']:,}",
            f"{u['paid_calls']:,}",
            f"{u['prompt_tokens']:,}",
            f"{u['completion_tokens']:,}",
            f"{u['cached_tokens']:,}",
            f"${u['cost_usd']:.4f}",
        )
    tot = data.totals()
    t.add_row(
        "all",
        "",
        *(f"{int(tot[k]):,}" for k in ("calls", "paid_calls", "prompt_tokens", "completion_tokens", "cached_tokens")),
        f"${tot['cost_usd']:.4f}",
        style="bold",
    )
    return t


def prompts_panel(data: RunData) -> Group:
    parts: list = []
    if data.best is None:
        return Group(Text("no candidate to show"))
    for name, p in data.best.items():
        body = Text()
        body.append("instruction\n", style="dim")
        body.append(p.instruction + "\n")
        before = data.start[name] if data.start is not None and name in data.start else None
        if before is not None and before.instruction != p.instruction:
            body.append("\nchanged from the start\n", style="dim")
            body.append_text(diff_text(before.instruction, p.instruction))
            body.append("\n")
        elif before is not None:
            body.append("(unchanged from the start)\n", style="dim")
        if p.position != "system":
            body.append(f"\nplaced at: {p.position}\n", style="dim")
        body.append(f"prompt format: {p.format}\n", style="dim")
        body.append(f"\n{len(p.demos)} demo(s)\n", style="dim")
        module = data.program.named_modules().get(name) if data.program is not None else None
        order = (*module.signature.input_names, *module.signature.output_names) if module is not None else ()
        for i, d in enumerate(p.demos, 1):
            keys = [k for k in order if k in d] + [k for k in d if k not in order]
            body.append(f"  {i}. ", style="dim")
            body.append(" | ".join(f"{k}: {_short(d[k])}" for k in keys) + "\n")
        parts.append(Panel(body, title=Text(f"module {name}", style="bold"), title_align="left"))
    title = f"Best prompts (candidate {data.best.hash[:12]})"
    return Group(Text(title, style="bold italic"), *parts)


def _short(text: str, n: int = 80) -> str:
    one = " ".join(text.split())
    return one if len(one) <= n else one[: n - 1] + "…"


# -- compare ---------------------------------------------------------------------------------------------
def _delta(a: float | None, b: float | None, digits: int = 3, signed_int: bool = False) -> str:
    if a is None or b is None or any(isinstance(v, float) and math.isnan(v) for v in (a, b)):
        return ""
    return f"{int(b - a):+,}" if signed_int else f"{b - a:+.{digits}f}"


def compare_runs(a: RunData, b: RunData, console: Console) -> None:
    """Print two runs side by side (B − A in the last column) and their per-module prompt diffs (A → B)."""
    if a.task != b.task:
        console.print(Text(f"note: the runs are of different tasks ({a.task} vs {b.task})", style="yellow"))
    t = Table(title="A vs B", title_justify="left")
    t.add_column("")
    t.add_column(Text(f"A: {a.id}"), justify="right", overflow="fold")
    t.add_column(Text(f"B: {b.id}"), justify="right", overflow="fold")
    t.add_column("B − A", justify="right")

    def row(label: str, va: str, vb: str, delta: str = "") -> None:
        t.add_row(label, Text(va), Text(vb), delta)

    row("status", a.status, b.status)
    row("task", a.task, b.task)
    row("optimizer", a.optimizer, b.optimizer)
    row("task model", a.task_model, b.task_model)
    row("stopped by", a.stopped_by, b.stopped_by)
    st_a, st_b, ft_a, ft_b = a.start_test, b.start_test, a.final_test, b.final_test
    row("start test", _score(st_a), _score(st_b), _delta(st_a and st_a.mean, st_b and st_b.mean))
    row("final test", _score(ft_a), _score(ft_b), _delta(ft_a and ft_a.mean, ft_b and ft_b.mean))
    row("best validation", _num(a.best_val), _num(b.best_val), _delta(a.best_val, b.best_val))
    row("trials", str(len(a.trials)), str(len(b.trials)), _delta(len(a.trials), len(b.trials), signed_int=True))
    ta, tb = a.totals(), b.totals()
    for key, label in (
        ("paid_calls", "paid LM calls"),
        ("prompt_tokens", "prompt tokens"),
        ("completion_tokens", "completion tokens"),
        ("cached_tokens", "cached tokens"),
    ):
        row(label, f"{int(ta[key]):,}", f"{int(tb[key]):,}", _delta(ta[key], tb[key], signed_int=True))
    row("cost", f"${ta['cost_usd']:.4f}", f"${tb['cost_usd']:.4f}", _delta(ta["cost_usd"], tb["cost_usd"], 4))
    row("wall time", _duration(a.wall_s), _duration(b.wall_s), f"{b.wall_s - a.wall_s:+.1f} s")
    console.print(t)

    if a.best is None or b.best is None:
        console.print(Text("one of the runs has no candidate, so there are no prompts to compare", style="yellow"))
        return
    console.print(Text("Best prompts, A → B", style="bold italic"))
    for name in dict.fromkeys([*a.best, *b.best]):
        if name not in a.best or name not in b.best:
            only = "A" if name in a.best else "B"
            console.print(Panel(Text(f"only in {only}"), title=Text(f"module {name}"), title_align="left"))
            continue
        pa, pb = a.best[name], b.best[name]
        body = Text()
        if pa.instruction == pb.instruction:
            body.append("same instruction:\n", style="dim")
            body.append(pb.instruction + "\n")
        else:
            body.append("instruction (A → B):\n", style="dim")
            body.append_text(diff_text(pa.instruction, pb.instruction))
            body.append("\n")
        if pa.position != pb.position:
            body.append(f"position: {pa.position} → {pb.position}\n", style="dim")
        if pa.format != pb.format:
            body.append(f"prompt format: {pa.format} → {pb.format}\n", style="dim")
        same_demos = pa.demos == pb.demos
        body.append(
            f"demos: A {len(pa.demos)}, B {len(pb.demos)}" + (" (the same)" if same_demos else " (they differ)"),
            style="dim",
        )
        console.print(Panel(body, title=Text(f"module {name}", style="bold"), title_align="left"))
