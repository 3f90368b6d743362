"""What machine a benchmark ran on, for the tables in docs/benchmarks.md."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def run_meta() -> dict[str, Any]:
    """What every results row says of where and when it was measured: command, date, commit, machine.

    The commit is read when the row is written, at the end of a run: a benchmark that took long may
    have seen commits land during it (the docs say so where it matters)."""
    root = Path(__file__).resolve().parent.parent
    git = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=root)
    return {
        "command": " ".join(["python", *sys.argv]),
        "date_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "git": git.stdout.strip(),
        "machine": {"nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version()},
    }
