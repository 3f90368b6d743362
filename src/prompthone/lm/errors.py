"""The LM layer's errors: few, typed, each saying what to do next.

Callers decide from the type alone whether to retry (`retryable`), and the evaluator uses the same
split to keep errors apart from wrong answers: an `LMError` is never scored as a 0.
"""

from __future__ import annotations


class LMError(Exception):
    """Base of every error the LM layer raises."""

    retryable: bool = False

    def __init__(self, message: str, *, model: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.model = model
        self.status = status


class ConfigError(LMError):
    """The model string, the config or a local file is wrong; nothing was sent."""


class ModelNotInstalled(ConfigError):
    """An embedded model's wheels are not installed."""


class ChecksumMismatch(ConfigError):
    """An assembled GGUF file does not have the published sha256; it is never loaded."""


class AuthenticationError(LMError):
    """The server refused the credentials (401/403)."""


class BadRequestError(LMError):
    """The server rejected the request as malformed (400/404/422); retrying cannot help."""


class ContextTooLongError(BadRequestError):
    """The prompt plus max_tokens exceed the model's context window."""


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


__all__ = [
    "AuthenticationError",
    "BadRequestError",
    "ChecksumMismatch",
    "ConfigError",
    "ConnectionFailed",
    "ContextTooLongError",
    "LMError",
    "LMTimeoutError",
    "ModelNotInstalled",
    "RateLimitError",
    "ServerError",
]
