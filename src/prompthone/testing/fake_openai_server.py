"""A small, fast, local OpenAI-compatible server for tests and benchmarks.

Why it exists: the LM layer's retry, timeout and error-mapping paths can only be trusted if they are
exercised through the real `openai` SDK over real HTTP, and the client-overhead benchmarks need an
endpoint whose own cost is far below the client's. So this server is:

* stdlib only (asyncio `Protocol`, HTTP/1.1 keep-alive, no thread per request) and cheap per request;
* deterministic: the default answer is a function of the last user message, with plausible usage;
* scriptable: `inject(Fault.rate_limit(0.3), times=1)` makes the next request fail in a chosen way;
* observable: request counts, the largest number of requests in flight, recent request bodies and
  headers, with arrival times, so tests can check what the client actually sent and when.

In-process use (the server runs on its own event loop in a background thread)::

    server = FakeOpenAIServer(latency_ms=5)
    with server as base_url:          # "http://127.0.0.1:PORT/v1"
        ...
        server.last_request.body["max_tokens"]

As a separate process (benchmarks, so the server does not share the client's GIL)::

    python -m prompthone.testing.fake_openai_server --port 0 --latency-ms 50 [--task sst2]
    # prints "READY http://127.0.0.1:PORT/v1" and serves until killed

`--task NAME` answers like a model of some skill on that built-in task (`TaskResponder`) instead of
echoing. `GET /_fake/stats` (outside `/v1`, not counted) returns the request counters as JSON, so a
benchmark can see how many requests the process received.

It binds to loopback only, and supports what the `openai` SDK sends: `Content-Length` bodies, no
chunked uploads, and responses in request order on each connection.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import email.utils
import hashlib
import ipaddress
import json
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    411: "Length Required",
    413: "Payload Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
_MAX_HEAD_BYTES = 64 * 1024
_MAX_BODY_BYTES = 32 * 1024 * 1024
_DISCONNECT = b"<disconnect>"  # `respond`'s answer for "close the connection, send nothing"

Responder = Callable[[dict[str, Any]], str]


def _error_body(message: str, type_: str, code: str | None = None, param: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


@dataclass(frozen=True)
class Fault:
    """One scripted way for a request to go wrong; build them with the class methods.

    `body` may contain the placeholder `{api_key}`, replaced by the bearer token the request carried
    (the real OpenAI echoes part of a wrong key in its 401, which is how keys leak into error text).
    """

    kind: str  # "status" (answer with status/body/headers), "hang" (never answer) or "disconnect"
    status: int = 500
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()
    content_type: str = "application/json"

    @classmethod
    def rate_limit(
        cls, retry_after: float | None = 1.0, *, retry_after_ms: float | None = None, http_date: bool = False
    ) -> Fault:
        """429 with `Retry-After` in seconds (or as an HTTP date), and/or `retry-after-ms`."""
        return cls(
            "status",
            429,
            _error_body("Rate limit reached for requests (fake server).", "requests", "rate_limit_exceeded"),
            _retry_headers(retry_after, retry_after_ms, http_date),
        )

    @classmethod
    def unavailable(cls, retry_after: float | None = None, *, http_date: bool = False) -> Fault:
        """503, optionally with `Retry-After`."""
        return cls(
            "status",
            503,
            _error_body("The server is overloaded (fake server).", "server_error"),
            _retry_headers(retry_after, None, http_date),
        )

    @classmethod
    def server_error(cls, status: int = 500) -> Fault:
        """A 5xx (or 408/409) with an OpenAI-style error body."""
        return cls("status", status, _error_body(f"Internal error {status} (fake server).", "server_error"))

    @classmethod
    def hang(cls) -> Fault:
        """Read the request and never answer; the connection stays open until the client gives up."""
        return cls("hang")

    @classmethod
    def disconnect(cls) -> Fault:
        """Read the request, then close the connection without answering (a crashed or restarted server)."""
        return cls("disconnect")

    @classmethod
    def malformed(cls, body: bytes = b'{"id": "chatcmpl-broken", "choices": [', *, status: int = 200) -> Fault:
        """A 200 whose body is not a chat completion (truncated JSON by default)."""
        return cls("status", status, body)

    @classmethod
    def unauthorized(cls) -> Fault:
        """401 whose message echoes the key the client sent, as the real API partly does."""
        return cls(
            "status",
            401,
            _error_body("Incorrect API key provided: {api_key}.", "invalid_request_error", "invalid_api_key"),
        )

    @classmethod
    def context_length(cls) -> Fault:
        """400 `context_length_exceeded`, worded like the real API."""
        return cls(
            "status",
            400,
            _error_body(
                "This model's maximum context length is 2048 tokens. However, you requested 4096 tokens "
                "(3584 in the messages, 512 in the completion). Please reduce the length of the messages "
                "or completion.",
                "invalid_request_error",
                "context_length_exceeded",
                "messages",
            ),
        )

    @classmethod
    def status_code(
        cls, status: int, message: str = "error (fake server)", headers: dict[str, str] | None = None
    ) -> Fault:
        """Any other status with an OpenAI-style error body."""
        return cls("status", status, _error_body(message, "invalid_request_error"), tuple((headers or {}).items()))


def _retry_headers(
    retry_after: float | None, retry_after_ms: float | None, http_date: bool
) -> tuple[tuple[str, str], ...]:
    out: list[tuple[str, str]] = []
    if retry_after is not None:
        if http_date:
            value = email.utils.formatdate(time.time() + retry_after, usegmt=True)
        elif float(retry_after).is_integer():
            value = str(int(retry_after))
        else:
            value = repr(float(retry_after))
        out.append(("Retry-After", value))
    if retry_after_ms is not None:
        out.append(("retry-after-ms", str(retry_after_ms)))
    return tuple(out)


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it. `received_at` is `time.monotonic()` in the server's process."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    received_at: float

    @property
    def api_key(self) -> str | None:
        auth = self.headers.get("authorization", "")
        return auth[7:] if auth.lower().startswith("bearer ") else None


def _last_user_message(body: dict[str, Any]) -> str:
    for m in reversed(body.get("messages") or []):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):  # content parts
                return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def default_answer(body: dict[str, Any]) -> str:
    """The default reply: "echo: " and the last user message with whitespace collapsed, cut at 200 chars."""
    return "echo: " + " ".join(_last_user_message(body).split())[:200]


def _count_tokens(text: str) -> int:
    """A plausible, deterministic token count: about one token per word or four characters."""
    return max(len(text.split()), (len(text) + 3) // 4)


def _completion(body: dict[str, Any], text: str, seq: int) -> bytes:
    """Apply stop sequences, the token limit and JSON mode to `text`, and wrap it as a chat completion."""
    finish = "stop"
    stops = body.get("stop")
    if isinstance(stops, str):
        stops = [stops]
    for s in stops or []:
        if s and s in text:
            text = text[: text.index(s)]
    fmt = body.get("response_format")
    if isinstance(fmt, dict) and fmt.get("type") in ("json_object", "json_schema"):
        text = json.dumps({"answer": text})
    limit = body.get("max_completion_tokens") or body.get("max_tokens")
    if isinstance(limit, int) and limit > 0 and _count_tokens(text) > limit:
        words = text.split(" ")[:limit]  # each word costs at least one token
        while len(words) > 1 and _count_tokens(" ".join(words)) > limit:
            words.pop()
        text = " ".join(words)
        finish = "length"
    prompt_tokens = sum(
        _count_tokens(m.get("content") or "") + 4 for m in body.get("messages") or [] if isinstance(m, dict)
    )
    completion_tokens = _count_tokens(text)
    return json.dumps(
        {
            "id": f"chatcmpl-fake-{seq}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": str(body.get("model", "fake")),
            "system_fingerprint": "fp_fake",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        },
        separators=(",", ":"),
    ).encode()


def _response_bytes(
    status: int,
    body: bytes,
    *,
    content_type: str = "application/json",
    headers: tuple[tuple[str, str], ...] = (),
    close: bool = False,
) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        f"Content-Type: {content_type}",
        f"Content-Length: {len(body)}",
        "Connection: close" if close else "Connection: keep-alive",
    ]
    lines.extend(f"{k}: {v}" for k, v in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class _Connection(asyncio.Protocol):
    """One client connection: parses requests out of the byte stream and hands them to the server."""

    def __init__(self, server: _Core) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.pending = 0  # requests read but not yet answered (counted in the server's in-flight)
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.server.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.connections.discard(self)
        self.server.in_flight -= self.pending
        self.pending = 0

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.closed:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buf) > _MAX_HEAD_BYTES:
                    self.reject(431, "request headers too large")
                return
            try:
                head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
                method, target, _version = head[0].split(" ", 2)
                headers: dict[str, str] = {}
                for line in head[1:]:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            except ValueError:
                self.reject(400, "malformed request line or header")
                return
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self.reject(411, "chunked bodies are not supported; send Content-Length")
                return
            try:
                length = int(headers.get("content-length", "0"))
            except ValueError:
                length = -1
            if not 0 <= length <= _MAX_BODY_BYTES:
                self.reject(413, "missing, invalid or too large Content-Length")
                return
            total = end + 4 + length
            if len(self.buf) < total:
                return
            body = bytes(self.buf[end + 4 : total])
            del self.buf[:total]
            self.server.handle(self, method, target, headers, body)

    def send_now(self, payload: bytes, close: bool = False) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(payload)
            if close:
                self.transport.close()

    def reject(self, status: int, message: str) -> None:
        """Answer a request that could not be parsed, and drop the connection (its framing is lost)."""
        self.send_now(_response_bytes(status, _error_body(message, "invalid_request_error"), close=True), True)
        self.buf.clear()

    def answer(self, payload: bytes, close: bool) -> None:
        """Send one response to a counted request (possibly later, after the fixed latency)."""
        if self.closed:
            return  # connection_lost already took this request out of the in-flight count
        self.pending -= 1
        self.server.in_flight -= 1
        self.send_now(payload, close)


class _Core:
    """The server state shared by the in-process and subprocess front ends; lives on one event loop."""

    def __init__(self, latency_ms: float, responder: Responder | None, record_limit: int) -> None:
        self.latency_s = max(0.0, float(latency_ms) / 1000.0)
        self.responder = responder or default_answer
        self.connections: set[_Connection] = set()
        self.lock = threading.Lock()  # guards the fault script and the request log (read from other threads)
        self.faults: collections.deque[list[Any]] = collections.deque()  # [Fault, remaining or None]
        self.recorded: collections.deque[RecordedRequest] = collections.deque(maxlen=record_limit)
        self.requests_received = 0
        self.in_flight = 0
        self.max_in_flight = 0
        #: digests of the request bodies seen: a client that never sends the same request twice (a run
        #: whose answers are all cached and shared) has as many as it made requests
        self.bodies: set[bytes] = set()

    def next_fault(self) -> Fault | None:
        with self.lock:
            if not self.faults:
                return None
            entry = self.faults[0]
            if entry[1] is not None:
                entry[1] -= 1
                if entry[1] <= 0:
                    self.faults.popleft()
            return entry[0]

    def handle(self, conn: _Connection, method: str, target: str, headers: dict[str, str], body: bytes) -> None:
        if target == "/_fake/stats":  # observability, not an API call: not counted or recorded
            stats = {"requests_received": self.requests_received, "max_in_flight": self.max_in_flight,
                     "distinct_requests": len(self.bodies), "in_flight": self.in_flight}  # fmt: skip
            conn.send_now(_response_bytes(200, json.dumps(stats).encode()))
            return
        now = time.monotonic()
        self.requests_received += 1
        self.bodies.add(hashlib.sha256(body).digest())
        seq = self.requests_received
        path = target.split("?", 1)[0]
        try:
            data: Any = json.loads(body) if body else None
        except ValueError:
            data = body.decode("utf-8", "replace")
        with self.lock:
            self.recorded.append(RecordedRequest(method, path, headers, data, now))
        conn.pending += 1
        self.in_flight += 1
        if self.in_flight > self.max_in_flight:
            self.max_in_flight = self.in_flight

        payload = self.respond(method, path, headers, data, seq)
        if payload is None:
            return  # hang: answered never; connection_lost settles the in-flight count
        if payload is _DISCONNECT:
            if conn.transport is not None:
                conn.transport.close()  # connection_lost settles the in-flight count
            return
        close = headers.get("connection", "").lower() == "close"
        if self.latency_s > 0:
            asyncio.get_running_loop().call_later(self.latency_s, conn.answer, payload, close)
        else:
            conn.answer(payload, close)

    def respond(self, method: str, path: str, headers: dict[str, str], data: Any, seq: int) -> bytes | None:
        close = headers.get("connection", "").lower() == "close"
        if path.rstrip("/") in ("/v1/models", "/models") and method == "GET":
            body = json.dumps({"object": "list", "data": [{"id": "fake", "object": "model", "owned_by": "fake"}]})
            return _response_bytes(200, body.encode(), close=close)
        if path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            msg = f"Unknown path {path}: this fake server only serves POST /v1/chat/completions"
            return _response_bytes(404, _error_body(msg, "invalid_request_error"), close=close)
        if method != "POST":
            return _response_bytes(405, _error_body("use POST", "invalid_request_error"), close=close)
        fault = self.next_fault()
        if fault is not None:
            if fault.kind == "hang":
                return None
            if fault.kind == "disconnect":
                return _DISCONNECT
            body_bytes = fault.body
            if b"{api_key}" in body_bytes:
                auth = headers.get("authorization", "")
                key = auth[7:] if auth.lower().startswith("bearer ") else ""
                body_bytes = body_bytes.replace(b"{api_key}", json.dumps(key)[1:-1].encode())
            return _response_bytes(
                fault.status, body_bytes, content_type=fault.content_type, headers=fault.headers, close=close
            )
        if not isinstance(data, dict) or not isinstance(data.get("messages"), list):
            msg = "request body must be a JSON object with a 'messages' list"
            return _response_bytes(400, _error_body(msg, "invalid_request_error", param="messages"), close=close)
        try:
            text = self.responder(data)
        except Exception as exc:  # a broken test responder should show up as a 500, not kill the server
            return _response_bytes(500, _error_body(f"responder failed: {exc!r}", "server_error"), close=close)
        return _response_bytes(200, _completion(data, text, seq), close=close)

    def close_connections(self) -> None:
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.close()


def _check_loopback(host: str) -> None:
    try:
        ok = ipaddress.ip_address(host).is_loopback
    except ValueError:
        ok = host == "localhost"
    if not ok:
        raise ValueError(f"the fake server only binds to loopback (127.0.0.1, ::1 or localhost), got {host!r}")


class FakeOpenAIServer:
    """An OpenAI-compatible `/v1/chat/completions` server on 127.0.0.1, running in a background thread.

    `with FakeOpenAIServer(...) as base_url:` starts it and gives the URL to pass as `base_url`; keep
    the object itself to script faults and read what it saw.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        responder: Responder | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        record_limit: int = 256,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self.port = port
        self._core = _Core(latency_ms, responder, record_limit)
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.AbstractServer | None = None
        self.base_url = ""

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> str:
        """Start serving; returns the base URL, e.g. `http://127.0.0.1:PORT/v1`."""
        if self._thread is not None:
            return self.base_url
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                self._server = loop.run_until_complete(
                    loop.create_server(lambda: _Connection(self._core), self.host, self.port, backlog=1024)
                )
                self.port = self._server.sockets[0].getsockname()[1]
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                self._server.close()
                self._core.close_connections()
                loop.run_until_complete(self._server.wait_closed())
                loop.run_until_complete(asyncio.sleep(0))
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-openai-server", daemon=True)
        self._thread.start()
        ready.wait(timeout=30)
        if failure:
            self._thread = None
            raise RuntimeError(f"fake OpenAI server could not listen on {self.host}:{self.port}: {failure[0]}")
        host = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"http://{host}:{self.port}/v1"
        return self.base_url

    def stop(self) -> None:
        """Stop serving and close every connection (clients waiting on a hung request see it drop)."""
        if self._thread is None or self._loop is None:
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)
        self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scripting -------------------------------------------------------------------------------
    def inject(self, fault: Fault, times: int | None = 1) -> None:
        """Queue `fault` for the next `times` chat requests (None: every request until `clear_faults`).

        Faults queue in order: `inject(Fault.server_error(), 2)` then `inject(Fault.hang(), None)` gives
        two 500s and then hangs forever.
        """
        if times is not None and times < 1:
            raise ValueError(f"times must be >= 1 or None, got {times!r}")
        with self._core.lock:
            self._core.faults.append([fault, times])

    def clear_faults(self) -> None:
        with self._core.lock:
            self._core.faults.clear()

    # -- observations ----------------------------------------------------------------------------
    @property
    def requests_received(self) -> int:
        """Requests read off the wire, all paths, faults included."""
        return self._core.requests_received

    @property
    def in_flight(self) -> int:
        return self._core.in_flight

    @property
    def open_connections(self) -> int:
        """Client connections currently open (keep-alive ones included)."""
        return len(self._core.connections)

    @property
    def max_in_flight(self) -> int:
        """The most requests that were read but not yet answered at any one moment."""
        return self._core.max_in_flight

    @property
    def requests(self) -> list[RecordedRequest]:
        """The most recent requests (up to `record_limit`), oldest first."""
        with self._core.lock:
            return list(self._core.recorded)

    @property
    def last_request(self) -> RecordedRequest:
        with self._core.lock:
            if not self._core.recorded:
                raise LookupError("the fake server has not received any request yet")
            return self._core.recorded[-1]

    def reset_stats(self) -> None:
        """Zero the counters and forget recorded requests (requests in flight stay counted)."""
        with self._core.lock:
            self._core.recorded.clear()
            self._core.requests_received = 0
            self._core.bodies.clear()
            self._core.max_in_flight = self._core.in_flight


class FakeOpenAIServerProcess:
    """The fake server in a child process, for benchmarks: it then does not share the client's GIL.

    `with FakeOpenAIServerProcess(latency_ms=50) as base_url:` starts it, waits for its READY line and
    stops it on exit.
    """

    def __init__(
        self,
        *,
        latency_ms: float = 0.0,
        port: int = 0,
        startup_timeout_s: float = 30.0,
        task: str | None = None,
        data_root: str | None = None,
    ) -> None:
        self.latency_ms = latency_ms
        self.port = port
        self.task = task
        self.data_root = data_root
        self.startup_timeout_s = startup_timeout_s
        self.proc: subprocess.Popen[str] | None = None
        self._stderr: IO[str] | None = None
        self._stderr_tail = ""
        self.base_url = ""

    def start(self) -> str:
        """Start the process and wait for its READY line; returns the base URL it serves."""
        cmd = [
            sys.executable,
            "-m",
            "prompthone.testing.fake_openai_server",
            "--port",
            str(self.port),
            "--latency-ms",
            str(self.latency_ms),
        ]
        if self.task:
            cmd += ["--task", self.task]
        if self.data_root:
            cmd += ["--data-root", self.data_root]
        # stderr goes to a file, not a pipe: a pipe nobody drains could fill up and stall the server
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True)
        stdout = self.proc.stdout
        assert stdout is not None
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.startup_timeout_s)
        first = line[0].strip() if line else ""
        if not first.startswith("READY "):
            self.stop()
            raise RuntimeError(
                f"the fake OpenAI server process did not start within {self.startup_timeout_s:g}s "
                f"(first line {first!r}); its stderr:\n{self._stderr_tail}"
            )
        self.base_url = first.split(" ", 1)[1]
        return self.base_url

    def stop(self) -> None:
        """Terminate the process (SIGTERM, then SIGKILL after 10 s) and release its pipes."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr_tail = self._read_stderr()

    def stats(self) -> dict[str, int]:
        """The server's counters (`requests_received`, `max_in_flight`), read over HTTP."""
        import urllib.request

        root = self.base_url.rsplit("/v1", 1)[0]
        with urllib.request.urlopen(f"{root}/_fake/stats", timeout=10) as r:
            return json.loads(r.read())

    def _read_stderr(self) -> str:
        if self._stderr is None or self._stderr.closed:
            return self._stderr_tail
        self._stderr.seek(0)
        text = self._stderr.read()[-2000:]
        self._stderr.close()
        return text

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _serve(host: str, port: int, latency_ms: float, responder: Responder | None = None) -> None:
    core = _Core(latency_ms, responder, record_limit=16)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _Connection(core), host, port, backlog=1024)
    bound = server.sockets[0].getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    print(f"READY http://{shown}:{bound}/v1", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()
    core.close_connections()
    await server.wait_closed()


def main(argv: list[str] | None = None) -> None:
    """Command line: serve until killed, after printing `READY <base_url>` on stdout."""
    p = argparse.ArgumentParser(
        prog="python -m prompthone.testing.fake_openai_server",
        description="A local OpenAI-compatible chat completions server that echoes the last user message.",
    )
    p.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: pick a free one)")
    p.add_argument("--latency-ms", type=float, default=0.0, help="fixed delay before each answer")
    p.add_argument("--task", default=None, help="answer like a model of some skill on this built-in task")
    p.add_argument("--data-root", default=None, help="data folder for --task (default: found automatically)")
    args = p.parse_args(argv)
    try:
        _check_loopback(args.host)
    except ValueError as exc:
        p.error(str(exc))
    responder: Responder | None = None
    if args.task:
        from prompthone.tasks import get_task
        from prompthone.testing.task_responder import TaskResponder

        responder = TaskResponder(get_task(args.task).load(args.data_root))
    asyncio.run(_serve(args.host, args.port, args.latency_ms, responder))


if __name__ == "__main__":
    main()
