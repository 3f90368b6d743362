"""Process-wide defaults for the LM layer, each overridable by an environment variable."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


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
