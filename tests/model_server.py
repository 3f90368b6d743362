"""Start a real `llama_cpp.server` on 127.0.0.1 for tests and benchmarks, and stop it afterwards."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def llama_server(
    model_path: Path,
    *,
    alias: str = "test-model",
    n_ctx: int = 2048,
    timeout_s: float = 180,
    threads: int | None = None,
    port: int | None = None,
    prompt_cache_bytes: int = 0,
    extra_args: tuple[str, ...] = (),
):
    """Yield the base URL of a llama.cpp OpenAI-compatible server serving `model_path` (`threads`: llama.cpp
    threads, default all usable cores; benchmarks on a shared machine pass 1). `port` (default: a free one)
    fixes the URL, which is part of every cached answer's key: a benchmark that replays its caches in a
    later session serves on the same port. `prompt_cache_bytes` > 0 turns on a RAM cache of evaluated prompts
    (llama-cpp-python's `--cache`, started through `llama_server_main.py`, whose entries hold llama.cpp states
    only): a server alternating between a few long prompt prefixes (the modules of a multi-stage program, each
    with its demos) then reloads a prefix instead of evaluating it again.
    `extra_args` go to `llama_cpp.server` as they are."""
    if port is None:
        port = free_port()
    else:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server binds: TIME_WAIT is no conflict
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                raise RuntimeError(f"port {port} on 127.0.0.1 is in use; pick another one") from None
    threads = str(threads or len(os.sched_getaffinity(0)))
    # with a prompt cache, through a launcher whose cache holds only llama.cpp states (see there)
    entry = (
        [str(Path(__file__).with_name("llama_server_main.py"))]
        if prompt_cache_bytes > 0
        else ["-m", "llama_cpp.server"]
    )
    cmd = [
        sys.executable, *entry,
        "--model", str(model_path), "--model_alias", alias,
        "--host", "127.0.0.1", "--port", str(port),
        "--n_ctx", str(n_ctx), "--n_threads", threads, "--n_threads_batch", threads,
    ]  # fmt: skip
    if prompt_cache_bytes > 0:
        cmd += ["--cache", "true", "--cache_type", "ram", "--cache_size", str(prompt_cache_bytes)]
    cmd += extra_args
    log = open(Path(os.environ.get("TMPDIR", "/tmp")) / f"llama_server_{port}.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    base_url = f"http://127.0.0.1:{port}/v1"
    try:
        with _sigterm_as_exit():
            _wait_ready(base_url, proc, timeout_s, log.name)
            yield base_url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


@contextlib.contextmanager
def _sigterm_as_exit() -> Iterator[None]:
    """While the server runs, SIGTERM to this process exits it through `finally` blocks (so the server is
    stopped with it) instead of Python's default of dying at once and leaving the server behind: a long
    benchmark is stopped with `kill`, and an orphaned server would keep the port its cached answers name."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _exit(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    before = signal.signal(signal.SIGTERM, _exit)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before if before is not None else signal.SIG_DFL)


def _wait_ready(base_url: str, proc: subprocess.Popen, timeout_s: float, log_name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama_cpp.server exited with {proc.returncode}; see {log_name}")
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"llama_cpp.server did not answer within {timeout_s}s; see {log_name}")
