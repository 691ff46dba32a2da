"""Which rate limits a request counts against: Plano's `ratelimits` entries and client keys'
own limits, matched by model, request header and key."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from turnout.apis.response_text import Usage
from turnout.config import Config
from turnout.config.governance import RateLimit, WindowLimit
from turnout.governance.keys import Caller
from turnout.governance.ratelimit import Counted, Limit

Check = tuple[Limit, str]
"""A limit and whom it counts this request for."""


@dataclass(frozen=True, slots=True)
class ScopedLimit:
    """A `ratelimits` entry or a client key's limit, ready to be matched against requests."""

    limit: Limit
    count: str
    model: str | None  # a configured model id, or None for any
    header: str | None
    value: str | None  # None: each value of the header separately ("*")
    per_key: bool = False  # counted per client key


def configured_limit(config: Config, index: int, entry: RateLimit) -> ScopedLimit:
    selector = entry.selector
    model = None if entry.model == "*" else config.resolve_model(entry.model) or entry.model
    return ScopedLimit(
        limit=_limit(f"ratelimits[{index}]", entry.limit),
        count=entry.limit.count,
        model=model,
        header=selector.key.lower() if selector else None,
        value=None if selector is None or selector.value == "*" else selector.value,
    )


def key_limit(caller: Caller, index: int, limit: WindowLimit) -> ScopedLimit:
    return ScopedLimit(
        limit=_limit(f"client key {caller.name}, ratelimits[{index}]", limit),
        count=limit.count,
        model=None,
        header=None,
        value=None,
        per_key=True,
    )


def _limit(name: str, limit: WindowLimit) -> Limit:
    counted: Counted = "requests" if limit.requests is not None else "tokens"
    amount = limit.requests if limit.requests is not None else limit.tokens
    assert amount is not None
    return Limit(name=name, counted=counted, amount=amount, unit=limit.unit)


def _identity(entry: ScopedLimit, headers: Mapping[str, str], caller: Caller | None) -> str | None:
    """Whom a limit counts this request for, or None when it does not apply to it. Header
    values are hashed: they are the client's to choose, and become storage keys."""
    if entry.per_key:
        return caller.name if caller else None
    if entry.header is None:
        return "all"
    value = headers.get(entry.header)
    if value is None or (entry.value is not None and value != entry.value):
        return None
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:32]


def applicable(
    scoped: list[ScopedLimit], headers: Mapping[str, str], caller: Caller | None
) -> tuple[list[Check], dict[Check, str]]:
    """The limits that apply to this request, each with whom it counts for."""
    checks: list[Check] = []
    counts: dict[Check, str] = {}
    for entry in scoped:
        identity = _identity(entry, headers, caller)
        if identity is not None:
            check = (entry.limit, identity)
            checks.append(check)
            counts[check] = entry.count
    return checks, counts


def counted_tokens(usage: Usage, count: str) -> int:
    if count == "input":
        return usage.input_tokens
    if count == "output":
        return usage.output_tokens
    return usage.input_tokens + usage.output_tokens
