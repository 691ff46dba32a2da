"""Prometheus metrics for the gateway, in a registry of their own (not prometheus_client's global
one), so tests and several apps in one process never collide.

Every label value is bounded: endpoints, kinds, routers, fallback reasons, outcomes, rejections and
guard events come from fixed sets here (anything else becomes "other"); models, routes and client
keys are configured names (the caller passes nothing else), or "none". No label ever holds text a
client wrote. The metrics and their labels are listed in docs/observability-metrics.md.

With `turnout up --workers N`, each worker keeps its own counts. When the environment variable
PROMETHEUS_MULTIPROC_DIR names a directory before prometheus_client is first imported (the
runner's job), the workers write their counts there and `exposition()` answers with the sum of
all workers."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.multiprocess import MultiProcessCollector

from turnout.observability.record import RequestRecord

NONE = "none"
OTHER = "other"

# The paths that produce a RequestRecord. Another path is counted as "other".
ENDPOINTS = frozenset(
    {
        "/v1/chat/completions",
        "/v1/messages",
        "/v1/responses",
        "/routing/v1/chat/completions",
        "/routing/v1/messages",
        "/routing/v1/responses",
    }
)
KINDS = frozenset({"proxy", "decision"})
ROUTERS = frozenset({"embedded", "llm"})
# Why the LLM router did not decide (routing/llm.py's RouterUnavailable reasons).
FALLBACK_REASONS = frozenset({"timeout", "error", "invalid_reply", "circuit_open"})
OUTCOMES = frozenset({"answered", "retryable", "failed", "unreachable", "rate_limited"})
REJECTIONS = frozenset(
    {"authentication", "permission", "rate_limit", "budget", "guardrail", "filter", "invalid"}
)
# Guard events are "<guard>.<action>", e.g. "pii.input.redact" (governance/guards.py).
GUARDS = frozenset({"pii.input", "pii.output", "prompt_injection", "size.messages", "size.tokens"})
GUARD_ACTIONS = frozenset({"block", "redact", "log"})

# Whole requests: a routing decision takes milliseconds, a long generation minutes.
REQUEST_BUCKETS: Sequence[float] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 60, 120, 300, 600,
)  # fmt: skip
# Time to the first byte of a stream: usually under a few seconds, up to ~30 s for reasoning models.
TTFT_BUCKETS: Sequence[float] = (
    0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 60,
)  # fmt: skip
# Routing decisions: the embedded router takes ~5 ms; the LLM router times out at 1 s by default.
ROUTER_BUCKETS: Sequence[float] = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5,
)  # fmt: skip


def multiprocess() -> bool:
    """Whether prometheus_client keeps its values in PROMETHEUS_MULTIPROC_DIR: decided once, when
    it is first imported."""
    return values.ValueClass is not values.MutexValue


def _one_of(value: str | None, allowed: frozenset[str]) -> str:
    if value is None:
        return NONE
    return value if value in allowed else OTHER


def _name(value: str | None) -> str:
    """A configured name (model, route, client key), or "none"."""
    return value if value else NONE


def _status(status: int) -> str:
    """The HTTP status code, or "0" when there was none (a connection error or timeout)."""
    return str(status) if 100 <= status <= 599 else "0"


def _guard(event: str) -> tuple[str, str]:
    guard, _, action = event.rpartition(".")
    if guard not in GUARDS:
        return OTHER, OTHER
    return guard, action if action in GUARD_ACTIONS else OTHER


class Metrics:
    """The gateway's metrics. Call `observe` once per finished request: it counts everything the
    record carries (the router's decision, each upstream attempt, the guard events, tokens,
    cost, the rejection) through the event methods below. So call an event method directly only
    for an event no record carries, or it is counted twice. `request_started` and
    `request_ended` are not in the record: call them as a request starts and ends."""

    def __init__(self) -> None:
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "turnout_requests_total",
            "Finished requests, by endpoint, kind, HTTP status, answering model and route.",
            ["endpoint", "kind", "status", "model", "route"],
            registry=r,
        )
        self.request_duration = Histogram(
            "turnout_request_duration_seconds",
            "Time from a request's arrival to its last byte, by endpoint, kind and stream.",
            ["endpoint", "kind", "stream"],
            buckets=REQUEST_BUCKETS,
            registry=r,
        )
        self.ttft = Histogram(
            "turnout_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first byte to the client, by model.",
            ["model"],
            buckets=TTFT_BUCKETS,
            registry=r,
        )
        self.tokens = Counter(
            "turnout_tokens_total",
            "Tokens the providers reported (or turnout estimated), by model, client key and type "
            "(input or output).",
            ["model", "client_key", "type"],
            registry=r,
        )
        self.cost = Counter(
            "turnout_cost_usd_total",
            "Spend in US dollars at the configured prices, by model and client key.",
            ["model", "client_key"],
            registry=r,
        )
        self.router_decisions = Counter(
            "turnout_router_decisions_total",
            "Routing decisions, by the router that decided and the route it chose.",
            ["router", "route"],
            registry=r,
        )
        self.router_duration = Histogram(
            "turnout_router_duration_seconds",
            "Time to make a routing decision, by the router that decided.",
            ["router"],
            buckets=ROUTER_BUCKETS,
            registry=r,
        )
        self.router_fallbacks = Counter(
            "turnout_router_fallbacks_total",
            "Decisions the embedded router made because the LLM router did not, by reason.",
            ["reason"],
            registry=r,
        )
        self.upstream_attempts = Counter(
            "turnout_upstream_attempts_total",
            "Candidate models tried, by model and outcome (rate_limited: skipped by turnout's own "
            "limit, not called).",
            ["model", "outcome"],
            registry=r,
        )
        self.upstream_errors = Counter(
            "turnout_upstream_errors_total",
            "Calls to model providers that did not answer, by model and HTTP status "
            '("0": no response).',
            ["model", "status"],
            registry=r,
        )
        self.rejections = Counter(
            "turnout_rejections_total",
            "Requests turnout refused itself, by reason and client key.",
            ["reason", "client_key"],
            registry=r,
        )
        self.guardrail_events = Counter(
            "turnout_guardrail_events_total",
            "What the guardrails did, by guard and action.",
            ["guard", "action"],
            registry=r,
        )
        self.requests_in_flight = Gauge(
            "turnout_requests_in_flight",
            "Requests being served now, streams included, by kind.",
            ["kind"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.streams_in_flight = Gauge(
            "turnout_streams_in_flight",
            "Streamed responses being served now, by kind.",
            ["kind"],
            multiprocess_mode="livesum",
            registry=r,
        )
        self.ratelimit_storage_unavailable_total = Counter(
            "turnout_ratelimit_storage_unavailable_total",
            "Times the shared rate-limit storage (Redis) could not be reached.",
            registry=r,
        )
        # Series of the fixed label sets exist from the start, at 0: a dashboard panel or an
        # alert on "fallbacks" or "guard blocks" has a series to read before the first event.
        for reason in FALLBACK_REASONS:
            self.router_fallbacks.labels(reason)
        for guard in GUARDS:
            for action in GUARD_ACTIONS:
                self.guardrail_events.labels(guard, action)

    def _child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus_client validates and copies the labels
        on every lookup (about 2 µs), some 15 times a request; the label sets here are bounded."""
        key = (id(metric), labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    # ------------------------------------------------------------------ per request

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request and everything its record carries."""
        endpoint = _one_of(record.endpoint, ENDPOINTS)
        kind = _one_of(record.kind, KINDS)
        model = _name(record.model)
        key = _name(record.client_key)
        self._child(
            self.requests, endpoint, kind, _status(record.status), model, _name(record.route)
        ).inc()
        if record.latency_ms is not None:
            self._child(self.request_duration, endpoint, kind, str(record.stream).lower()).observe(
                record.latency_ms / 1000
            )
        if record.stream and record.ttft_ms is not None and record.model:
            self._child(self.ttft, model).observe(record.ttft_ms / 1000)
        if record.input_tokens:
            self._child(self.tokens, model, key, "input").inc(record.input_tokens)
        if record.output_tokens:
            self._child(self.tokens, model, key, "output").inc(record.output_tokens)
        if record.cost_usd:
            self._child(self.cost, model, key).inc(record.cost_usd)
        if record.router is not None:
            self.router_decision(
                record.router,
                record.router_latency_ms,
                record.router_fallback,
                route=record.route,
            )
        for attempt in record.attempts:
            self.upstream_attempt(attempt.model, attempt.outcome, status=attempt.status)
        if record.rejection is not None:
            self._child(self.rejections, _one_of(record.rejection, REJECTIONS), key).inc()
        for event in record.guard_events:
            self.guard_event(event)

    # ------------------------------------------------------------------ events

    def request_started(self, kind: str, stream: bool) -> None:
        """A request arrived (`stream=False`: counted in the requests in flight), or its answer
        became a stream (`stream=True`: counted in the streams in flight). A streamed request is
        started twice, once each way, and so ended twice."""
        gauge = self.streams_in_flight if stream else self.requests_in_flight
        self._child(gauge, _one_of(kind, KINDS)).inc()

    def request_ended(self, kind: str, stream: bool) -> None:
        """Call once for each `request_started`, with the same arguments."""
        gauge = self.streams_in_flight if stream else self.requests_in_flight
        self._child(gauge, _one_of(kind, KINDS)).dec()

    def router_decision(
        self,
        router: str,
        latency_ms: float | None,
        fallback: str | None,
        *,
        route: str | None = None,
    ) -> None:
        """One routing decision: the router that decided ("embedded" or "llm"), how long it took,
        why the LLM router did not decide (None when it did or was not asked), and the
        configured route chosen (None: no route)."""
        router = _one_of(router, ROUTERS)
        self._child(self.router_decisions, router, _name(route)).inc()
        if latency_ms is not None:
            self._child(self.router_duration, router).observe(latency_ms / 1000)
        if fallback is not None:
            self._child(self.router_fallbacks, _one_of(fallback, FALLBACK_REASONS)).inc()

    def guard_event(self, event: str) -> None:
        """A guard acted: "<guard>.<action>", e.g. "pii.input.redact", "prompt_injection.block",
        "size.messages.block". An unknown event counts as guard "other", action "other"."""
        self._child(self.guardrail_events, *_guard(event)).inc()

    def upstream_attempt(self, model: str, outcome: str, *, status: int | None = None) -> None:
        """One candidate model tried: the configured model and how it ended. "rate_limited" means
        turnout's own limit for that model skipped it, without a call. "retryable" (a 429 or
        5xx), "unreachable" and "failed" (another 4xx) also count as upstream errors, by `status`
        (the provider's HTTP status, 0 for no response; None when not known)."""
        model = _name(model)
        outcome = _one_of(outcome, OUTCOMES)
        self._child(self.upstream_attempts, model, outcome).inc()
        if outcome not in {"answered", "rate_limited"}:  # rate_limited: turnout skipped it
            self._child(
                self.upstream_errors, model, NONE if status is None else _status(status)
            ).inc()

    def ratelimit_storage_unavailable(self) -> None:
        self.ratelimit_storage_unavailable_total.inc()

    # ------------------------------------------------------------------ GET /metrics

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type for GET /metrics: this registry, or, when workers share
        PROMETHEUS_MULTIPROC_DIR, the sum of every worker's."""
        registry = self.registry
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
