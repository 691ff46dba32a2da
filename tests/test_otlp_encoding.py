"""turnout's OTLP encoder against the OTLP exporters' own: the same spans must parse to the same
`ExportTraceServiceRequest`, whatever the spans hold."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans as sdk_encode
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import Event, ReadableSpan
from opentelemetry.sdk.util.instrumentation import InstrumentationScope
from opentelemetry.trace import (
    Link,
    SpanContext,
    SpanKind,
    Status,
    StatusCode,
    TraceFlags,
    TraceState,
)

from turnout.observability import otlp_encoding
from turnout.observability.otlp_encoding import encode_spans

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
RESOURCE = Resource({"service.name": "turnout", "service.version": "1.0"})
SCOPE = InstrumentationScope("turnout", "1.0")


def context(span_id: int, *, remote: bool = False, state: TraceState | None = None) -> SpanContext:
    return SpanContext(TRACE_ID, span_id, remote, TraceFlags(TraceFlags.SAMPLED), state)


def span(
    attributes: Mapping[str, Any] | None = None,
    *,
    name: str = "POST /v1/chat/completions",
    parent: SpanContext | None = None,
    resource: Resource = RESOURCE,
    scope: InstrumentationScope | None = SCOPE,
    **fields: Any,
) -> ReadableSpan:
    return ReadableSpan(
        name,
        context(0xB7AD6B7169203331, state=fields.pop("state", None)),
        parent,
        resource,
        attributes,
        kind=fields.pop("kind", SpanKind.SERVER),
        start_time=1_764_115_200_000_000_000,
        end_time=1_764_115_200_012_345_678,
        instrumentation_scope=scope,
        **fields,
    )


def assert_same(spans: Sequence[ReadableSpan]) -> None:
    ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert ours == sdk_encode(spans)


@pytest.mark.parametrize(
    "value",
    [
        "gpt-4o",
        "",
        "naïve ✓ 日本",
        True,
        False,
        0,
        200,
        -1,
        2**63 - 1,
        -(2**63),
        0.0,
        0.125,
        -3.5e-9,
        b"\x00\xff",
        ("openai/gpt-4o", "anthropic/claude"),
        (1, 2, 3),
        (True, 1.5, "x"),
        (),
        ["a", "b"],  # a list, not hashable: encoded each time
        {"nested": "map", "n": 1},
        None,
    ],
)
def test_every_attribute_type_encodes_as_the_exporters_do(value: Any) -> None:
    assert_same([span({"key": value, "http.route": "/v1/chat/completions"})])


def test_a_proxied_requests_spans() -> None:
    server = context(0xB7AD6B7169203331)
    attempt = ReadableSpan(
        "chat gpt-4o",
        context(0x00F067AA0BA902B7),
        server,
        RESOURCE,
        {
            "gen_ai.operation.name": "chat",
            "gen_ai.request.model": "gpt-4o",
            "server.port": 443,
            "http.response.status_code": 429,
            "error.type": "429",
        },
        kind=SpanKind.CLIENT,
        status=Status(StatusCode.ERROR, "429"),
        start_time=1,
        end_time=2,
        instrumentation_scope=SCOPE,
    )
    root = span(
        {"turnout.attempts": 2, "turnout.cost_usd": 0.00042, "turnout.stream": False},
        parent=context(0x1111111111111111, remote=True),
    )
    assert_same([attempt, root])


def test_events_links_trace_state_and_status() -> None:
    state = TraceState([("vendor", "a1"), ("other", "b2")])
    event = Event("exception", {"exception.type": "TimeoutError", "exception.message": ""}, 7)
    link = Link(context(0x2222222222222222, remote=True, state=state), {"why": "retry"})
    assert_same(
        [
            span(
                {"a": 1},
                state=state,
                events=(event, Event("empty", None, 8)),
                links=(link, Link(context(0x3333333333333333))),
                status=Status(StatusCode.ERROR, "boom"),
                kind=SpanKind.INTERNAL,
            ),
            span(status=Status(StatusCode.OK), kind=SpanKind.PRODUCER),
            span(kind=SpanKind.CONSUMER),
        ]
    )


def test_spans_are_grouped_by_resource_and_scope() -> None:
    other_resource = Resource({"service.name": "other"}, schema_url="https://opentelemetry.io/s/1")
    other_scope = InstrumentationScope("lib", None, "https://x/schema", {"scope.attr": "v"})
    spans = [
        span({"n": 1}),
        span({"n": 2}, scope=other_scope),
        span({"n": 3}, resource=other_resource),
        span({"n": 4}),
        span({"n": 5}, scope=None),
    ]
    assert_same(spans)
    request = ExportTraceServiceRequest.FromString(encode_spans(spans))
    assert [len(r.scope_spans) for r in request.resource_spans] == [3, 1]


def test_remembered_pieces_stay_right_past_the_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(otlp_encoding, "CACHE_LIMIT", 8)
    for round_ in range(3):  # the second and third encode from the table, refilled
        spans = [span({"model": f"m{n}", "n": n, "flag": n % 2 == 0}) for n in range(20)]
        assert_same(spans)
        assert len(otlp_encoding._pieces) <= 8, round_


def test_true_and_one_are_not_confused() -> None:
    """True == 1 and they hash alike, but they are different attribute values."""
    assert_same([span({"x": True}), span({"x": 1}), span({"x": 1.0}), span({"x": True})])


def test_an_attribute_the_exporters_refuse_is_left_out(caplog: pytest.LogCaptureFixture) -> None:
    spans = [span({"bad": "\ud800", "ok": "yes", "object": object(), "huge": 2**64})]
    with caplog.at_level(logging.ERROR):
        ours = ExportTraceServiceRequest.FromString(encode_spans(spans))
    keys = [kv.key for kv in ours.resource_spans[0].scope_spans[0].spans[0].attributes]
    assert keys == ["ok"]
    assert "bad" in caplog.text
    assert ours == sdk_encode(spans)
