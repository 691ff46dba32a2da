"""Prometheus metrics for the gateway. A request adds to plain dictionaries, keyed by label
values, in batches of finished requests: no lock and no prometheus_client object per update,
which cost ~10 µs a request. They become Prometheus families only when /metrics is scraped. Each Metrics has its own
values, so tests and several apps in one process never collide.

Every label value is bounded: endpoints, kinds, routers, fallback reasons, outcomes, rejections and
guard events come from fixed sets here (anything else becomes "other"); models, routes and client
keys are configured names (the caller passes nothing else), or "none". No label ever holds text a
client wrote. The metrics and their labels are listed in docs/observability.md.

With `turnout up --workers N`, each worker keeps its own counts. When the environment variable
PROMETHEUS_MULTIPROC_DIR names a directory before prometheus_client is first imported (the
runner's job), every update also goes to prometheus_client's files there, as it happens, and
`exposition()` answers with the sum of all workers' files.

`observability.metrics: false` gives a NoMetrics instead: nothing counted, nothing served."""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, ClassVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    values,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

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


BATCH = 256  # finished requests counted together, at most


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


Labels = tuple[str, ...]


class _Shared:
    """One metric in prometheus_client's multiprocess files, which a worker writes as each
    update happens and any worker sums when scraped."""

    def __init__(self, metric: Counter | Gauge | Histogram) -> None:
        self._metric = metric
        self._children: dict[Labels, Any] = {}

    def child(self, labels: Labels) -> Any:
        """`metric.labels(*labels)`, remembered: prometheus_client checks and copies the labels
        on every lookup."""
        child = self._children.get(labels)
        if child is None:
            child = self._children[labels] = (
                self._metric.labels(*labels) if labels else self._metric
            )
        return child


class _Family:
    """One metric: its values by label values, in a plain dictionary."""

    def __init__(self, name: str, documentation: str, labels: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labels = tuple(labels)

    def prometheus(self) -> Metric:
        raise NotImplementedError


class _Counter(_Family):
    def __init__(
        self, name: str, documentation: str, labels: Sequence[str] = (), *, shared: bool
    ) -> None:
        super().__init__(name, documentation, labels)
        self.values: defaultdict[Labels, float] = defaultdict(float)
        self.shared = self._shared() if shared else None

    def _shared(self) -> _Shared:
        return _Shared(Counter(self.name, self.documentation, self.labels, registry=None))

    def inc(self, labels: Labels, amount: float = 1.0) -> None:
        self.values[labels] += amount
        if self.shared is not None:
            self.shared.child(labels).inc(amount)

    def start_at_zero(self, labels: Labels) -> None:
        """A series that exists before its first event."""
        self.values[labels] = 0.0
        if self.shared is not None:
            self.shared.child(labels)

    def prometheus(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.values.items():
            family.add_metric(labels, value)
        return family


class _Gauge(_Counter):
    def _shared(self) -> _Shared:
        metric = Gauge(
            self.name, self.documentation, self.labels, multiprocess_mode="livesum", registry=None
        )
        return _Shared(metric)

    def prometheus(self) -> Metric:
        family = GaugeMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, value in self.values.items():
            family.add_metric(labels, value)
        return family


class _Histogram(_Family):
    def __init__(
        self,
        name: str,
        documentation: str,
        labels: Sequence[str],
        buckets: Sequence[float],
        *,
        shared: bool,
    ) -> None:
        super().__init__(name, documentation, labels)
        self.bounds = tuple(float(b) for b in buckets)
        self._le = [floatToGoString(b) for b in self.bounds] + ["+Inf"]
        # the count in each bucket (not cumulative, +Inf last), then the sum
        self.values: dict[Labels, list[float]] = {}
        self.shared = (
            _Shared(Histogram(name, documentation, self.labels, buckets=buckets, registry=None))
            if shared
            else None
        )

    def observe(self, labels: Labels, amount: float) -> None:
        counts = self.values.get(labels)
        if counts is None:
            counts = self.values[labels] = [0.0] * (len(self.bounds) + 2)
        counts[bisect_left(self.bounds, amount)] += 1  # the first bucket with amount <= le
        counts[-1] += amount
        if self.shared is not None:
            self.shared.child(labels).observe(amount)

    def prometheus(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labels)
        for labels, counts in self.values.items():
            cumulative, buckets = 0.0, []
            for le, count in zip(self._le, counts, strict=False):  # counts end with the sum
                cumulative += count
                buckets.append((le, cumulative))
            family.add_metric(labels, buckets, counts[-1])
        return family


class Metrics:
    """The gateway's metrics. Call `observe` once per finished request: it counts everything the
    record carries (the router's decision, each upstream attempt, the guard events, tokens,
    cost, the rejection) through the event methods below. So call an event method directly only
    for an event no record carries, or it is counted twice. `request_started` and
    `request_ended` are not in the record: call them as a request starts and ends."""

    served: ClassVar[bool] = True  # the app routes observability.metrics_path to `exposition`

    def __init__(self) -> None:
        shared = multiprocess()
        self.requests = _Counter(
            "turnout_requests_total",
            "Finished requests, by endpoint, kind, HTTP status, answering model and route.",
            ["endpoint", "kind", "status", "model", "route"],
            shared=shared,
        )
        self.request_duration = _Histogram(
            "turnout_request_duration_seconds",
            "Time from a request's arrival to its last byte, by endpoint, kind and stream.",
            ["endpoint", "kind", "stream"],
            REQUEST_BUCKETS,
            shared=shared,
        )
        self.ttft = _Histogram(
            "turnout_time_to_first_token_seconds",
            "Time from a streamed request's arrival to its first byte to the client, by model.",
            ["model"],
            TTFT_BUCKETS,
            shared=shared,
        )
        self.tokens = _Counter(
            "turnout_tokens_total",
            "Tokens the providers reported (or turnout estimated), by model, client key and type "
            "(input or output).",
            ["model", "client_key", "type"],
            shared=shared,
        )
        self.cost = _Counter(
            "turnout_cost_usd_total",
            "Spend in US dollars at the configured prices, by model and client key.",
            ["model", "client_key"],
            shared=shared,
        )
        self.router_decisions = _Counter(
            "turnout_router_decisions_total",
            "Routing decisions, by the router that decided and the route it chose.",
            ["router", "route"],
            shared=shared,
        )
        self.router_duration = _Histogram(
            "turnout_router_duration_seconds",
            "Time to make a routing decision, by the router that decided.",
            ["router"],
            ROUTER_BUCKETS,
            shared=shared,
        )
        self.router_fallbacks = _Counter(
            "turnout_router_fallbacks_total",
            "Decisions the embedded router made because the LLM router did not, by reason.",
            ["reason"],
            shared=shared,
        )
        self.router_escalations = _Counter(
            "turnout_router_escalations_total",
            "Decisions a cascade sent to the LLM router because the embedded router's confidence "
            "was below routing.cascade.min_confidence, by the router that then decided.",
            ["router"],
            shared=shared,
        )
        self.upstream_attempts = _Counter(
            "turnout_upstream_attempts_total",
            "Candidate models tried, by model and outcome (rate_limited: skipped by turnout's own "
            "limit, not called).",
            ["model", "outcome"],
            shared=shared,
        )
        self.upstream_errors = _Counter(
            "turnout_upstream_errors_total",
            "Calls to model providers that did not answer, by model and HTTP status "
            '("0": no response).',
            ["model", "status"],
            shared=shared,
        )
        self.rejections = _Counter(
            "turnout_rejections_total",
            "Requests turnout refused itself, by reason and client key.",
            ["reason", "client_key"],
            shared=shared,
        )
        self.guardrail_events = _Counter(
            "turnout_guardrail_events_total",
            "What the guardrails did, by guard and action.",
            ["guard", "action"],
            shared=shared,
        )
        self.requests_in_flight = _Gauge(
            "turnout_requests_in_flight",
            "Requests being served now, streams included, by kind.",
            ["kind"],
            shared=shared,
        )
        self.streams_in_flight = _Gauge(
            "turnout_streams_in_flight",
            "Streamed responses being served now, by kind.",
            ["kind"],
            shared=shared,
        )
        self.ratelimit_storage_unavailable_total = _Counter(
            "turnout_ratelimit_storage_unavailable_total",
            "Times the shared rate-limit storage (Redis) could not be reached.",
            shared=shared,
        )
        self._families: tuple[_Family, ...] = (
            self.requests,
            self.request_duration,
            self.ttft,
            self.tokens,
            self.cost,
            self.router_decisions,
            self.router_duration,
            self.router_fallbacks,
            self.router_escalations,
            self.upstream_attempts,
            self.upstream_errors,
            self.rejections,
            self.guardrail_events,
            self.requests_in_flight,
            self.streams_in_flight,
            self.ratelimit_storage_unavailable_total,
        )
        # Series of the fixed label sets exist from the start, at 0: a dashboard panel or an
        # alert on "fallbacks" or "guard blocks" has a series to read before the first event.
        for reason in FALLBACK_REASONS:
            self.router_fallbacks.start_at_zero((reason,))
        for router in ROUTERS:
            self.router_escalations.start_at_zero((router,))
        for guard in GUARDS:
            for action in GUARD_ACTIONS:
                self.guardrail_events.start_at_zero((guard, action))
        self.ratelimit_storage_unavailable_total.start_at_zero(())
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_Collector(self._families))
        self._shared = shared
        self._pending: list[RequestRecord] = []

    # ------------------------------------------------------------------ per request

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request and everything its record carries: at the next scrape, or
        once `BATCH` requests wait, since counting them in one go costs less (the counting code
        stays in the CPU's caches); at once when workers share their counts."""
        if self._shared:
            self._count(record)
            return
        self._pending.append(record)
        if len(self._pending) >= BATCH:
            self._count_pending()

    def _count_pending(self) -> None:
        pending, self._pending = self._pending, []
        for record in pending:
            self._count(record)

    def _count(self, record: RequestRecord) -> None:
        endpoint = _one_of(record.endpoint, ENDPOINTS)
        kind = _one_of(record.kind, KINDS)
        model = _name(record.model)
        key = _name(record.client_key)
        status = _status(record.status)
        self.requests.inc((endpoint, kind, status, model, _name(record.route)))
        if record.latency_ms is not None:
            stream = "true" if record.stream else "false"
            self.request_duration.observe((endpoint, kind, stream), record.latency_ms / 1000)
        if record.stream and record.ttft_ms is not None and record.model:
            self.ttft.observe((model,), record.ttft_ms / 1000)
        if record.input_tokens:
            self.tokens.inc((model, key, "input"), record.input_tokens)
        if record.output_tokens:
            self.tokens.inc((model, key, "output"), record.output_tokens)
        if record.cost_usd:
            self.cost.inc((model, key), record.cost_usd)
        if record.router is not None:
            self.router_decision(
                record.router,
                record.router_latency_ms,
                record.router_fallback,
                route=record.route,
                escalated=record.router_escalated,
            )
        for attempt in record.attempts:
            self.upstream_attempt(attempt.model, attempt.outcome, status=attempt.status)
        if record.rejection is not None:
            self.rejections.inc((_one_of(record.rejection, REJECTIONS), key))
        for event in record.guard_events:
            self.guard_event(event)

    # ------------------------------------------------------------------ events

    def request_started(self, kind: str, stream: bool) -> None:
        """A request arrived (`stream=False`: counted in the requests in flight), or its answer
        became a stream (`stream=True`: counted in the streams in flight). A streamed request is
        started twice, once each way, and so ended twice."""
        gauge = self.streams_in_flight if stream else self.requests_in_flight
        gauge.inc((_one_of(kind, KINDS),))

    def request_ended(self, kind: str, stream: bool) -> None:
        """Call once for each `request_started`, with the same arguments."""
        gauge = self.streams_in_flight if stream else self.requests_in_flight
        gauge.inc((_one_of(kind, KINDS),), -1)

    def router_decision(
        self,
        router: str,
        latency_ms: float | None,
        fallback: str | None,
        *,
        route: str | None = None,
        escalated: bool = False,
    ) -> None:
        """One routing decision: the router that decided ("embedded" or "llm"), how long it took,
        why the LLM router did not decide (None when it did or was not asked), the configured
        route chosen (None: no route), and whether a cascade escalated it to the LLM router."""
        router = _one_of(router, ROUTERS)
        self.router_decisions.inc((router, _name(route)))
        if latency_ms is not None:
            self.router_duration.observe((router,), latency_ms / 1000)
        if fallback is not None:
            self.router_fallbacks.inc((_one_of(fallback, FALLBACK_REASONS),))
        if escalated:
            self.router_escalations.inc((router,))

    def guard_event(self, event: str) -> None:
        """A guard acted: "<guard>.<action>", e.g. "pii.input.redact", "prompt_injection.block",
        "size.messages.block". An unknown event counts as guard "other", action "other"."""
        self.guardrail_events.inc(_guard(event))

    def upstream_attempt(self, model: str, outcome: str, *, status: int | None = None) -> None:
        """One candidate model tried: the configured model and how it ended. "rate_limited" means
        turnout's own limit for that model skipped it, without a call. "retryable" (a 429 or
        5xx), "unreachable" and "failed" (another 4xx) also count as upstream errors, by `status`
        (the provider's HTTP status, 0 for no response; None when not known)."""
        model = _name(model)
        outcome = _one_of(outcome, OUTCOMES)
        self.upstream_attempts.inc((model, outcome))
        if outcome != "answered" and outcome != "rate_limited":  # rate_limited: not called
            self.upstream_errors.inc((model, NONE if status is None else _status(status)))

    def ratelimit_storage_unavailable(self) -> None:
        self.ratelimit_storage_unavailable_total.inc(())

    # ------------------------------------------------------------------ GET /metrics

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type for GET /metrics: this Metrics's counts, or, when workers
        share PROMETHEUS_MULTIPROC_DIR, the sum of every worker's."""
        self._count_pending()
        registry = self.registry
        if multiprocess():
            registry = CollectorRegistry()
            MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST


class NoMetrics(Metrics):
    """Metrics turned off (`observability.metrics: false`): every method returns at once, so
    a request makes no update, in memory or in PROMETHEUS_MULTIPROC_DIR, and the app serves
    no metrics path. One object that does nothing, rather than a "metrics on?" test at each
    place telemetry counts, and it costs a request a few empty calls."""

    served = False

    def __init__(self) -> None:
        """No families and no registry: creating series would write multiprocess files."""

    def observe(self, record: RequestRecord) -> None:
        pass

    def request_started(self, kind: str, stream: bool) -> None:
        pass

    def request_ended(self, kind: str, stream: bool) -> None:
        pass

    def router_decision(
        self,
        router: str,
        latency_ms: float | None,
        fallback: str | None,
        *,
        route: str | None = None,
        escalated: bool = False,
    ) -> None:
        pass

    def guard_event(self, event: str) -> None:
        pass

    def upstream_attempt(self, model: str, outcome: str, *, status: int | None = None) -> None:
        pass

    def ratelimit_storage_unavailable(self) -> None:
        pass

    def exposition(self) -> tuple[bytes, str]:
        """Empty: there is nothing counted (and the app does not serve it)."""
        return b"", CONTENT_TYPE_LATEST


def build_metrics(enabled: bool) -> Metrics:
    """The gateway's metrics for `observability.metrics`: counting ones, or a NoMetrics."""
    return Metrics() if enabled else NoMetrics()


class _Collector(Collector):
    """The families, made from the counts when scraped."""

    def __init__(self, families: Sequence[_Family]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return [family.prometheus() for family in self._families]
