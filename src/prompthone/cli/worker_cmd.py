"""`prompthone worker RUN`, and the local workers `prompthone optimize --workers N` starts beside its run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy.engine import make_url

from prompthone.cli.checks import lm_error_message, run_error_message

WORKERS_HELP = (
    "Start N local `prompthone worker` processes on the run once it exists (needs --store on a database server, "
    "or --resume of such a run); more can join from other machines with `prompthone worker RUN`."
)


def register(app: typer.Typer, console: Console, fail: Any) -> None:
    """Add `worker` to `app`."""

    @app.command("worker")
    def worker_command(
        run: Annotated[str, typer.Argument(help="A run folder whose store is on a database server, or its store URL.")],
        out: Annotated[
            Path, typer.Option(help="Where a run folder is made if this worker ends up leading a run given by URL.")
        ] = Path("prompthone-runs"),
        data_root: Annotated[
            str | None, typer.Option(help="The run's data folder on this machine (default: the run's own).")
        ] = None,
    ) -> None:
        """Join a run on a database server: compute its pieces of work until it ends (and lead it, if its
        leader is gone)."""
        from prompthone.evaluate import EvaluationError
        from prompthone.lm import LMError, run_sync
        from prompthone.runs.worker import Worker, WorkerError
        from prompthone.sqlurl import StoreUnavailableError
        from prompthone.store.broken import BrokenRunError
        from prompthone.store.lock import RunLockedError

        try:
            worker = Worker(run, out_dir=out, console=console, data_root=data_root)
            report = run_sync(worker.run())
        except WorkerError as exc:
            raise fail(str(exc), exc.code) from None
        except LMError as exc:
            raise fail(lm_error_message(exc)) from None
        except (StoreUnavailableError, BrokenRunError, RunLockedError) as exc:
            raise fail(str(exc)) from None
        except (EvaluationError, KeyError, ValueError, NotImplementedError) as exc:
            raise fail(run_error_message(exc)) from None
        if report.code:
            raise typer.Exit(report.code)


class LocalWorkers:
    """`--workers N`: N `prompthone worker RUN_FOLDER` processes started once the run exists (each writes
    to `workers/worker-K.log` in the run folder), waited for when the run ends."""

    def __init__(self, n: int, store_url: str | None = None) -> None:
        self.n = n
        #: the run's store URL as given: a password in it reaches the workers through their environment
        #: (PGPASSWORD), since the run folder they are given (`store.json`) never holds it
        self.store_url = store_url
        self.procs: list[subprocess.Popen] = []
        self.folder: Path | None = None

    def start(self, run_dir: Path) -> None:
        self.folder = run_dir / "workers"
        self.folder.mkdir(parents=True, exist_ok=True)
        for k in range(1, self.n + 1):
            log = (self.folder / f"worker-{k}.log").open("w")
            cmd = [sys.executable, "-m", "prompthone", "worker", str(run_dir)]
            self.procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                               env=self._env()))  # fmt: skip
            log.close()

    def _env(self) -> dict[str, str]:
        env = dict(os.environ)
        password = make_url(self.store_url).password if self.store_url and "://" in self.store_url else None
        if password and "PGPASSWORD" not in env:
            env["PGPASSWORD"] = str(password)
        return env

    def wait(self, timeout_s: float = 30.0) -> list[int | None]:
        """Wait for the workers to leave (they do once the run is completed or failed); stop stragglers."""
        deadline = time.monotonic() + timeout_s
        for p in self.procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.terminate()
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        return [p.returncode for p in self.procs]
