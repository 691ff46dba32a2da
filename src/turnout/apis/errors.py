"""Client-facing request errors, independent of the API format that renders them."""

from __future__ import annotations


class RequestError(Exception):
    """A request the gateway refuses; each API format renders it in its own error envelope.

    `kind` uses the shared vocabulary of the OpenAI and Anthropic error types
    (`invalid_request_error`, `not_found_error`, `request_too_large`, `api_error`...).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int = 400,
        kind: str = "invalid_request_error",
        param: str | None = None,
        headers: dict[str, str] | None = None,
        rejection: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.kind = kind
        self.param = param
        self.headers = headers or {}  # sent with the error response (Retry-After, x-ratelimit-*)
        # Why governance refused it (authentication, rate_limit, budget, guardrail, filter...),
        # for metrics and the access log; None for other errors.
        self.rejection = rejection
