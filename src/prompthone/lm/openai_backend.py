"""The backend for OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp's server, ...).

It is a thin translation layer over the official `openai` SDK: a `Request` becomes one
`chat.completions.create` call, and every way that call can fail becomes one of the typed errors in
`prompthone.lm.errors`. The SDK's own retries are off (`max_retries=0`): retries, backoff and the
bound on requests in flight live once, in `LM`, so that every backend behaves the same.

The HTTP transport under the SDK is the SDK's own choice of two: its aiohttp client
(`openai.DefaultAioHttpClient`, the `openai[aiohttp]` extra), which costs about half the CPU per call of
the default httpx client (see docs/benchmarks.md), or the httpx client. `transport="auto"` (the default,
overridable by the environment variable PROMPTHONE_HTTP_TRANSPORT) takes aiohttp when it is installed.
Both go through the same SDK request path, so headers, bodies, status handling and typed errors match.

The API key is read from an environment variable whose *name* is configured. The key itself never
appears in `identity()` (hence never in cache keys), in reprs, or in error messages: servers echo bad
keys back in their 401 text, so error text is scrubbed before it is raised.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import math
import os
import re
import ssl
import sys
import time
import weakref
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, Literal, NoReturn

import httpx2
import openai

from prompthone.lm import settings
from prompthone.lm.backend import Backend, PerLoop
from prompthone.lm.errors import (
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConnectionFailed,
    ContentFilteredError,
    ContextTooLongError,
    LMError,
    LMTimeoutError,
    RateLimitError,
    ServerError,
)
from prompthone.lm.types import FinishReason, Generation, Request

OPENAI_BASE_URL = "https://api.openai.com/v1"
_CHAT_PATH = "/chat/completions"
#: sent when a custom server is used and no key is set: local servers ignore it, but the SDK wants one
PLACEHOLDER_API_KEY = "prompthone-no-key"
#: keys at least this long are masked wherever they occur in error text; shorter ones only as whole tokens
MIN_SUBSTRING_MASK_LEN = 8

MaxTokensParam = Literal["max_tokens", "max_completion_tokens"]
StructuredOutput = Literal["json_schema", "json_object", "none"]
Transport = Literal["auto", "aiohttp", "httpx"]
#: the environment variable that picks the transport when the backend is not given one
TRANSPORT_ENV = "PROMPTHONE_HTTP_TRANSPORT"
_TRANSPORTS = ("auto", "aiohttp", "httpx")

_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "eos": "stop",
    "end_turn": "stop",
    "stop_sequence": "stop",
    "length": "length",
    "max_tokens": "length",
}

# How servers word "prompt + max_tokens do not fit": OpenAI and vLLM ("maximum context length"),
# llama.cpp ("exceed context window"), others ("context length exceeded", "context_length_exceeded").
_CONTEXT_RE = re.compile(
    r"context[\s_-]*length|maximum[\s_-]+context|exceeds?\w*\b.*\bcontext[\s_-]*(window|size)"
    r"|context[\s_-]*(window|size)\b.*\bexceed",
    re.IGNORECASE | re.DOTALL,
)


class _Secret:
    """Holds the API key so that no repr, `vars()` dump or log line can show it by accident."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "_Secret('***')"


@dataclass
class _LoopClient:
    """One SDK client and the loop it is bound to (httpx connections cannot move between loops).

    The loop is held weakly: `PerLoop` forgets a client when its loop is collected, which a strong
    reference from the value back to its key would prevent.
    """

    loop: weakref.ref[asyncio.AbstractEventLoop]
    client: openai.AsyncOpenAI
    closer: AsyncGenerator[None, None]


async def _close_when_loop_shuts_down(client: openai.AsyncOpenAI) -> AsyncGenerator[None, None]:
    """Close `client` when its event loop shuts down.

    asyncio has no "loop is closing" hook, but `asyncio.run` (and so `LM.complete_sync`, which runs a
    fresh loop per call) finalizes every live async generator before closing the loop. Without this,
    each sync call would leave an open keep-alive socket behind, and the SDK's own `__del__` would later
    try to close it on a dead loop and log "Task exception was never retrieved".
    """
    try:
        yield
    finally:
        await client.close()


def _start(gen: AsyncGenerator[None, None]) -> None:
    """Run `gen` to its first `yield` without awaiting, so that the running loop tracks it."""
    step = gen.__anext__()
    try:
        step.send(None)  # type: ignore[attr-defined]
    except StopIteration:
        pass
    else:  # pragma: no cover - the generator yields at once, so send() always finishes the step
        raise RuntimeError("loop-shutdown hook did not yield at once")


@functools.cache
def aiohttp_available() -> bool:
    """True when the SDK's aiohttp client can be built (the `openai[aiohttp]` extra is installed)."""
    try:
        from openai._vendor.httpx_aiohttp import Httpx2AiohttpClient  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_transport(transport: str | None) -> Literal["aiohttp", "httpx"]:
    """The transport to use: the given one, else $PROMPTHONE_HTTP_TRANSPORT, else auto (aiohttp if installed)."""
    chosen = transport if transport is not None else (os.environ.get(TRANSPORT_ENV, "").strip().lower() or "auto")
    where = "transport" if transport is not None else f"the environment variable {TRANSPORT_ENV}"
    if chosen not in _TRANSPORTS:
        raise ConfigError(f"{where} must be one of {', '.join(_TRANSPORTS)}, got {chosen!r}")
    if chosen == "auto":
        return "aiohttp" if aiohttp_available() else "httpx"
    if chosen == "aiohttp" and not aiohttp_available():
        raise ConfigError(
            f"{where} asks for the aiohttp transport, but aiohttp is not installed. Install it with "
            "pip install 'openai[aiohttp]' (it comes with prompthone's dependencies), or use transport 'httpx'."
        )
    return chosen  # type: ignore[return-value]


def _connection_failure_in(exc: BaseException) -> BaseException | None:
    """The aiohttp connection error behind an SDK timeout error, if it was not really a timeout.

    The SDK's vendored aiohttp adapter maps every `aiohttp.ClientConnectionError` without a closer match
    to `httpx2.ConnectTimeout` (a refused connection or a dropped socket included), which the SDK then
    raises as `APITimeoutError`. Those are connection failures, as on the httpx transport; real
    timeouts (aiohttp's are `TimeoutError` subclasses) stay timeouts.
    """
    aiohttp = sys.modules.get("aiohttp")
    if aiohttp is None:
        return None
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, aiohttp.ClientConnectionError) and not isinstance(cur, TimeoutError):
            return cur
        cur = cur.__cause__ or cur.__context__
    return None


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One process-wide TLS context with the system's trusted CAs (honours SSL_CERT_FILE/SSL_CERT_DIR).

    An `SSLContext` is not tied to an event loop, so every per-loop client can share it.
    """
    return ssl.create_default_context()


def parse_retry_after(headers: Any) -> float | None:
    """Seconds to wait, from `retry-after-ms`, or `Retry-After` as seconds or an HTTP date; else None.

    Servers use all three forms; a date in the past means "now" (0), and junk values are ignored
    rather than trusted, so backoff falls back to its own schedule.
    """
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms is not None:
        try:
            value = float(ms) / 1000.0
        except ValueError:
            value = math.nan
        if math.isfinite(value) and value >= 0:
            return value
    raw = headers.get("retry-after")
    if raw is None:
        return None
    raw = raw.strip()
    try:
        value = float(raw)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(raw)
        except (TypeError, ValueError, IndexError):
            return None
        if when is None:
            return None
        return max(0.0, when.timestamp() - time.time())
    return value if math.isfinite(value) and value >= 0 else None


def is_context_length_message(text: str, code: str | None = None) -> bool:
    """True when a 4xx error says the prompt plus max_tokens do not fit the model's context."""
    return code == "context_length_exceeded" or bool(_CONTEXT_RE.search(text or ""))


class OpenAIBackend(Backend):
    """Chat completions from OpenAI or any OpenAI-compatible server, through the official SDK.

    `base_url=None` means the real OpenAI API, which needs a key in the environment variable
    `api_key_env`; a custom `base_url` works without one (local servers need none).
    `max_tokens_param` picks the request field the token limit is sent under: llama.cpp's server
    honours `max_tokens` and ignores `max_completion_tokens`, while OpenAI's reasoning models accept
    only `max_completion_tokens`. `structured_output` picks how a JSON schema is passed on: OpenAI's
    `json_schema` format, the `json_object` format with a `schema` field (llama.cpp, vLLM), or not at all.
    `transport` picks the SDK's HTTP client: "aiohttp", "httpx", or "auto" (aiohttp when installed);
    None reads $PROMPTHONE_HTTP_TRANSPORT (default auto). It changes cost, not answers, so it is not part
    of `identity()` and cached answers are shared across transports. `one_at_a_time` says the server
    answers one request at a time and reuses the KV cache of its last prompt, as `llama_cpp.server` does:
    requests are then sent one at a time, related prompts in a row (`prompthone.lm.slots`); None reads
    $PROMPTHONE_ONE_AT_A_TIME (1 for every server, or a list of base URLs). Like the transport, it changes
    the order of requests, never an answer.
    """

    kind = "openai"

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        max_tokens_param: MaxTokensParam = "max_tokens",
        structured_output: StructuredOutput = "json_schema",
        transport: Transport | None = None,
        one_at_a_time: bool | None = None,
    ) -> None:
        super().__init__(model)
        if not model or not isinstance(model, str):
            raise ConfigError(f"OpenAIBackend needs a model name, got {model!r}")
        if base_url is not None and not base_url.startswith(("http://", "https://")):
            raise ConfigError(f"base_url must start with http:// or https://, got {base_url!r}")
        if max_tokens_param not in ("max_tokens", "max_completion_tokens"):
            raise ConfigError(
                f"max_tokens_param must be 'max_tokens' or 'max_completion_tokens', got {max_tokens_param!r}"
            )
        if structured_output not in ("json_schema", "json_object", "none"):
            raise ConfigError(
                f"structured_output must be 'json_schema', 'json_object' or 'none', got {structured_output!r}"
            )
        if int(max_concurrency) < 1:
            raise ConfigError(f"max_concurrency must be >= 1, got {max_concurrency!r}")
        self.base_url = (base_url or OPENAI_BASE_URL).rstrip("/")
        self.is_official = base_url is None
        self.api_key_env = api_key_env
        self.max_concurrency = int(max_concurrency)
        self.max_tokens_param: MaxTokensParam = max_tokens_param
        self.structured_output: StructuredOutput = structured_output
        self.transport = resolve_transport(transport)
        self.one_at_a_time = (
            settings.one_at_a_time_server(self.base_url) if one_at_a_time is None else bool(one_at_a_time)
        )
        key = os.environ.get(api_key_env, "").strip()
        if not key and self.is_official:
            raise ConfigError(
                f"no API key for OpenAI: the environment variable {api_key_env} is not set. "
                f"Set it (export {api_key_env}=sk-...), or point the model string at an OpenAI-compatible "
                f"server that needs no key, e.g. openai/{model}@http://127.0.0.1:8000/v1"
            )
        self.key_is_placeholder = not key
        self._api_key = _Secret(key or PLACEHOLDER_API_KEY)
        self._clients: PerLoop[_LoopClient] = PerLoop(self._new_client)

    def __repr__(self) -> str:
        return (
            f"OpenAIBackend(model={self.model!r}, base_url={self.base_url!r}, api_key_env={self.api_key_env!r}, "
            f"transport={self.transport!r})"
        )

    def identity(self) -> str:
        """`openai:<base_url>`: where answers come from; the key is deliberately not part of it."""
        return f"openai:{self.base_url}"

    def _new_client(self) -> _LoopClient:
        # The SDK's own HTTP clients with its defaults (limits, redirects, timeouts), sharing one TLS
        # context: building it loads the CA bundle (~40 ms), which would otherwise be paid again by
        # every event loop, i.e. by every `complete_sync` call.
        http_class = openai.DefaultAioHttpClient if self.transport == "aiohttp" else openai.DefaultAsyncHttpxClient
        client = openai.AsyncOpenAI(
            api_key=self._api_key.reveal(),
            base_url=self.base_url,
            max_retries=0,  # retries live once, in LM
            http_client=http_class(verify=_tls_context()),
        )
        closer = _close_when_loop_shuts_down(client)
        _start(closer)
        return _LoopClient(weakref.ref(asyncio.get_running_loop()), client, closer)

    def request_params(self, request: Request) -> dict[str, Any]:
        """The keyword arguments for `chat.completions.create`, minus transport options."""
        params: dict[str, Any] = {
            "model": self.model,
            "messages": request.chat,
            "temperature": request.temperature,
            "top_p": request.top_p,
            self.max_tokens_param: request.max_tokens,
            "seed": request.effective_seed(),
        }
        if request.stop:
            params["stop"] = list(request.stop)
        schema = request.schema
        if schema is not None and self.structured_output == "json_schema":
            params["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "output", "schema": schema},
            }
        elif schema is not None and self.structured_output == "json_object":
            params["response_format"] = {"type": "json_object", "schema": schema}
        return params

    async def generate(self, request: Request, *, timeout_s: float) -> Generation:
        client = self._clients.get().client
        params = self.request_params(request)
        try:
            # The SDK's timeout bounds each phase (connect, each read); the outer one bounds the whole
            # call, so a server that trickles bytes cannot hold a slot past timeout_s either.
            # `client.post(..., cast_to=httpx2.Response)` is the SDK's documented way to call an endpoint
            # and get the HTTP response back: the same headers, timeouts and typed errors as
            # `chat.completions.create`, without its parameter transform and pydantic model, which cost
            # more CPU than everything else in a call (see docs/benchmarks.md). The body is read below.
            async with asyncio.timeout(timeout_s):
                response = await client.post(
                    _CHAT_PATH, body=params, cast_to=httpx2.Response, options={"timeout": timeout_s}
                )
        except TimeoutError:
            self._raise_timeout(timeout_s)
        except openai.APITimeoutError as exc:
            failure = _connection_failure_in(exc)
            if failure is None:
                self._raise_timeout(timeout_s)
            self._raise_connection_failed(failure)
        except openai.APIConnectionError as exc:
            self._raise_connection_failed(exc.__cause__ or exc.__context__ or exc)
        except openai.APIResponseValidationError as exc:
            self._raise_malformed(f"{exc.message}", exc.status_code)
        except openai.APIStatusError as exc:
            raise self._status_error(exc) from None
        try:
            completion = json.loads(response.content)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            text = response.content[:120].decode("utf-8", "replace")
            self._raise_malformed(f"not JSON: {text!r} ({type(exc).__name__}: {exc})", response.status_code)
        return self._to_generation(completion)

    # -- mapping -----------------------------------------------------------------------------------
    def _scrub(self, text: str) -> str:
        """`text` with the API key masked: anywhere when the key is long enough to be a real secret, only as
        a whole token when it is short (a local server's toy key "abc" must not mask "fabcde")."""
        key = self._api_key.reveal()
        if not key or key == PLACEHOLDER_API_KEY:
            return text
        if len(key) >= MIN_SUBSTRING_MASK_LEN:
            return text.replace(key, "***")
        return re.sub(rf"(?<![\w-]){re.escape(key)}(?![\w-])", "***", text)

    def _raise_timeout(self, timeout_s: float) -> NoReturn:
        raise LMTimeoutError(
            f"no answer from {self.base_url} for model {self.model!r} within {timeout_s:g}s. If the model "
            "is just slow, raise the timeout (--timeout SECONDS, timeout_s in a config, LM(..., timeout_s=...)) "
            "or lower max_tokens; otherwise check that the server is not stuck.",
            model=self.model,
        ) from None

    def _raise_connection_failed(self, cause: BaseException) -> NoReturn:
        detail = f"{type(cause).__name__}: {cause}"
        raise ConnectionFailed(
            self._scrub(
                f"could not connect to {self.base_url} for model {self.model!r} ({detail}). "
                "Check that the server is running and that the URL (host, port, /v1 path) is right."
            ),
            model=self.model,
        ) from None

    def _raise_malformed(self, detail: str, status: int | None) -> NoReturn:
        raise ServerError(
            self._scrub(
                f"{self.base_url} returned a malformed body that is not a chat completion for model "
                f"{self.model!r} ({detail[:300]}). Check that base_url points at an OpenAI-compatible "
                "/v1 endpoint; if it does, the server is misbehaving."
            ),
            model=self.model,
            status=status,
        ) from None

    def _status_error(self, exc: openai.APIStatusError) -> LMError:
        status = exc.status_code
        server_says = _server_message(exc)
        where = f"{self.base_url} (HTTP {status}) for model {self.model!r}"
        kw: dict[str, Any] = {"model": self.model, "status": status}
        if status in (401, 403):
            if self.key_is_placeholder:
                hint = (
                    f"No key was sent: the environment variable {self.api_key_env} is not set. "
                    f"Set it to this server's key."
                )
            else:
                hint = (
                    f"The key is read from the environment variable {self.api_key_env}; check that it "
                    "holds a valid key for this server (and, for 403, that it may use this model)."
                )
            return AuthenticationError(self._scrub(f"{where} refused the API key: {server_says}. {hint}"), **kw)
        if status in (400, 404, 413, 422) or (400 <= status < 500 and status not in (408, 409, 429)):
            code = getattr(exc, "code", None)
            if status != 404 and is_context_length_message(server_says, code):
                return ContextTooLongError(
                    self._scrub(
                        f"{where}: the prompt plus max_tokens exceed the model's context window: "
                        f"{server_says}. "
                        "Shorten the prompt (fewer demos, shorter instructions) or lower max_tokens."
                    ),
                    **kw,
                )
            if code in ("content_filter", "content_policy_violation"):
                return ContentFilteredError(
                    self._scrub(f"{where}: the server's content filter refused this prompt: {server_says}."),
                    **kw,
                )
            if status == 404:
                hint = f"Check the model name {self.model!r} and that base_url ends with the API root (usually .../v1)."
            else:
                hint = "Retrying will not help; check the model name and the request parameters."
            return BadRequestError(self._scrub(f"{where} rejected the request: {server_says}. {hint}"), **kw)
        retry_after = parse_retry_after(exc.response.headers)
        if status == 429:
            wait = f" The server asked to wait {retry_after:g}s." if retry_after is not None else ""
            return RateLimitError(
                self._scrub(
                    f"{where}: rate limited: {server_says}.{wait} Lower the concurrency (--concurrency, "
                    "concurrency in a config) if this keeps happening."
                ),
                retry_after=retry_after,
                **kw,
            )
        return ServerError(
            self._scrub(f"{where}: server error: {server_says}."),
            retry_after=retry_after,
            **kw,
        )

    def _to_generation(self, completion: Any) -> Generation:
        """Check that a decoded body really is a chat completion, and convert it."""
        if not isinstance(completion, dict):
            self._raise_malformed(f"not a JSON object: {str(completion)[:120]!r}", 200)
        choices = completion.get("choices")
        if not isinstance(choices, list) or not choices:
            self._raise_malformed("no 'choices'", 200)
        choice = choices[0] if isinstance(choices[0], dict) else {}
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
        raw_finish = choice.get("finish_reason")
        if text is None and raw_finish == "content_filter":
            text = ""
        if not isinstance(text, str):
            self._raise_malformed("no 'choices[0].message.content' string", 200)
        finish = _FINISH.get(raw_finish, "other") if isinstance(raw_finish, str) else "other"
        usage = completion.get("usage")
        usage = usage if isinstance(usage, dict) else {}
        prompt_tokens = usage.get("prompt_tokens")
        completion_tokens = usage.get("completion_tokens")
        return Generation(
            text=text,
            finish_reason=finish,
            prompt_tokens=_count(prompt_tokens),
            completion_tokens=_count(completion_tokens),
            reused_prompt_tokens=reused_prompt_tokens(completion),
        )

    async def aclose(self) -> None:
        """Close the SDK clients: this loop's directly, others' on their own loops if still running."""
        current = asyncio.get_running_loop()
        for held in self._clients.values():
            loop = held.loop()
            # Finishing the shutdown hook closes the client and leaves nothing for the loop to finalize.
            if loop is current:
                await held.closer.aclose()
            elif loop is not None and not loop.is_closed() and loop.is_running():
                asyncio.run_coroutine_threadsafe(held.closer.aclose(), loop)
        self._clients = PerLoop(self._new_client)


def reused_prompt_tokens(completion: dict[str, Any]) -> int | None:
    """Prompt tokens the server took from its cache, where its reply says: OpenAI's (and vLLM's)
    `usage.prompt_tokens_details.cached_tokens`, else llama.cpp's `llama-server` `timings.cache_n`; None
    when it says neither (llama-cpp-python's `llama_cpp.server` prints it only in its log)."""
    usage = completion.get("usage")
    details = usage.get("prompt_tokens_details") if isinstance(usage, dict) else None
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    if cached is None:
        timings = completion.get("timings")
        cached = timings.get("cache_n") if isinstance(timings, dict) else None
    return cached if isinstance(cached, int) and not isinstance(cached, bool) and cached >= 0 else None


def _count(value: Any) -> int:
    """A token count from a usage block: an int (not a bool), else 0."""
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _server_message(exc: openai.APIStatusError) -> str:
    """The server's own error message: OpenAI-style `{"error": {"message": ...}}`, or the raw text."""
    body = exc.body
    text = ""
    if isinstance(body, dict):
        msg = body.get("message") or body.get("detail") or body.get("error")
        if isinstance(msg, dict):
            msg = msg.get("message")
        if isinstance(msg, str):
            text = msg
    if not text and isinstance(body, str):
        text = body
    if not text:
        try:
            text = exc.response.text
        except Exception:  # the body may be unreadable (closed stream)
            text = ""
    return text.strip()[:500].rstrip(". ") or "no error message"
