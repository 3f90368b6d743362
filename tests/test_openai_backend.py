"""OpenAIBackend through `LM`, the real `openai` SDK and real HTTP, against the local fake server.

Every fault path is scripted on the server, so these tests check the whole chain a user hits: SDK
exception -> typed LMError -> LM's retry policy -> what the server saw. Every test runs once per HTTP
transport under the SDK (httpx and aiohttp, picked through PROMPTHONE_HTTP_TRANSPORT), so both are
proven to behave the same.
"""

from __future__ import annotations

import asyncio
import email.utils
import re
import socket
import time
from pathlib import Path

import openai
import pytest

from prompthone.lm import (
    LM,
    AuthenticationError,
    BadRequestError,
    ConfigError,
    ConnectionFailed,
    ContextTooLongError,
    LMTimeoutError,
    RateLimitError,
    Request,
    ServerError,
    make_backend,
    openai_backend,
)
from prompthone.lm.openai_backend import (
    PLACEHOLDER_API_KEY,
    TRANSPORT_ENV,
    OpenAIBackend,
    aiohttp_available,
    is_context_length_message,
    parse_retry_after,
)
from prompthone.testing import FakeOpenAIServer, FakeOpenAIServerProcess, Fault

TRANSPORTS = ["httpx", pytest.param("aiohttp", marks=pytest.mark.skipif(not aiohttp_available(), reason="no aiohttp"))]

KEY_ENV = "PROMPTHONE_TEST_OPENAI_KEY"
SECRET = "sk-test-5ecret-do-not-leak-0123456789"
HELLO = [{"role": "user", "content": "Hello   there,\nworld"}]


@pytest.fixture
def server():
    srv = FakeOpenAIServer()
    with srv:
        yield srv


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test in this file, once per transport: backends built without `transport=` read the env var."""
    monkeypatch.setenv(KEY_ENV, SECRET)
    monkeypatch.delenv("PROMPTHONE_NO_CACHE", raising=False)
    monkeypatch.setenv(TRANSPORT_ENV, request.param)
    return request.param


def make_lm(server: FakeOpenAIServer, tmp_path: Path | None = None, **lm_kw) -> LM:
    backend_kw = {k: lm_kw.pop(k) for k in ("max_tokens_param", "structured_output") if k in lm_kw}
    backend = OpenAIBackend(
        "fake-model",
        base_url=server.base_url,
        api_key_env=KEY_ENV,
        max_concurrency=lm_kw.pop("backend_concurrency", 16),
        **backend_kw,
    )
    lm_kw.setdefault("backoff_base_s", 0.01)
    lm_kw.setdefault("timeout_s", 5.0)
    cache = tmp_path / "responses.sqlite" if tmp_path is not None else False
    return LM(backend, cache=cache, **lm_kw)


# -- success path ---------------------------------------------------------------------------------


async def test_success_returns_text_tokens_and_finish_reason(
    server: FakeOpenAIServer, tmp_path: Path, transport: str
) -> None:
    lm = make_lm(server, tmp_path)
    c = await lm.complete(HELLO, max_tokens=64, temperature=0.7, top_p=0.9, seed=3, sample_index=2)
    # white-box: the SDK client of this loop really runs over the chosen transport
    http_client = lm.backend._clients.get().client._client
    assert type(http_client) is (
        openai.DefaultAioHttpClient if transport == "aiohttp" else openai.DefaultAsyncHttpxClient
    )
    await lm.aclose()

    assert c.text == "echo: Hello there, world"
    assert c.finish_reason == "stop"
    assert c.cached is False
    assert c.model == "openai/fake-model"
    sent = server.last_request
    # the fake server's usage: max(words, chars/4) per message + 4, and the same for the answer
    assert c.prompt_tokens == 5 + 4
    assert c.completion_tokens == 6
    assert sent.path == "/v1/chat/completions"
    assert sent.body["model"] == "fake-model"
    assert sent.body["messages"] == HELLO
    assert sent.body["max_tokens"] == 64
    assert "max_completion_tokens" not in sent.body
    assert sent.body["temperature"] == 0.7
    assert sent.body["top_p"] == 0.9
    assert sent.body["seed"] == Request.build(HELLO, seed=3, sample_index=2).effective_seed()
    assert "stop" not in sent.body  # empty stop lists are not sent
    assert "response_format" not in sent.body
    assert sent.api_key == SECRET
    assert lm.usage.calls == 1 and lm.usage.retries == 0


async def test_max_completion_tokens_param_replaces_max_tokens(server: FakeOpenAIServer) -> None:
    lm = make_lm(server, max_tokens_param="max_completion_tokens")
    await lm.complete(HELLO, max_tokens=33)
    await lm.aclose()
    body = server.last_request.body
    assert body["max_completion_tokens"] == 33
    assert "max_tokens" not in body


async def test_token_limit_gives_length_finish_reason(server: FakeOpenAIServer) -> None:
    lm = make_lm(server)
    c = await lm.complete([{"role": "user", "content": "one two three four five six seven"}], max_tokens=3)
    await lm.aclose()
    assert c.finish_reason == "length"
    assert c.completion_tokens <= 3
    assert c.text == "echo: one"  # cut on a word boundary, within 3 fake tokens


async def test_stop_sequences_are_sent(server: FakeOpenAIServer) -> None:
    lm = make_lm(server)
    c = await lm.complete([{"role": "user", "content": "alpha beta gamma"}], stop=["gamma", "\n\n"])
    await lm.aclose()
    assert server.last_request.body["stop"] == ["gamma", "\n\n"]
    assert c.text == "echo: alpha beta "


SCHEMA = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}


@pytest.mark.parametrize(
    ("mode", "expected"),
    [
        ("json_schema", {"type": "json_schema", "json_schema": {"name": "output", "schema": SCHEMA}}),
        ("json_object", {"type": "json_object", "schema": SCHEMA}),
        ("none", None),
    ],
)
async def test_response_format_follows_structured_output(
    server: FakeOpenAIServer, mode: str, expected: dict | None
) -> None:
    lm = make_lm(server, structured_output=mode)
    await lm.complete(HELLO, response_format=SCHEMA)
    await lm.aclose()
    assert server.last_request.body.get("response_format") == expected


async def test_aclose_closes_the_connections(server: FakeOpenAIServer) -> None:
    lm = make_lm(server)
    await asyncio.gather(*(lm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(3)))
    assert server.open_connections >= 1  # keep-alive connections stay open between calls
    sdk_client = lm.backend._clients.get().client  # white-box: the SDK client this loop used
    await lm.aclose()
    assert sdk_client.is_closed()  # closed by aclose itself, not later by a finalizer
    for _ in range(500):  # bounded: up to 5 s for the server to see the close
        if server.open_connections == 0:
            break
        await asyncio.sleep(0.01)
    assert server.open_connections == 0


def test_sync_api_works_across_fresh_event_loops(server: FakeOpenAIServer) -> None:
    """`complete_sync` starts a new loop per call; the backend must build a client per loop."""
    lm = make_lm(server)
    first = lm.complete_sync([{"role": "user", "content": "one"}])
    second = lm.complete_sync([{"role": "user", "content": "two"}])
    assert (first.text, second.text) == ("echo: one", "echo: two")
    assert server.requests_received == 2
    # each call's client was closed when its loop shut down, not left holding a keep-alive socket
    deadline = time.monotonic() + 5.0
    while server.open_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.open_connections == 0


# -- retries --------------------------------------------------------------------------------------


async def test_429_waits_at_least_retry_after_then_succeeds(server: FakeOpenAIServer) -> None:
    server.inject(Fault.rate_limit(0.4), times=1)
    lm = make_lm(server)
    c = await lm.complete(HELLO)
    await lm.aclose()
    assert c.text.startswith("echo:")
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.4
    assert lm.usage.retries == 1 and lm.usage.errors == 0


async def test_503_with_retry_after_is_retried_after_the_wait(server: FakeOpenAIServer) -> None:
    server.inject(Fault.unavailable(retry_after=0.3), times=1)
    lm = make_lm(server)
    c = await lm.complete(HELLO)
    await lm.aclose()
    assert c.finish_reason == "stop"
    first, second = server.requests
    assert second.received_at - first.received_at >= 0.3
    assert lm.usage.retries == 1


async def test_500s_then_success_counts_retries(server: FakeOpenAIServer) -> None:
    server.inject(Fault.server_error(500), times=2)
    lm = make_lm(server, max_retries=4)
    c = await lm.complete(HELLO)
    await lm.aclose()
    assert c.text == "echo: Hello there, world"
    assert server.requests_received == 3
    assert lm.usage.retries == 2 and lm.usage.errors == 0


async def test_persistent_500_raises_server_error_after_retries(server: FakeOpenAIServer) -> None:
    server.inject(Fault.server_error(502), times=None)
    lm = make_lm(server, max_retries=2)
    with pytest.raises(ServerError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert info.value.status == 502 and info.value.model == "fake-model"
    assert server.requests_received == 3
    assert lm.usage.errors == 1


async def test_hang_past_timeout_raises_timeout_after_retries(server: FakeOpenAIServer) -> None:
    server.inject(Fault.hang(), times=None)
    lm = make_lm(server, timeout_s=0.25, max_retries=2)
    t0 = time.monotonic()
    with pytest.raises(LMTimeoutError) as info:
        await lm.complete(HELLO)
    elapsed = time.monotonic() - t0
    await lm.aclose()
    assert server.requests_received == 3
    assert elapsed >= 3 * 0.25
    assert elapsed < 10.0  # bounded: the hang does not hold the call forever
    assert "0.25s" in str(info.value) and "timeout_s" in str(info.value)
    assert info.value.model == "fake-model"
    assert lm.usage.retries == 2 and lm.usage.errors == 1


# -- errors that must not be retried ------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b'{"id": "chatcmpl-broken", "choices": [',  # truncated JSON
        b'{"id": "chatcmpl-1", "object": "chat.completion"}',  # no choices
        b'{"id": "chatcmpl-1", "choices": []}',  # empty choices
        # no content
        b'{"choices": [{"index": 0, "message": {"role": "assistant"}, "finish_reason": "stop"}]}',
        b"<html>502 bad gateway</html>",  # not JSON at all
    ],
)
async def test_malformed_body_is_a_server_error(server: FakeOpenAIServer, body: bytes) -> None:
    server.inject(Fault.malformed(body), times=None)
    lm = make_lm(server, max_retries=1)
    with pytest.raises(ServerError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert "malformed" in str(info.value)
    assert info.value.status == 200 and info.value.model == "fake-model"
    assert server.requests_received == 2  # a server glitch is worth one retry


async def test_401_is_authentication_error_without_retry_or_key_in_message(server: FakeOpenAIServer) -> None:
    server.inject(Fault.unauthorized(), times=None)
    lm = make_lm(server, max_retries=4)
    with pytest.raises(AuthenticationError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    err = info.value
    assert server.requests_received == 1
    assert server.last_request.api_key == SECRET  # the server got the key, and echoed it in its body
    assert SECRET not in str(err) and SECRET not in repr(err)
    assert all(SECRET not in str(a) for a in err.args)
    assert err.__cause__ is None and err.__suppress_context__  # the SDK error (with headers) is not chained
    assert KEY_ENV in str(err)
    assert err.status == 401 and err.model == "fake-model"
    assert lm.usage.retries == 0 and lm.usage.errors == 1


async def test_400_context_length_is_context_too_long_without_retry(server: FakeOpenAIServer) -> None:
    server.inject(Fault.context_length(), times=None)
    lm = make_lm(server, max_retries=4)
    with pytest.raises(ContextTooLongError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert isinstance(info.value, BadRequestError)
    assert server.requests_received == 1
    assert info.value.status == 400
    assert "max_tokens" in str(info.value)  # says what to do next


@pytest.mark.parametrize(
    ("status", "expected", "attempts"),
    [
        (400, BadRequestError, 1),
        (403, AuthenticationError, 1),
        (404, BadRequestError, 1),
        (422, BadRequestError, 1),
        (408, ServerError, 2),
        (409, ServerError, 2),
        (502, ServerError, 2),
        (429, RateLimitError, 2),
    ],
)
async def test_status_codes_map_to_typed_errors(
    server: FakeOpenAIServer, status: int, expected: type, attempts: int
) -> None:
    server.inject(Fault.status_code(status, "something went wrong"), times=None)
    lm = make_lm(server, max_retries=1)
    with pytest.raises(expected) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert type(info.value) is expected  # not a subclass such as ContextTooLongError
    assert info.value.status == status and info.value.model == "fake-model"
    assert "something went wrong" in str(info.value)
    assert server.requests_received == attempts


async def test_context_length_from_422_in_llama_cpp_wording(server: FakeOpenAIServer) -> None:
    server.inject(Fault.status_code(422, "Requested tokens (5000) exceed context window of 2048"), None)
    lm = make_lm(server, max_retries=2)
    with pytest.raises(ContextTooLongError):
        await lm.complete(HELLO)
    await lm.aclose()
    assert server.requests_received == 1


async def test_unreachable_port_is_connection_failed_naming_the_url() -> None:
    with socket.socket() as s:  # a port that was free a moment ago and has no listener now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/v1"
    lm = LM(OpenAIBackend("m", base_url=url), cache=False, max_retries=1, backoff_base_s=0.01, timeout_s=5)
    with pytest.raises(ConnectionFailed) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert url in str(info.value)
    assert "running" in str(info.value)
    assert info.value.model == "m"
    assert lm.usage.retries == 1  # a connection failure is retryable (the server may be starting)


async def test_server_dropping_the_connection_is_connection_failed(server: FakeOpenAIServer) -> None:
    server.inject(Fault.disconnect(), times=1)
    lm = make_lm(server, max_retries=0)
    with pytest.raises(ConnectionFailed) as info:
        await lm.complete(HELLO)
    assert server.base_url in str(info.value) and info.value.model == "fake-model"
    c = await lm.complete(HELLO)  # a retry (here: the next call) reconnects and succeeds
    await lm.aclose()
    assert c.text == "echo: Hello there, world"
    assert server.requests_received == 2


async def test_dropped_connection_is_retried_by_lm(server: FakeOpenAIServer) -> None:
    server.inject(Fault.disconnect(), times=1)
    lm = make_lm(server, max_retries=2)
    c = await lm.complete(HELLO)
    await lm.aclose()
    assert c.text == "echo: Hello there, world"
    assert server.requests_received == 2 and lm.usage.retries == 1


# -- configuration and secrets ----------------------------------------------------------------


def test_transport_option_env_var_and_fallback(monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    url = "http://127.0.0.1:1/v1"
    assert OpenAIBackend("m", base_url=url).transport == transport  # from the environment variable
    assert OpenAIBackend("m", base_url=url, transport="httpx").transport == "httpx"  # the option wins
    assert "transport=" in repr(OpenAIBackend("m", base_url=url))
    # the transport changes cost, not answers: cache identity is the same
    assert OpenAIBackend("m", base_url=url, transport="httpx").identity() == OpenAIBackend("m", base_url=url).identity()
    monkeypatch.setenv(TRANSPORT_ENV, "curl")
    with pytest.raises(ConfigError, match=TRANSPORT_ENV):
        OpenAIBackend("m", base_url=url)
    with pytest.raises(ConfigError, match="transport"):
        OpenAIBackend("m", base_url=url, transport="requests")  # type: ignore[arg-type]
    monkeypatch.delenv(TRANSPORT_ENV)
    expected_auto = "aiohttp" if aiohttp_available() else "httpx"
    assert OpenAIBackend("m", base_url=url).transport == expected_auto
    # without aiohttp installed, auto falls back to httpx and an explicit aiohttp is a clear error
    monkeypatch.setattr(openai_backend, "aiohttp_available", lambda: False)
    assert OpenAIBackend("m", base_url=url).transport == "httpx"
    with pytest.raises(ConfigError, match="pip install"):
        OpenAIBackend("m", base_url=url, transport="aiohttp")


def test_real_openai_without_key_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError) as info:
        OpenAIBackend("gpt-4o-mini")
    assert "OPENAI_API_KEY" in str(info.value)
    monkeypatch.delenv("MY_OTHER_KEY", raising=False)
    with pytest.raises(ConfigError, match="MY_OTHER_KEY"):
        make_backend("openai/gpt-4o-mini", api_key_env="MY_OTHER_KEY")


def test_identity_and_repr_hold_no_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    backend = OpenAIBackend("gpt-4o-mini")
    assert backend.identity() == "openai:https://api.openai.com/v1"
    assert SECRET not in repr(backend) and SECRET not in str(vars(backend))
    custom = make_backend("openai/qwen@http://127.0.0.1:8000/v1/")
    assert isinstance(custom, OpenAIBackend)
    assert custom.identity() == "openai:http://127.0.0.1:8000/v1"


@pytest.mark.parametrize(
    "options",
    [{"max_tokens_param": "max_new_tokens"}, {"structured_output": "grammar"}, {"max_concurrency": 0}],
)
def test_bad_options_are_config_errors(options: dict) -> None:
    with pytest.raises(ConfigError):
        OpenAIBackend("m", base_url="http://127.0.0.1:1/v1", **options)


async def test_custom_server_without_key_uses_placeholder(
    server: FakeOpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("UNSET_KEY_VAR", raising=False)
    lm = LM(make_backend(f"openai/m@{server.base_url}", api_key_env="UNSET_KEY_VAR"), cache=False)
    c = await lm.complete(HELLO)
    await lm.aclose()
    assert c.text.startswith("echo:")
    assert server.last_request.api_key == PLACEHOLDER_API_KEY


async def test_api_key_is_in_neither_cache_key_nor_cache_file(server: FakeOpenAIServer, tmp_path: Path) -> None:
    other_secret = "sk-another-key-entirely-9876543210"
    a = OpenAIBackend("fake-model", base_url=server.base_url, api_key_env=KEY_ENV)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, other_secret)
        b = OpenAIBackend("fake-model", base_url=server.base_url, api_key_env=KEY_ENV)
    cache = tmp_path / "responses.sqlite"
    lm_a, lm_b = LM(a, cache=cache), LM(b, cache=cache)
    request = Request.build(HELLO, max_tokens=16)
    assert lm_a.key_for(request) == lm_b.key_for(request)

    first = await lm_a.complete(HELLO, max_tokens=16)
    second = await lm_b.complete(HELLO, max_tokens=16)
    await lm_a.aclose()
    assert (first.cached, second.cached) == (False, True)
    assert server.requests_received == 1

    files = sorted(tmp_path.glob("responses.sqlite*"))
    blob = b"".join(p.read_bytes() for p in files)
    assert b"echo: Hello there, world" in blob  # the answer was written, so the scan is meaningful
    assert SECRET.encode() not in blob and other_secret.encode() not in blob


def test_sample_index_and_every_sampling_param_change_the_cache_key(server: FakeOpenAIServer) -> None:
    lm = make_lm(server)
    base = dict(temperature=0.5, max_tokens=32, stop=None, top_p=1.0, seed=0, sample_index=0)
    variants = {
        "base": {},
        "temperature": {"temperature": 0.6},
        "max_tokens": {"max_tokens": 33},
        "stop": {"stop": ["\n"]},
        "top_p": {"top_p": 0.9},
        "seed": {"seed": 1},
        "sample_index": {"sample_index": 1},
        "response_format": {"response_format": SCHEMA},
        "messages": {"messages": [{"role": "user", "content": "Hello there, world!"}]},
    }
    keys = {}
    for name, change in variants.items():
        kw = {**base, **change}
        messages = kw.pop("messages", HELLO)
        keys[name] = lm.key_for(Request.build(messages, **kw))
    assert len(set(keys.values())) == len(keys), keys
    assert lm.key_for(Request.build(HELLO, **base)) == keys["base"]  # and it is stable


async def test_sample_index_changes_the_seed_sent(server: FakeOpenAIServer) -> None:
    lm = make_lm(server)
    await lm.complete(HELLO, temperature=0.8, sample_index=0)
    await lm.complete(HELLO, temperature=0.8, sample_index=1)
    await lm.aclose()
    seeds = [r.body["seed"] for r in server.requests]
    assert seeds[0] != seeds[1]


# -- concurrency ---------------------------------------------------------------------------------


async def test_requests_in_flight_are_bounded_by_max_concurrency() -> None:
    srv = FakeOpenAIServer(latency_ms=30)
    with srv:
        lm = make_lm(srv, backend_concurrency=4)
        results = await asyncio.gather(*(lm.complete([{"role": "user", "content": f"q{i}"}]) for i in range(24)))
        await lm.aclose()
    assert [r.text for r in results] == [f"echo: q{i}" for i in range(24)]
    assert srv.requests_received == 24
    assert 2 <= srv.max_in_flight <= 4


# -- helpers ---------------------------------------------------------------------------------------


def test_parse_retry_after_forms() -> None:
    assert parse_retry_after({"retry-after": "2"}) == 2.0
    assert parse_retry_after({"retry-after": "0.5"}) == 0.5
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    in_30s = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 <= parse_retry_after({"retry-after": in_30s}) <= 31
    past = email.utils.formatdate(time.time() - 30, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({"retry-after": "-3"}) is None
    assert parse_retry_after({}) is None


def test_context_length_wordings() -> None:
    assert is_context_length_message("This model's maximum context length is 8192 tokens.")
    assert is_context_length_message("Requested tokens (5000) exceed context window of 2048")
    assert is_context_length_message("whatever", code="context_length_exceeded")
    assert is_context_length_message("the input exceeds the context size of the model")
    assert not is_context_length_message("Invalid value for temperature")
    assert not is_context_length_message("model 'foo' not found")


def test_fake_server_runs_as_a_subprocess() -> None:
    with FakeOpenAIServerProcess(latency_ms=0) as url:
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        lm = LM(OpenAIBackend("m", base_url=url), cache=False, max_retries=0)
        assert lm.complete_sync([{"role": "user", "content": "ping"}]).text == "echo: ping"


# -- giving up, short keys, what is permanent ---------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        (Fault.unavailable(), ServerError),
        (Fault.rate_limit(0.01), RateLimitError),
        (Fault.malformed(), ServerError),
    ],
)
async def test_the_error_raised_after_the_last_retry_says_it_gave_up(server, fault, error) -> None:
    server.inject(fault, times=None)
    lm = make_lm(server, max_retries=2, backoff_base_s=0.001)
    with pytest.raises(error) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    text = str(info.value)
    assert server.requests_received == 3
    assert "retried" not in text and "will be retried" not in text
    assert "gave up after 2 retries" in text


async def test_a_hang_past_the_timeout_after_the_last_retry_says_it_gave_up(server) -> None:
    server.inject(Fault.hang(), times=None)
    lm = make_lm(server, max_retries=1, backoff_base_s=0.001, timeout_s=0.2)
    with pytest.raises(LMTimeoutError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert "within 0.2s" in str(info.value) and "gave up after 1 retry" in str(info.value)


async def test_a_short_key_is_masked_only_as_a_whole_token(server, monkeypatch) -> None:
    """A key 'abc' (a local server's toy key) must not turn 'fabcde' or 'abcd' into '***' in messages."""
    monkeypatch.setenv(KEY_ENV, "abc")
    server.inject(Fault.unauthorized(), times=None)
    backend = OpenAIBackend("fabcde-abcd", base_url=server.base_url, api_key_env=KEY_ENV)
    lm = LM(backend, cache=False)
    with pytest.raises(AuthenticationError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    text = str(info.value)
    assert "'fabcde-abcd'" in text  # ordinary text is left alone
    assert "provided: ***." in text  # the echoed key itself is masked
    assert not re.search(r"(?<![\w-])abc(?![\w-])", text)


def test_permanent_errors_are_told_apart_from_per_example_ones() -> None:
    from prompthone.lm import ContentFilteredError, permanent_error_in

    assert AuthenticationError("x").permanent and ConfigError("x").permanent and BadRequestError("x").permanent
    for per_example in (ContextTooLongError("x"), ContentFilteredError("x"), ServerError("x"), LMTimeoutError("x")):
        assert not per_example.permanent
    refused = AuthenticationError("refused")
    try:
        try:
            raise refused
        except AuthenticationError as exc:
            raise ValueError("a user's program wrapped it") from exc
    except ValueError as wrapped:
        assert permanent_error_in(wrapped) is refused
    assert permanent_error_in(ServerError("down")) is None and permanent_error_in(None) is None


async def test_a_content_filter_refusal_is_a_per_example_bad_request(server) -> None:
    from prompthone.lm import ContentFilteredError

    server.inject(
        Fault("status", 400, b'{"error": {"message": "flagged by the content filter", "code": "content_filter"}}'),
        times=None,
    )
    lm = make_lm(server)
    with pytest.raises(ContentFilteredError) as info:
        await lm.complete(HELLO)
    await lm.aclose()
    assert not info.value.permanent and server.requests_received == 1
