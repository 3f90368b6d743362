"""Process-wide defaults for the LM layer, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir

from prompthone.lm.errors import ConfigError


def cache_dir() -> Path:
    """Where prompthone keeps assembled models and the response cache (PROMPTHONE_CACHE_DIR)."""
    return Path(os.environ.get("PROMPTHONE_CACHE_DIR") or user_cache_dir("prompthone")).expanduser()


def response_cache_path() -> Path:
    return Path(os.environ.get("PROMPTHONE_RESPONSE_CACHE") or cache_dir() / "responses.sqlite").expanduser()


def cache_enabled() -> bool:
    """The global switch: PROMPTHONE_NO_CACHE=1 turns the response cache off everywhere."""
    return os.environ.get("PROMPTHONE_NO_CACHE", "").strip().lower() not in ("1", "true", "yes", "on")


def default_threads() -> int:
    """Cores this process may use: llama-cpp-python would otherwise default to one thread here."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


#: PROMPTHONE_REQUEST_ORDER: how an endpoint that serves one request at a time is sent waiting requests
REQUEST_ORDER_ENV = "PROMPTHONE_REQUEST_ORDER"
#: PROMPTHONE_ONE_AT_A_TIME: servers known to answer one request at a time (llama_cpp.server)
ONE_AT_A_TIME_ENV = "PROMPTHONE_ONE_AT_A_TIME"


def request_order() -> str:
    """`affine` (the default: related prompts in a row, see `prompthone.lm.slots`) or `fifo` (arrival
    order, as before; for measuring what the order gains). It changes no answer, only the order."""
    value = os.environ.get(REQUEST_ORDER_ENV, "").strip().lower() or "affine"
    if value not in ("affine", "fifo"):
        raise ConfigError(f"the environment variable {REQUEST_ORDER_ENV} must be 'affine' or 'fifo', got {value!r}")
    return value


def one_at_a_time_server(base_url: str) -> bool:
    """Whether PROMPTHONE_ONE_AT_A_TIME names this server: "1" (or true/yes/on/all) for every server,
    else a comma-separated list of base URLs (e.g. http://127.0.0.1:8000/v1)."""
    raw = os.environ.get(ONE_AT_A_TIME_ENV, "").strip()
    if raw.lower() in ("", "0", "false", "no", "off"):
        return False
    if raw.lower() in ("1", "true", "yes", "on", "all"):
        return True
    urls = [u.strip().rstrip("/") for u in raw.split(",") if u.strip()]
    bad = [u for u in urls if not u.startswith(("http://", "https://"))]
    if bad:
        raise ConfigError(
            f"the environment variable {ONE_AT_A_TIME_ENV} must be 1 (every server) or a comma-separated list "
            f"of base URLs starting with http:// or https://, got {bad[0]!r}"
        )
    return base_url.rstrip("/") in urls
