"""Which upstream failures are worth another candidate, and cooling down rate-limited models."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime

MAX_ATTEMPTS = 4
DEFAULT_COOLDOWN = 1.0
MAX_COOLDOWN = 300.0


def is_retryable(status: int) -> bool:
    """429 and 5xx may succeed elsewhere; other 4xx would fail the same way on any model."""
    return status == 429 or status >= 500


def retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date), bounded."""
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_COOLDOWN)


def error_message(body: bytes) -> str | None:
    """The provider's own message in an error body (OpenAI's and Anthropic's `error.message`)."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return None
    message = error.get("message") if isinstance(error, dict) else None
    return message if isinstance(message, str) else None


class Cooldowns:
    """Models told to back off (429 with Retry-After) are tried last until their time is up."""

    def __init__(self) -> None:
        self._until: dict[str, float] = {}

    def cool(self, model_id: str, seconds: float) -> None:
        self._until[model_id] = time.monotonic() + seconds

    def is_cool(self, model_id: str) -> bool:
        until = self._until.get(model_id)
        if until is None:
            return False
        if until <= time.monotonic():
            del self._until[model_id]
            return False
        return True

    def order(self, models: list[str]) -> list[str]:
        """Models not cooling down first, in their order; cooled ones after, never dropped."""
        return sorted(models, key=self.is_cool)
