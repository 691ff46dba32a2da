"""Governance settings: Plano's `ratelimits`, `filters` and `prompt_guards`, and turnout's own
`governance` section (client keys, budgets, prices, guardrails, shared state)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator

from turnout.config.sections import HttpUrl, Loc, Section, Text, fail, repeats
from turnout.governance.pii import ALL_KINDS, PiiKind

Unit = Literal["second", "minute", "hour", "day"]
Positive = Annotated[int, Field(gt=0)]
PositiveUsd = Annotated[float, Field(gt=0)]

_SHA256 = re.compile(r"[0-9a-f]{64}")


class WindowLimit(Section):
    """A number of requests, or of tokens, per time window."""

    requests: Positive | None = None
    tokens: Positive | None = None
    unit: Unit
    # turnout extension: which tokens count (Plano counts input tokens only)
    count: Literal["input_and_output", "input", "output"] = "input_and_output"

    @model_validator(mode="after")
    def _one_quantity(self) -> WindowLimit:
        if (self.requests is None) == (self.tokens is None):
            fail([((), "give either `requests` or `tokens`")])
        return self


class RateLimitSelector(Section):
    """Which requests a limit counts: those with this header, per value (`*`) or for one value."""

    key: Text
    value: str


class RateLimit(Section):
    """Plano's `ratelimits` entry: a limit for one model (`*`: any), per value of a request header.

    turnout also accepts `requests` in place of `tokens`, and no selector (one shared limit).
    """

    model: Text
    selector: RateLimitSelector | None = None
    limit: WindowLimit


class Budget(Section):
    daily_usd: PositiveUsd | None = None
    monthly_usd: PositiveUsd | None = None


class ClientKey(Section):
    """A key an application presents to turnout. Its secret is given as a `$VARIABLE` (resolved
    at load time) or as the secret's sha256 in hex; it is never written in the file itself."""

    name: Text
    key: str | None = None
    key_sha256: str | None = None
    models: list[Text] | None = None  # None: every model
    routes: list[Text] | None = None  # None: every route
    ratelimits: list[WindowLimit] = []
    budget: Budget | None = None
    admin: bool = False  # may send route corrections to /routing/v1/feedback

    @model_validator(mode="after")
    def _one_secret(self) -> ClientKey:
        problems: list[tuple[Loc, str]] = []
        if (self.key is None) == (self.key_sha256 is None):
            problems.append(((), "give either `key` (an environment variable) or `key_sha256`"))
        if self.key_sha256 is not None and not _SHA256.fullmatch(self.key_sha256):
            problems.append((("key_sha256",), "must be 64 lowercase hexadecimal characters"))
        if self.key is not None and len(self.key) < 16:
            problems.append((("key",), "must be at least 16 characters"))
        fail(problems)
        return self


class Price(Section):
    """USD per million tokens."""

    input_per_mtok: Annotated[float, Field(ge=0)]
    output_per_mtok: Annotated[float, Field(ge=0)]


class PiiGuard(Section):
    action: Literal["block", "redact", "log"] = "redact"
    kinds: list[PiiKind] = sorted(ALL_KINDS)
    input: bool = True
    output: bool = True


class InjectionGuard(Section):
    action: Literal["block", "log"] = "block"
    threshold: Annotated[float, Field(gt=0, lt=1)] | None = None  # None: the model's default
    message: str | None = None  # the refusal's text (Plano's `on_exception.message`)


class SizeGuard(Section):
    max_input_tokens: Positive | None = None  # estimated as characters / 4
    max_messages: Positive | None = None


class Guardrails(Section):
    pii: PiiGuard | None = None
    prompt_injection: InjectionGuard | None = None
    size: SizeGuard | None = None


class StateStorage(Section):
    """Where counters live: in the process, or in Redis so that every replica shares them."""

    type: Literal["memory", "redis"] = "memory"
    url: str | None = None
    on_unavailable: Literal["allow", "deny"] = "allow"  # when Redis cannot be reached

    @model_validator(mode="after")
    def _redis_has_url(self) -> StateStorage:
        if self.type == "redis" and not (self.url or "").startswith(("redis://", "rediss://")):
            fail([(("url",), "a redis:// or rediss:// URL is required when type is redis")])
        return self


def _unique_keys(keys: list[ClientKey]) -> list[ClientKey]:
    secrets = [key.key or key.key_sha256 for key in keys]
    names = repeats(key.name for key in keys)
    fail(
        [((i, "name"), f"duplicate client key name '{keys[i].name}'") for i in names]
        + [((i, "key"), "the same secret as an earlier key") for i in repeats(secrets)]
    )
    return keys


class Governance(Section):
    """turnout's `governance` section."""

    storage: StateStorage = StateStorage()
    client_keys: Annotated[list[ClientKey], AfterValidator(_unique_keys)] = []
    prices: dict[str, Price] = {}
    guardrails: Guardrails = Guardrails()


class Filter(Section):
    """Plano's `filters` entry: an HTTP service a request (or a response) passes through."""

    plano_only = frozenset({"transport", "tool"})

    id: Text
    url: HttpUrl
    type: Literal["http", "mcp"] = "mcp"  # Plano's default; turnout calls http filters
    transport: Any = None
    tool: Any = None
    # turnout extensions
    timeout_seconds: Annotated[float, Field(gt=0)] = 5.0
    on_unavailable: Literal["allow", "deny"] = "deny"  # a filter that is down: fail closed


class InputGuardException(Section):
    model_config = ConfigDict(extra="allow")

    message: str | None = None


class InputGuard(Section):
    model_config = ConfigDict(extra="allow")

    on_exception: InputGuardException | None = None


class InputGuards(Section):
    model_config = ConfigDict(extra="allow")

    jailbreak: InputGuard | None = None


class PromptGuards(Section):
    """Plano's `prompt_guards`: its `jailbreak` input guard turns on turnout's injection detector."""

    model_config = ConfigDict(extra="allow")

    input_guards: InputGuards | None = None

    @property
    def jailbreak_message(self) -> str | None:
        guard = self.input_guards.jailbreak if self.input_guards else None
        exception = guard.on_exception if guard else None
        return exception.message if exception else None

    @property
    def jailbreak(self) -> bool:
        return bool(self.input_guards and self.input_guards.jailbreak)
