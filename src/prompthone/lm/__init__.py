"""The LM layer: one async interface over an embedded llama.cpp model and any OpenAI-compatible server."""

from prompthone.lm.cache import ResponseCache, cache_key
from prompthone.lm.client import LM, make_backend, open_cache, run_sync
from prompthone.lm.errors import (
    AuthenticationError,
    BadRequestError,
    BudgetExhausted,
    ChecksumMismatch,
    ConfigError,
    ConnectionFailed,
    ContentFilteredError,
    ContextTooLongError,
    LMError,
    LMTimeoutError,
    ModelNotInstalled,
    RateLimitError,
    ServerError,
    budget_stop_in,
    permanent_error_in,
)
from prompthone.lm.model_string import DEFAULT_MODEL, ModelSpec, parse_model_string, thread_options
from prompthone.lm.slots import RequestSlots
from prompthone.lm.types import Completion, Generation, Message, Request
from prompthone.lm.usage import Usage

__all__ = [
    "DEFAULT_MODEL",
    "LM",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhausted",
    "ChecksumMismatch",
    "Completion",
    "ConfigError",
    "ConnectionFailed",
    "ContentFilteredError",
    "ContextTooLongError",
    "Generation",
    "LMError",
    "LMTimeoutError",
    "Message",
    "ModelNotInstalled",
    "ModelSpec",
    "RateLimitError",
    "Request",
    "RequestSlots",
    "ResponseCache",
    "ServerError",
    "Usage",
    "budget_stop_in",
    "cache_key",
    "make_backend",
    "open_cache",
    "parse_model_string",
    "permanent_error_in",
    "run_sync",
    "thread_options",
]
