"""The test and benchmark server helper: a process stopped with SIGTERM stops its model server too."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model_server import free_port

pytestmark = pytest.mark.model

HOLDER = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {tests!r})
    from model_server import llama_server
    from prompthone.lm.local.assemble import resolve_gguf

    with llama_server(resolve_gguf("qwen2.5-coder-0.5b")[0], port={port}, threads=1) as url:
        print("ready", url, flush=True)
        time.sleep(600)
    """
)


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_sigterm_to_the_holder_stops_its_llama_server(tmp_path: Path) -> None:
    port = free_port()
    script = tmp_path / "hold.py"
    script.write_text(HOLDER.format(tests=str(Path(__file__).parent), port=port))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    holder = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        line = holder.stdout.readline()
        assert line.startswith("ready"), line
        assert _port_open(port)
        holder.send_signal(signal.SIGTERM)
        assert holder.wait(30) == 128 + signal.SIGTERM
    finally:
        if holder.poll() is None:
            holder.kill()
    # the server was terminated and waited for by the holder's `finally`, not left behind on the port
    assert not _port_open(port)
    log = (tmp_path / f"llama_server_{port}.log").read_text()
    assert "Uvicorn running" in log or "Application startup complete" in log, log[-500:]
