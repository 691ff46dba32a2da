"""What happened to one request, gathered as it passes through the gateway, for the access log,
the metrics and the trace: one record, written by every stage, read once at the end."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["proxy", "decision"]
# Why turnout itself refused a request (never user-controlled text: these are metric labels).
Rejection = Literal[
    "authentication", "permission", "rate_limit", "budget", "guardrail", "filter", "invalid"
]


Outcome = Literal["answered", "retryable", "failed", "unreachable", "rate_limited"]


@dataclass(slots=True)
class Attempt:
    """One upstream call: which model, how it ended, and why it was not the answer."""

    model: str  # configured `provider/model`
    status: int  # HTTP status, or 0 when no response came (connection error, timeout)
    latency_ms: float
    outcome: Outcome


@dataclass(slots=True)
class RequestRecord:
    endpoint: str  # the route path, e.g. "/v1/chat/completions": a bounded set
    api: str  # "openai_chat", "anthropic_messages" or "openai_responses"
    kind: Kind
    trace_id: str  # also the request id (x-request-id) and the decision's trace_id
    started: float = field(default_factory=time.perf_counter)
    started_at: float = field(default_factory=time.time)  # wall clock, for the log line
    client_key: str | None = None  # the key's configured name, never the secret
    stream: bool = False
    requested_model: str | None = None  # as the client wrote it (logged, never a metric label)
    route: str | None = None
    router: str | None = None  # "embedded" or "llm"
    router_fallback: str | None = None
    router_confidence: float | None = None  # the embedded router's, when it classified
    router_escalated: bool = False  # the cascade asked the LLM router
    router_latency_ms: float | None = None
    attempts: list[Attempt] = field(default_factory=list)
    model: str | None = None  # the configured model that answered
    status: int = 0
    rejection: Rejection | None = None
    guard_events: list[str] = field(default_factory=list)  # e.g. "pii.input.redact"
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    ttft_ms: float | None = None
    latency_ms: float | None = None

    def elapsed_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000

    def first_byte(self) -> None:
        """The first byte of the answer went to the client (time to first token for streams)."""
        if self.ttft_ms is None:
            self.ttft_ms = self.elapsed_ms()

    def finish(self, status: int) -> None:
        self.status = status
        self.latency_ms = self.elapsed_ms()
