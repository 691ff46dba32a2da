"""Telemetry for one request, from its first byte in to its last byte out: the record every
stage writes to, its trace span, and, once the response (or stream) has ended, one metrics
observation and one access-log line."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from opentelemetry.trace import SpanKind
from starlette.responses import Response, StreamingResponse

from turnout.config import Config
from turnout.observability.access_log import AccessLog
from turnout.observability.metrics import Metrics
from turnout.observability.record import Kind, RequestRecord
from turnout.observability.trace_context import trace_id_from
from turnout.observability.tracing import Tracing, decision_attributes, request_attributes
from turnout.routing.conversation import Turn
from turnout.routing.decision import Decision


class Telemetry:
    def __init__(self, metrics: Metrics, tracing: Tracing, access_log: AccessLog) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.access_log = access_log

    @classmethod
    def from_config(cls, config: Config) -> Telemetry:
        settings = config.observability
        return cls(
            Metrics(),
            Tracing.from_config(config.tracing, record_content=settings.record_content),
            AccessLog(settings.access_log),
        )

    def open(self, endpoint: str, api: str, kind: Kind, headers: Mapping[str, str]) -> Track:
        return Track(self, endpoint, api, kind, headers)

    def shutdown(self) -> None:
        """Flushes the access log and buffered spans: can block up to the exporter's timeout
        with a collector down."""
        self.access_log.flush()
        self.tracing.shutdown()


class Track:
    """One request's telemetry; `close` is called exactly once, when the client has it all."""

    def __init__(
        self,
        telemetry: Telemetry,
        endpoint: str,
        api: str,
        kind: Kind,
        headers: Mapping[str, str],
    ) -> None:
        self._telemetry = telemetry
        # With tracing off there are no spans at all (they cost ~40 µs a request even when not
        # recording): the caller's trace id is kept, and its traceparent passed on as it came.
        self._tracing = telemetry.tracing if telemetry.tracing.enabled else None
        traceparent = headers.get("traceparent")
        self._passed_on = {"traceparent": traceparent} if traceparent else {}
        self._span: Any = None  # the request's SERVER span, with tracing on
        if self._tracing is None:
            trace_id = trace_id_from(traceparent)
        else:
            self._span = self._tracing.start_server_span(f"POST {endpoint}", headers)
            trace_id = self._tracing.trace_id(self._span, headers)
        self.record = RequestRecord(endpoint=endpoint, api=api, kind=kind, trace_id=trace_id)
        self._stream = False
        self._closed = False
        telemetry.metrics.request_started(kind, False)

    @contextmanager
    def span(
        self,
        name: str,
        attributes: Mapping[str, Any] | None = None,
        kind: SpanKind = SpanKind.INTERNAL,
    ) -> Iterator[Any]:
        """A child of the request's span (guardrails, the routing decision, an upstream call);
        None with tracing off."""
        if self._tracing is None:
            yield None
            return
        with self._tracing.child_span(self._span, name, attributes, kind=kind) as span:
            yield span

    @property
    def traced(self) -> bool:
        """Whether spans are recorded: attributes need computing only then."""
        return self._tracing is not None

    @property
    def records_content(self) -> bool:
        """Whether traces are on and the operator turned `observability.record_content` on."""
        return self._tracing is not None and self._tracing.record_content

    def content(self, turns: Sequence[Turn], completion: str | None) -> None:
        """The prompt (after redaction) and the answer on the request's span."""
        if self._tracing is not None:
            attributes = self._tracing.content_attributes(turns, completion)
            self._tracing.set_attributes(self._span, attributes)

    def decided(self, decision: Decision, span: Any) -> None:
        record = self.record
        record.route, record.router = decision.route, decision.router
        record.router_fallback = decision.router_fallback
        record.router_latency_ms = decision.latency_ms
        if self._tracing is not None:
            self._tracing.set_attributes(span, decision_attributes(decision))

    def inject(self, headers: Mapping[str, str], span: Any = None) -> dict[str, str]:
        """Outgoing headers carrying this request's trace (to providers, filters, routers)."""
        if self._tracing is None:
            return {**headers, **self._passed_on}
        return self._tracing.inject(dict(headers), span or self._span)

    def respond(self, response: Response) -> Response:
        """Close now for a whole body; for a stream, when its last chunk is sent (or it fails)."""
        response.headers.setdefault("x-request-id", self.record.trace_id)
        if not isinstance(response, StreamingResponse):
            self.close(response.status_code)
            return response
        self._stream = self.record.stream = True
        self._telemetry.metrics.request_started(self.record.kind, True)
        response.body_iterator = self._watched(response.body_iterator, response.status_code)
        return response

    async def _watched(self, body: AsyncIterable[Any], status: int) -> AsyncIterator[Any]:
        try:
            async for chunk in body:
                self.record.first_byte()
                yield chunk
        finally:
            self.close(status)

    def close(self, status: int) -> None:
        if self._closed:
            return
        self._closed = True
        record = self.record
        record.finish(status)
        telemetry = self._telemetry
        telemetry.metrics.request_ended(record.kind, False)
        if self._stream:
            telemetry.metrics.request_ended(record.kind, True)
        telemetry.metrics.observe(record)
        if self._tracing is not None:
            self._tracing.end_server_span(self._span, request_attributes(record), status)
        telemetry.access_log.write(record)
