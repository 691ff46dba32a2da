"""Telemetry for one request, from its first byte in to its last byte out: the record every
stage writes to, its trace, and, once the response (or stream) has ended, one metrics
observation and one access-log line.

This runs for every request, so it does as little as it can there: the record is a plain
object, the steps of a request that is not sampled are None (no span, no clock read), a sampled
request's spans are made once it has ended, and metrics and log lines are made for many
requests at a time."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping, Sequence
from time import time_ns
from typing import Any

from opentelemetry.trace import SpanContext, SpanKind
from starlette.responses import Response, StreamingResponse

from turnout.config import Config
from turnout.observability.access_log import AccessLog
from turnout.observability.metrics import Metrics, build_metrics
from turnout.observability.record import Kind, RequestRecord
from turnout.observability.trace_context import context_headers, new_trace_id, remote_parent
from turnout.observability.tracing import (
    Step,
    Trace,
    Tracing,
    decision_attributes,
    request_attributes,
)
from turnout.routing.conversation import Turn
from turnout.routing.decision import Decision

_REQUEST_ID = b"x-request-id"


class Telemetry:
    def __init__(self, metrics: Metrics, tracing: Tracing, access_log: AccessLog) -> None:
        self.metrics = metrics
        self.tracing = tracing
        self.access_log = access_log

    @classmethod
    def from_config(cls, config: Config) -> Telemetry:
        settings = config.observability
        return cls(
            build_metrics(settings.metrics),
            Tracing.from_config(config.tracing, record_content=settings.record_content),
            AccessLog(settings.access_log),
        )

    def open(self, endpoint: str, api: str, kind: Kind, headers: Mapping[str, str]) -> Track:
        """`headers`: the request's, looked up without regard to case (Starlette's)."""
        return Track(self, endpoint, api, kind, headers)

    def shutdown(self) -> None:
        """Flushes the access log and buffered spans: can block up to the exporter's timeout
        with a collector down."""
        self.access_log.flush()
        self.tracing.shutdown()


class Track:
    """One request's telemetry; `close` is called exactly once, when the client has it all.

    A step (guardrails, the routing decision, an upstream attempt) is `begin`-ed and `end`-ed;
    for a request that is not sampled (or with tracing off) `begin` returns None, and the rest
    of a step's work is skipped: compute a step's attributes only when it is not None."""

    __slots__ = (
        "_closed",
        "_error",
        "_parent",
        "_stream",
        "_telemetry",
        "_trace",
        "record",
    )

    def __init__(
        self,
        telemetry: Telemetry,
        endpoint: str,
        api: str,
        kind: Kind,
        headers: Mapping[str, str],
    ) -> None:
        self._telemetry = telemetry
        parent = remote_parent(headers)
        trace_id = new_trace_id() if parent is None else parent.trace_id
        self._parent: SpanContext | None = parent
        self._trace: Trace | None = telemetry.tracing.sample(endpoint, trace_id, parent, headers)
        self._error: BaseException | None = None
        self._stream = False
        self._closed = False
        self.record = RequestRecord(
            endpoint=endpoint, api=api, kind=kind, trace_id=f"{trace_id:032x}"
        )
        telemetry.metrics.request_started(kind, False)

    # ------------------------------------------------------------------ steps

    @property
    def records_content(self) -> bool:
        """Whether spans are recorded and the operator turned `observability.record_content` on."""
        return self._trace is not None and self._telemetry.tracing.record_content

    def begin(self, name: str, kind: SpanKind = SpanKind.INTERNAL) -> Step | None:
        """A child of the request's span starts now; None when spans are not recorded."""
        return None if self._trace is None else self._trace.begin(name, kind)

    def end(self, step: Step | None, attributes: Mapping[str, Any] | None = None) -> None:
        """The step ends now, with its attributes (an `error.type` among them marks it failed)."""
        if step is None:
            return
        step.end = time_ns()
        if attributes:
            step.attributes.update(attributes)

    def decided(self, decision: Decision, step: Step | None) -> None:
        record = self.record
        record.route, record.router = decision.route, decision.router
        record.router_fallback = decision.router_fallback
        record.router_confidence = decision.confidence
        record.router_escalated = decision.escalated
        record.router_latency_ms = decision.latency_ms
        if step is not None:
            step.attributes.update(decision_attributes(decision))

    def content(self, turns: Sequence[Turn], completion: str | None) -> None:
        """The prompt (after redaction) and the answer on the request's span."""
        if self._trace is not None:
            self._trace.attributes.update(
                self._telemetry.tracing.content_attributes(turns, completion)
            )

    def inject(self, headers: dict[str, str], step: Step | None = None) -> dict[str, str]:
        """`headers` for a call turnout makes for this request (to a provider, a filter), with
        the trace context added: naming `step` (else the request's span) when sampled; else the
        caller's context as it came, if any."""
        if self._trace is not None:
            headers.update(self._trace.context_headers(step))
        elif self._parent is not None:
            parent = self._parent
            headers.update(
                context_headers(
                    parent.trace_id, parent.span_id, parent.trace_flags, parent.trace_state
                )
            )
        return headers

    def fail(self, error: BaseException) -> None:
        """The request ended with `error`, raised inside the steps still open (they fail)."""
        self._error = error

    # ------------------------------------------------------------------ the end

    def respond(self, response: Response) -> Response:
        """Close now for a whole body; for a stream, when its last chunk is sent (or it fails)."""
        raw = response.raw_headers  # Starlette's names are lowercase; cheaper than .headers
        if not any(name == _REQUEST_ID for name, _ in raw):
            raw.append((_REQUEST_ID, self.record.trace_id.encode()))
        if not isinstance(response, StreamingResponse):
            self.close(response.status_code)
            return response
        self._stream = self.record.stream = True
        self._telemetry.metrics.request_started(self.record.kind, True)
        response.body_iterator = self._watched(response.body_iterator, response.status_code)
        return response

    async def _watched(self, body: AsyncIterable[Any], status: int) -> AsyncIterator[Any]:
        record = self.record
        try:
            async for chunk in body:
                if record.ttft_ms is None:
                    record.first_byte()
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
        metrics = telemetry.metrics
        metrics.request_ended(record.kind, False)
        if self._stream:
            metrics.request_ended(record.kind, True)
        metrics.observe(record)
        if self._trace is not None:
            telemetry.tracing.finish(self._trace, request_attributes(record), self._error)
        telemetry.access_log.write(record)
