"""The internal representation of a conversation: what every API format is reduced to for routing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]


@dataclass(frozen=True, slots=True)
class Turn:
    """One message reduced to its role and its text (non-text parts are dropped)."""

    role: Role
    text: str


@dataclass(frozen=True, slots=True)
class RoutingRequest:
    """What a client request contributes to a routing decision, whatever its API format.

    `routing_preferences` is the raw inline list from the body (validated later by the
    config schema), or None when the body carries none; `no_route_examples` likewise.
    """

    model: str | None
    turns: tuple[Turn, ...]
    routing_preferences: list[Any] | None = field(default=None)
    no_route_examples: list[str] | None = field(default=None)


# Body fields that are turnout's routing instructions, read by the gateway and never forwarded.
ROUTING_FIELDS = frozenset({"routing_preferences", "no_route_examples"})
