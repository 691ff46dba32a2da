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
    config schema), or None when the body carries none.
    """

    model: str | None
    turns: tuple[Turn, ...]
    routing_preferences: list[Any] | None = field(default=None)
