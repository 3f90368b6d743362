"""Model strings a person can type, and what they resolve to.

local/qwen2.5-coder-0.5b          an embedded model from the catalogue (the default)
local/path/to/model.gguf          any GGUF file; `local//abs/path.gguf` or `local/~/x.gguf` also work
openai/gpt-4o-mini                OpenAI, key from OPENAI_API_KEY
openai/MODEL@http://host:8000/v1  any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, ...)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from prompthone.lm.errors import ConfigError

DEFAULT_MODEL = "local/qwen2.5-coder-0.5b"


@dataclass(frozen=True)
class ModelSpec:
    provider: Literal["local", "openai"]
    model: str
    base_url: str | None = None


def parse_model_string(text: str) -> ModelSpec:
    """Split a model string into provider, model and optional base URL, or say what was expected."""
    from prompthone.lm.local.catalog import CATALOG

    s = (text or "").strip()
    expected = (
        "expected one of: local/<name> (" + ", ".join(sorted(CATALOG)) + "), local/<path>.gguf, "
        "openai/<model>, or openai/<model>@<base-url>"
    )
    if "/" not in s:
        raise ConfigError(f"unknown model string {text!r}: {expected}")
    provider, rest = s.split("/", 1)
    if not rest:
        raise ConfigError(f"model string {text!r} names no model: {expected}")
    if provider == "local":
        return ModelSpec("local", rest)
    if provider == "openai":
        model, _, url = rest.partition("@")
        if not model:
            raise ConfigError(f"model string {text!r} names no model before '@': {expected}")
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"base URL in {text!r} must start with http:// or https://, got {url!r}")
        return ModelSpec("openai", model, url or None)
    raise ConfigError(f"unknown provider {provider!r} in model string {text!r}: {expected}")


def thread_options(model: str, threads: int | None) -> dict[str, int]:
    """Backend options for a llama.cpp thread count: only embedded models take one (answers do not depend on
    it); for any other model, or no count, nothing."""
    return {"n_threads": threads} if threads and model.startswith("local/") else {}
