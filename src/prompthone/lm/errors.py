"""The LM layer's errors: few, typed, each saying what to do next.

Callers decide from the type alone whether to retry (`retryable`), and the evaluator uses the same
split to keep errors apart from wrong answers: an `LMError` is never scored as a 0. `permanent` errors
(a refused key, a wrong model name or file, a request the server rejects whatever the example) fail
every call alike, so code that tolerates per-example failures (bootstrapping, proposers, a judge)
must stop at once on them instead of counting them: `permanent_error_in` finds one behind a wrapper.

`BudgetExhausted` is not an LM failure but a refusal to spend: a run's limit was reached (checked
between units of work, or by an `LM.gate` before a paid request is sent). It lives on this floor so
that every layer above (the program run, the evaluator, the proposers) can let it through as the
stop it is, never as an example's error: `budget_stop_in` finds one behind a wrapper.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import cast


class LMError(Exception):
    """Base of every error the LM layer raises."""

    retryable: bool = False
    #: the same call for any other example would fail the same way: never a per-example failure
    permanent: bool = False

    def __init__(self, message: str, *, model: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status = status
        #: the run role of the LM that raised it (task, proposer, teacher, judge), set by `LM` when it has one
        self.role: str | None = None


class ConfigError(LMError):
    """The model string, the config or a local file is wrong; nothing was sent."""

    permanent = True


class ModelNotInstalled(ConfigError):
    """An embedded model's wheels are not installed."""


class ChecksumMismatch(ConfigError):
    """An assembled GGUF file does not have the published sha256; it is never loaded."""


class AuthenticationError(LMError):
    """The server refused the credentials (401/403)."""

    permanent = True


class BadRequestError(LMError):
    """The server rejected the request as malformed (400/404/422); retrying cannot help."""

    permanent = True


class ContextTooLongError(BadRequestError):
    """The prompt plus max_tokens exceed the model's context window: a property of this prompt (a long
    example, many demos), not of every call."""

    permanent = False


class ContentFilteredError(BadRequestError):
    """The server's content filter refused this prompt (400 `content_filter`): this example's text, not
    every call."""

    permanent = False


class RateLimitError(LMError):
    """429: too many requests or tokens; retried after the server's Retry-After."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ServerError(LMError):
    """5xx, a dropped connection, or a body that is not a chat completion; retried with backoff."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None, **kw) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class ConnectionFailed(ServerError):
    """The server could not be reached at all."""


class LMTimeoutError(LMError):
    """No answer within the timeout (a hang, or a runaway generation stopped on our side)."""

    retryable = True


class BudgetExhausted(Exception):
    """A limit of the run was reached; `limit` says which ("lm_calls", "tokens", "cost", "wall_time")."""

    def __init__(self, limit: str, message: str) -> None:
        super().__init__(message)
        self.limit = limit


def _in_chain(exc: BaseException | None, wanted: Callable[[BaseException], bool]) -> BaseException | None:
    """The first of `exc` and what caused it (its `__cause__`/`__context__` chain) that is `wanted`."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if wanted(exc):
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def budget_stop_in(exc: BaseException | None) -> BudgetExhausted | None:
    """The `BudgetExhausted` that is `exc` or caused it (a user program may wrap it), else None."""
    return cast(BudgetExhausted | None, _in_chain(exc, lambda e: isinstance(e, BudgetExhausted)))


def permanent_error_in(exc: BaseException | None) -> LMError | None:
    """The permanent `LMError` that is `exc` or caused it (a judge or a user program may wrap one), else None."""
    return cast(LMError | None, _in_chain(exc, lambda e: isinstance(e, LMError) and e.permanent))


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "BudgetExhausted",
    "ChecksumMismatch",
    "ConfigError",
    "ConnectionFailed",
    "ContentFilteredError",
    "ContextTooLongError",
    "LMError",
    "LMTimeoutError",
    "ModelNotInstalled",
    "RateLimitError",
    "ServerError",
    "budget_stop_in",
    "permanent_error_in",
]
