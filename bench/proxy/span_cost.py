"""Where a traced request's CPU goes, in-process and without I/O: turnout's telemetry for one
proxied request at each level, against the OpenTelemetry SDK's own costs per span.

    python bench/proxy/span_cost.py

Rows, each the best of 7 repeats, in µs of CPU on this machine:

- telemetry for one request, as the proxy drives it (open, three steps, two injections, the
  response, close), with tracing off (metrics only; metrics and the access log), traced but not
  sampled, and sampled with spans handed to a processor that drops them;
- what a live SDK span costs (`tracer.start_span`, attributes, `end`), for comparison;
- what encoding a request's four spans to OTLP protobuf costs, in a batch as the batch
  processor's thread exports them (in the gateway's process, for every sampled request): with
  the OTLP exporters' own encoder, and with turnout's, which the gateway uses.

Compare with the gateway's CPU per proxied request (about 0.3 ms here, from telemetry_cost.py):
5% of it is about 15 µs.
"""

from __future__ import annotations

import os
import timeit
from collections.abc import Callable, Sequence

import aiohttp
from opentelemetry.exporter.otlp.proto.common.trace_encoder import (
    encode_spans as sdk_encode_spans,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF, ParentBased
from opentelemetry.trace import SpanKind, set_span_in_context
from starlette.datastructures import Headers
from starlette.responses import Response

from turnout.observability.access_log import AccessLog
from turnout.observability.metrics import Metrics
from turnout.observability.otlp_encoding import encode_spans
from turnout.observability.record import Attempt
from turnout.observability.telemetry import Telemetry
from turnout.observability.tracing import (
    SPAN_GUARDRAILS,
    SPAN_ROUTING,
    Tracing,
    attempt_outcome_attributes,
    attempt_span_name,
    upstream_attributes,
)
from turnout.providers.upstream import Target
from turnout.routing.decision import Decision

HEADERS = Headers(
    raw=[
        (b"host", b"127.0.0.1:12000"),
        (b"content-type", b"application/json"),
        (b"authorization", b"Bearer sk-bench"),
        (b"content-length", b"90"),
    ]
)
TARGET = Target(
    "openai/gpt-4o-mini",
    "gpt-4o-mini",
    "openai_chat",
    "http://127.0.0.1:18001/v1/chat/completions",
    {},
    aiohttp.ClientTimeout(),
)
DECISION = Decision(
    models=["openai/gpt-4o-mini"],
    route=None,
    reason="",
    router="embedded",
    scores={},
    latency_ms=0.01,
)


# Requests whose spans are encoded together: the batch processor exports up to 512 spans at once.
BATCH_REQUESTS = 128


class Dropped(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class Batched(AccessLog):
    """Lines made and written every FLUSH_LINES, as in the gateway (without its timer), to
    /dev/null."""

    def __init__(self) -> None:
        super().__init__(out=open(os.devnull, "w"))  # noqa: SIM115 (open for the whole run)

    def _schedule_flush(self) -> None:
        pass


def proxied(telemetry: Telemetry) -> None:
    """One plain proxied request's telemetry calls, in the order the proxy makes them."""
    track = telemetry.open("/v1/chat/completions", "openai_chat", "proxy", HEADERS)
    step = track.begin(SPAN_GUARDRAILS)
    track.inject({}, step)
    track.end(step)
    step = track.begin(SPAN_ROUTING)
    track.decided(DECISION, step)
    track.end(step)
    step = track.begin(attempt_span_name(TARGET.model), SpanKind.CLIENT)
    track.inject({"content-type": "application/json"}, step)
    if step is not None:
        outcome = attempt_outcome_attributes(200, "answered")
        track.end(step, upstream_attributes(TARGET) | outcome)
    record = track.record
    record.attempts.append(Attempt(TARGET.model_id, 200, 1.0, "answered"))
    record.model, record.input_tokens, record.output_tokens = TARGET.model_id, 9, 6
    track.respond(Response(b"{}"))


def best_us(work: Callable[[], object], number: int) -> float:
    return min(timeit.repeat(work, number=number, repeat=7)) / number * 1e6


def sdk_spans(provider: TracerProvider) -> None:
    """The same four spans as live SDK spans."""
    tracer = provider.get_tracer("bench")
    server = tracer.start_span("POST /v1/chat/completions", kind=SpanKind.SERVER)
    context = set_span_in_context(server)
    for name, kind in ((SPAN_GUARDRAILS, SpanKind.INTERNAL), (SPAN_ROUTING, SpanKind.INTERNAL)):
        tracer.start_span(name, context=context, kind=kind).end()
    attempt = tracer.start_span("chat gpt-4o-mini", context=context, kind=SpanKind.CLIENT)
    attempt.set_attributes(upstream_attributes(TARGET) | attempt_outcome_attributes(200, "ok"))
    attempt.end()
    server.end()


def main() -> None:
    metrics = Metrics()
    off = Tracing(None)
    levels = {
        "metrics only (access log off)": Telemetry(metrics, off, AccessLog(enabled=False)),
        "default: metrics and access log": Telemetry(metrics, off, Batched()),
        "traced, request not sampled": Telemetry(
            metrics,
            Tracing(BatchSpanProcessor(Dropped()), sampler=ParentBased(ALWAYS_OFF)),
            Batched(),
        ),
        "traced and sampled (spans dropped by the exporter)": Telemetry(
            metrics, Tracing(BatchSpanProcessor(Dropped())), Batched()
        ),
    }
    response = best_us(lambda: Response(b"{}"), 20_000)
    print("| what | µs per request |")
    print("|---|--:|")
    for name, telemetry in levels.items():
        cost = best_us(lambda t=telemetry: proxied(t), 20_000) - response
        print(f"| turnout telemetry, {name} | {cost:.1f} |")
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    print(
        f"| OpenTelemetry SDK: 4 live spans made and ended | {best_us(lambda: sdk_spans(provider), 5_000):.1f} |"
    )
    sampled = Telemetry(Metrics(), Tracing.with_exporter(exporter), AccessLog(enabled=False))
    exporter.clear()
    for _ in range(BATCH_REQUESTS):
        proxied(sampled)
    spans = exporter.get_finished_spans()
    per_span = len(spans) // BATCH_REQUESTS
    for name, encode in (
        ("the OTLP exporters' encoder", lambda: sdk_encode_spans(spans).SerializeToString()),
        ("turnout's encoder (otlp_encoding.py)", lambda: encode_spans(spans)),
    ):
        cost = best_us(encode, 20) / BATCH_REQUESTS
        print(f"| OTLP protobuf encoding of one request's {per_span} spans, {name} | {cost:.1f} |")


if __name__ == "__main__":
    main()
