"""Tracing: spans continue the client's W3C trace, nest under the request's span, propagate to
what turnout calls, carry the GenAI and turnout attributes (never the prompt unless asked),
sample as configured, and reach real OTLP receivers over HTTP and gRPC. Off by default, where
only the trace id remains."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased, Sampler, TraceIdRatioBased
from opentelemetry.trace import SpanKind, StatusCode, format_span_id, format_trace_id
from otlp_receiver import grpc_receiver, http_receiver
from starlette.datastructures import Headers

from turnout.config.schema import Tracing as TracingConfig
from turnout.observability.access_log import AccessLog
from turnout.observability.metrics import Metrics
from turnout.observability.otlp_export import GrpcSpanExporter, HttpSpanExporter
from turnout.observability.record import Attempt, RequestRecord
from turnout.observability.telemetry import Telemetry, Track
from turnout.observability.tracing import (
    Tracing,
    attempt_outcome_attributes,
    attempt_span_name,
    export_settings,
    request_attributes,
    resource_from,
    sampler_from,
    upstream_attributes,
)
from turnout.providers.upstream import Target
from turnout.routing.conversation import Turn
from turnout.routing.decision import Decision

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_ID = "00f067aa0ba902b7"
SAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-01"
UNSAMPLED = f"00-{TRACE_ID}-{PARENT_ID}-00"
TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-0[01]$")
ENDPOINT = "/v1/chat/completions"
SERVER = f"POST {ENDPOINT}"


def config(**values: Any) -> TracingConfig:
    return TracingConfig.model_validate(values)


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracing(exporter: InMemorySpanExporter) -> Iterator[Tracing]:
    tracing = Tracing.with_exporter(exporter)
    yield tracing
    tracing.shutdown()


def request(tracing: Tracing, headers: dict[str, str] | None = None) -> Track:
    """A proxy request's telemetry, as the app opens it (with Starlette's headers)."""
    telemetry = Telemetry(Metrics(), tracing, AccessLog(enabled=False))
    return telemetry.open(ENDPOINT, "openai_chat", "proxy", Headers(headers or {}))


def finished(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def ids(span: ReadableSpan) -> tuple[str, str]:
    context = span.get_span_context()
    assert context is not None
    return format_trace_id(context.trace_id), format_span_id(context.span_id)


def parent_id(span: ReadableSpan) -> str | None:
    return format_span_id(span.parent.span_id) if span.parent else None


# ---------------------------------------------------------------------- spans and propagation


def test_the_request_span_continues_the_clients_trace_and_steps_nest(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    track = request(tracing, {"traceparent": SAMPLED, "tracestate": "vendor=abc"})
    assert track.record.trace_id == TRACE_ID
    routing = track.begin("turnout.routing")
    track.end(routing, {"turnout.router": "embedded"})
    attempt = track.begin("chat gpt-4o", SpanKind.CLIENT)
    outgoing = track.inject({"content-type": "application/json"}, attempt)
    to_the_server = track.inject({})
    assert exporter.get_finished_spans() == ()  # nothing is exported before the request ends
    track.end(attempt)
    track.close(200)

    spans = finished(exporter)
    server, routed, call = spans[SERVER], spans["turnout.routing"], spans["chat gpt-4o"]
    assert list(spans) == ["turnout.routing", "chat gpt-4o", SERVER]  # children end first
    assert {ids(s)[0] for s in spans.values()} == {TRACE_ID}
    assert parent_id(server) == PARENT_ID and server.parent is not None
    assert server.parent.is_remote
    assert server.kind is SpanKind.SERVER and call.kind is SpanKind.CLIENT
    assert routed.kind is SpanKind.INTERNAL
    assert parent_id(routed) == parent_id(call) == ids(server)[1]
    assert routed.attributes == {"turnout.router": "embedded"}
    for span in (routed, call):
        assert server.start_time <= span.start_time <= span.end_time <= server.end_time
    # the outgoing traceparent names the attempt's span, or the request's; tracestate passed on
    match = TRACEPARENT.match(outgoing["traceparent"])
    assert match and match.groups() == ids(call) and outgoing["traceparent"].endswith("-01")
    assert TRACEPARENT.match(to_the_server["traceparent"]).groups() == ids(server)  # type: ignore[union-attr]
    assert outgoing["tracestate"] == "vendor=abc"
    assert outgoing["content-type"] == "application/json"


def test_the_request_span_ends_with_the_outcome(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    track = request(tracing, {"traceparent": SAMPLED})
    track.record.route = "code"
    track.close(502)

    (done,) = exporter.get_finished_spans()
    assert done.name == SERVER and done.attributes is not None
    assert done.attributes["turnout.route"] == "code"
    assert done.attributes["http.response.status_code"] == 502
    assert done.attributes["error.type"] == "502"
    assert done.status.status_code is StatusCode.ERROR


def test_a_4xx_does_not_fail_the_request_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    request(tracing).close(429)
    (span,) = exporter.get_finished_spans()
    assert span.status.status_code is StatusCode.UNSET
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 429
    assert "error.type" not in span.attributes


@pytest.mark.parametrize(
    "traceparent",
    [
        None,
        "garbage",
        f"00-{'0' * 32}-{PARENT_ID}-01",  # invalid trace id
        f"00-{TRACE_ID}-{'0' * 16}-01",  # invalid parent id
        f"ff-{TRACE_ID}-{PARENT_ID}-01",  # forbidden version
        f"00-{TRACE_ID}-{PARENT_ID}-01-extra",  # version 00 has exactly four fields
    ],
)
def test_a_missing_or_invalid_traceparent_starts_a_new_trace(
    tracing: Tracing, exporter: InMemorySpanExporter, traceparent: str | None
) -> None:
    track = request(tracing, {"traceparent": traceparent} if traceparent else {})
    trace_id = track.record.trace_id
    track.close(200)
    (done,) = exporter.get_finished_spans()
    assert done.parent is None
    assert ids(done)[0] == trace_id != TRACE_ID
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)


@pytest.mark.parametrize(
    "headers",
    [
        {"Traceparent": SAMPLED.upper()},  # uppercase
        {"traceparent": f" 01-{TRACE_ID}-{PARENT_ID}-01-future "},  # a later version's fields
    ],
)
def test_lenient_traceparents_are_continued(
    tracing: Tracing, exporter: InMemorySpanExporter, headers: dict[str, str]
) -> None:
    track = request(tracing, headers)
    assert track.record.trace_id == TRACE_ID
    track.close(200)
    assert parent_id(exporter.get_finished_spans()[0]) == PARENT_ID


def test_a_step_the_request_failed_in_fails_with_the_exception(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    track = request(tracing)
    track.end(track.begin("turnout.guardrails"))
    track.begin("turnout.routing")
    track.fail(RuntimeError("router down"))  # as the app does when a handler raises
    track.close(500)

    spans = finished(exporter)
    assert spans["turnout.guardrails"].status.status_code is StatusCode.UNSET
    routing = spans["turnout.routing"]
    assert routing.status.status_code is StatusCode.ERROR
    assert routing.status.description == "RuntimeError: router down"
    (event,) = routing.events
    assert event.name == "exception" and event.attributes is not None
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "router down"
    assert routing.end_time == spans[SERVER].end_time
    assert spans[SERVER].status.status_code is StatusCode.ERROR


def test_static_and_header_attributes(exporter: InMemorySpanExporter) -> None:
    """Plano's span_attributes: static ones on every span; headers with a prefix, named as
    Plano names them, on the request's span, where they override a static one."""
    tracing = Tracing.with_exporter(
        exporter,
        static_attributes={"environment": "prod", "tenant.id": "static"},
        header_prefixes=["x-katanemo-", "X-Tenant-"],
    )
    headers = {
        "x-katanemo-tenant-id": " ten_456 ",
        "x-tenant-user-id": "usr_789",
        "x-katanemo-": "no name left",
        "x-other-id": "ignored",
        "traceparent": SAMPLED,
    }
    assert tracing.header_attributes(headers) == {"tenant.id": "ten_456", "user.id": "usr_789"}
    track = request(tracing, headers)
    track.end(track.begin("child"), {"k": 1})
    track.close(200)
    spans = finished(exporter)
    attributes = dict(spans[SERVER].attributes or {})
    assert {k: attributes[k] for k in ("environment", "tenant.id", "user.id")} == {
        "environment": "prod",
        "tenant.id": "ten_456",
        "user.id": "usr_789",
    }
    assert spans["child"].attributes == {"environment": "prod", "tenant.id": "static", "k": 1}
    tracing.shutdown()


def test_from_config_reads_span_attributes_and_record_content() -> None:
    tracing = Tracing.from_config(
        config(span_attributes={"header_prefixes": ["x-t-"], "static": {"env": "prod"}}),
        env={"OTEL_SDK_DISABLED": "true"},
        record_content=True,
    )
    assert not tracing.enabled and tracing.record_content
    assert tracing.header_attributes({"x-t-a-b": "1"}) == {"a.b": "1"}


# ---------------------------------------------------------------------- attributes


def record(**values: Any) -> RequestRecord:
    defaults: dict[str, Any] = {
        "endpoint": "/v1/chat/completions",
        "api": "openai_chat",
        "kind": "proxy",
        "trace_id": TRACE_ID,
    }
    return RequestRecord(**(defaults | values))


def test_request_attributes_follow_the_genai_conventions() -> None:
    done = record(
        client_key="team-a",
        stream=True,
        requested_model="gpt-4o-mini",
        route="code_generation",
        router="embedded",
        router_fallback="timeout",
        router_latency_ms=3.5,
        attempts=[
            Attempt("openai/gpt-4o", 503, 12.0, "retryable"),
            Attempt("anthropic/claude-sonnet-4-20250514", 200, 80.0, "answered"),
        ],
        model="anthropic/claude-sonnet-4-20250514",
        guard_events=["pii.input.redact", "prompt_injection.flag", "pii.output.redact"],
        input_tokens=120,
        output_tokens=45,
        cost_usd=0.0012,
        ttft_ms=250.0,
    )
    done.finish(200)
    assert request_attributes(done) == {
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "gen_ai.operation.name": "chat",
        "gen_ai.request.model": "gpt-4o-mini",
        "gen_ai.provider.name": "anthropic",
        "gen_ai.response.model": "claude-sonnet-4-20250514",
        "gen_ai.usage.input_tokens": 120,
        "gen_ai.usage.output_tokens": 45,
        "gen_ai.response.time_to_first_chunk": 0.25,
        "turnout.model": "anthropic/claude-sonnet-4-20250514",
        "turnout.api": "openai_chat",
        "turnout.kind": "proxy",
        "turnout.stream": True,
        "turnout.attempts": 2,
        "turnout.route": "code_generation",
        "turnout.router": "embedded",
        "turnout.router.fallback": "timeout",
        "turnout.router.latency_ms": 3.5,
        "turnout.cost_usd": 0.0012,
        "turnout.client_key": "team-a",
        "turnout.guard.pii.input": "redact",
        "turnout.guard.pii.output": "redact",
        "turnout.guard.prompt_injection": "flag",
    }


def test_request_attributes_of_a_rejected_decision_request() -> None:
    """No model is called on the decision API: no gen_ai.* attributes; unset fields are left out."""
    done = record(
        endpoint="/routing/v1/messages",
        api="anthropic_messages",
        kind="decision",
        requested_model="claude",
        rejection="rate_limit",
        ttft_ms=1.0,
    )
    done.finish(429)
    assert request_attributes(done) == {
        "http.route": "/routing/v1/messages",
        "http.response.status_code": 429,
        "turnout.api": "anthropic_messages",
        "turnout.kind": "decision",
        "turnout.stream": False,
        "turnout.attempts": 0,
        "turnout.requested_model": "claude",
        "turnout.rejection": "rate_limit",
    }


def test_request_attributes_of_a_failed_request() -> None:
    done = record(model=None)
    done.finish(502)
    attributes = request_attributes(done)
    assert attributes["error.type"] == "502"
    assert "gen_ai.provider.name" not in attributes
    assert "gen_ai.response.time_to_first_chunk" not in attributes  # not a stream


@pytest.mark.parametrize(
    ("status", "outcome", "expected"),
    [
        (200, "answered", {"http.response.status_code": 200}),
        (429, "rate_limited", {"http.response.status_code": 429, "error.type": "429"}),
        (0, "unreachable", {"error.type": "unreachable"}),
        (503, "retryable", {"http.response.status_code": 503, "error.type": "503"}),
        (400, "failed", {"http.response.status_code": 400, "error.type": "400"}),
    ],
)
def test_attempt_outcome_attributes(status: int, outcome: str, expected: dict[str, Any]) -> None:
    assert attempt_outcome_attributes(status, outcome) == {
        "turnout.attempt.outcome": outcome,
        **expected,
    }


def test_upstream_span_attributes_from_the_proxy(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    """What the proxy sets on an attempt's span: the target, and how the call ended."""
    target = Target(
        "gemini/gemini-2.0-flash",
        "gemini-2.0-flash",
        "openai_chat",
        "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
        {"authorization": "Bearer secret"},
        aiohttp.ClientTimeout(),
    )
    track = request(tracing)
    step = track.begin(attempt_span_name(target.model), SpanKind.CLIENT)
    track.end(step, upstream_attributes(target) | attempt_outcome_attributes(0, "unreachable"))
    track.close(502)
    done = finished(exporter)["chat gemini-2.0-flash"]
    assert done.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "gcp.gemini",
        "gen_ai.request.model": "gemini-2.0-flash",
        "turnout.model": "gemini/gemini-2.0-flash",
        "server.address": "generativelanguage.googleapis.com",
        "server.port": 443,
        "turnout.attempt.outcome": "unreachable",
        "error.type": "unreachable",
    }
    assert done.status.status_code is StatusCode.ERROR
    assert done.status.description == "unreachable"


def test_decision_attributes_on_the_routing_span(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    decision = Decision(
        models=["anthropic/claude-sonnet-4-20250514", "openai/gpt-4o"],
        route="code_generation",
        reason="matched",
        router="embedded",
        scores={"code_generation": 0.8},
        latency_ms=4.0,
        router_fallback="timeout",
    )
    track = request(tracing)
    step = track.begin("turnout.routing")
    track.decided(decision, step)
    track.end(step)
    track.close(200)
    assert finished(exporter)["turnout.routing"].attributes == {
        "turnout.router": "embedded",
        "turnout.route": "code_generation",
        "turnout.router.fallback": "timeout",
        "turnout.router.latency_ms": 4.0,
        "turnout.models": ("anthropic/claude-sonnet-4-20250514", "openai/gpt-4o"),
    }
    assert track.record.route == "code_generation" and track.record.router == "embedded"


def test_attempt_span_result_marks_failures(
    tracing: Tracing, exporter: InMemorySpanExporter
) -> None:
    track = request(tracing)
    for status, outcome in [(503, "retryable"), (200, "answered")]:
        step = track.begin(attempt_span_name("gpt-4o"), SpanKind.CLIENT)
        track.end(step, attempt_outcome_attributes(status, outcome))
    track.close(200)
    failed, answered, _ = exporter.get_finished_spans()
    assert failed.name == answered.name == "chat gpt-4o"
    assert failed.status.status_code is StatusCode.ERROR
    assert failed.status.description == "503"
    assert answered.status.status_code is StatusCode.UNSET


def test_content_is_recorded_only_when_enabled(exporter: InMemorySpanExporter) -> None:
    turns = [Turn("system", "Be terse."), Turn("user", "My card is 4111 1111 1111 1111")]
    off = Tracing.with_exporter(exporter)
    assert off.content_attributes(turns, "ok") == {}
    track = request(off)
    assert not track.records_content
    track.content(turns, "ok")
    track.close(200)
    (done,) = exporter.get_finished_spans()
    assert not any(key.startswith("gen_ai.input") for key in done.attributes or {})

    on = Tracing.with_exporter(exporter, record_content=True)
    attributes = on.content_attributes(turns, "Noted.", finish_reason="stop")
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "system", "parts": [{"type": "text", "content": "Be terse."}]},
        {"role": "user", "parts": [{"type": "text", "content": "My card is 4111 1111 1111 1111"}]},
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "Noted."}],
            "finish_reason": "stop",
        }
    ]
    assert on.content_attributes() == {}
    track = request(on)
    assert track.records_content
    track.content(turns, "Noted.")
    track.close(200)
    recorded = exporter.get_finished_spans()[-1].attributes or {}
    assert "4111 1111 1111 1111" in str(recorded["gen_ai.input.messages"])
    off.shutdown()
    on.shutdown()


# ---------------------------------------------------------------------- off by default


def test_off_by_default_keeps_only_the_trace_id() -> None:
    tracing = Tracing.from_config(None, env={})
    assert not tracing.enabled
    track = request(tracing, {"traceparent": SAMPLED, "tracestate": "vendor=abc"})
    assert track.record.trace_id == TRACE_ID
    step = track.begin("turnout.routing")
    assert step is None
    track.end(step, {"a": 1})
    # what turnout forwards is the client's own context, as before tracing existed
    assert track.inject({}, step) == {"traceparent": SAMPLED, "tracestate": "vendor=abc"}
    track.close(500)
    tracing.shutdown()
    tracing.shutdown()


def test_off_without_a_traceparent_makes_an_id_and_forwards_no_context() -> None:
    tracing = Tracing.from_config(None, env={})
    track = request(tracing)
    trace_id = track.record.trace_id
    assert re.fullmatch(r"[0-9a-f]{32}", trace_id)
    assert track.inject({"a": "b"}) == {"a": "b"}  # as before tracing existed
    assert request(tracing).record.trace_id != trace_id


@pytest.mark.parametrize(
    ("tracing_config", "env"),
    [
        (None, {}),
        (None, {"OTEL_SERVICE_NAME": "x", "OTEL_TRACES_SAMPLER": "always_on"}),
        (config(opentracing_grpc_endpoint="http://c:4317"), {"OTEL_SDK_DISABLED": "TRUE"}),
        (config(random_sampling=100), {"OTEL_TRACES_EXPORTER": "none"}),
        (None, {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318", "OTEL_SDK_DISABLED": "true"}),
    ],
)
def test_what_leaves_tracing_off(tracing_config: TracingConfig | None, env: dict[str, str]) -> None:
    assert export_settings(tracing_config, env) is None
    assert not Tracing.from_config(tracing_config, env).enabled


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    ("tracing_config", "env", "expected"),
    [
        # Plano's endpoint is OTLP gRPC, and it wins over the variables
        (
            config(opentracing_grpc_endpoint="http://plano:4317"),
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318"},
            ("grpc", "http://plano:4317", "plano"),
        ),
        # Plano's endpoint is plaintext (its CLI insists on http://), also when written bare
        (
            config(opentracing_grpc_endpoint="collector:4317"),
            {},
            ("grpc", "http://collector:4317", "plano"),
        ),
        # the base endpoint gets the signal path for HTTP, not for gRPC
        (
            None,
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4318/"},
            ("http/protobuf", "http://env:4318/v1/traces", "env"),
        ),
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            ("grpc", "http://env:4317", "env"),
        ),
        # the traces endpoint is used as it is, and beats the base one; so does its protocol
        (
            None,
            {
                "OTEL_EXPORTER_OTLP_ENDPOINT": "http://env:4317",
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://traces:9999/custom",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
            },
            ("http/protobuf", "http://traces:9999/custom", "env"),
        ),
        # a block without an endpoint: the variables', else the OTLP gRPC default
        (
            config(random_sampling=10),
            {"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://t:4318/v1/traces"},
            ("http/protobuf", "http://t:4318/v1/traces", "env"),
        ),
        (config(random_sampling=10), {}, ("grpc", "http://localhost:4317", "default")),
        (
            None,
            {"OTEL_TRACES_EXPORTER": "otlp"},
            ("http/protobuf", "http://localhost:4318/v1/traces", "default"),
        ),
    ],
)
def test_export_settings(
    tracing_config: TracingConfig | None, env: dict[str, str], expected: tuple[str, str, str]
) -> None:
    settings = export_settings(tracing_config, env)
    assert settings is not None
    assert (settings.protocol, settings.endpoint, settings.source) == expected


def test_export_headers_come_from_the_variables() -> None:
    settings = export_settings(
        None,
        {
            "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318",
            "OTEL_EXPORTER_OTLP_HEADERS": "Authorization=Bearer%20abc, x-team = a",
        },
    )
    assert settings is not None and settings.headers == {
        "authorization": "Bearer abc",
        "x-team": "a",
    }


def test_resource_names_the_service() -> None:
    assert resource_from({}).attributes["service.name"] == "turnout"
    assert resource_from({"OTEL_SERVICE_NAME": "gw"}).attributes["service.name"] == "gw"
    resource = resource_from(
        {"OTEL_RESOURCE_ATTRIBUTES": "service.name=r,deployment.environment=p"}
    )
    assert resource.attributes["service.name"] == "r"
    assert resource.attributes["deployment.environment"] == "p"
    both = {"OTEL_RESOURCE_ATTRIBUTES": "service.name=r", "OTEL_SERVICE_NAME": "gw"}
    assert resource_from(both).attributes["service.name"] == "gw"


# ---------------------------------------------------------------------- sampling


def sampled_count(tracing: Tracing, exporter: InMemorySpanExporter, headers: dict[str, str]) -> int:
    exporter.clear()
    for _ in range(50):
        track = request(tracing, headers)
        track.end(track.begin("step"))
        track.close(200)
    names = [s.name for s in exporter.get_finished_spans()]
    assert names.count("step") == names.count(SERVER)  # the steps follow the request's decision
    return names.count(SERVER)


@pytest.mark.parametrize(
    ("percent", "no_parent", "sampled_parent", "unsampled_parent"),
    [(0, 0, 50, 0), (100, 50, 50, 0)],
)
def test_random_sampling_is_parent_based(
    exporter: InMemorySpanExporter,
    percent: int,
    no_parent: int,
    sampled_parent: int,
    unsampled_parent: int,
) -> None:
    """random_sampling applies to requests that come without a trace; a client's sampled flag
    is obeyed either way, so 0 still traces requests the client chose to trace."""
    sampler = sampler_from(config(random_sampling=percent), {"OTEL_TRACES_SAMPLER": "always_off"})
    tracing = Tracing.with_exporter(exporter, sampler=sampler)
    assert sampled_count(tracing, exporter, {}) == no_parent
    assert sampled_count(tracing, exporter, {"traceparent": SAMPLED}) == sampled_parent
    assert sampled_count(tracing, exporter, {"traceparent": UNSAMPLED}) == unsampled_parent
    tracing.shutdown()


def test_an_unsampled_request_still_continues_and_forwards_the_trace(
    exporter: InMemorySpanExporter,
) -> None:
    tracing = Tracing.with_exporter(exporter, sampler=sampler_from(config(random_sampling=0), {}))
    track = request(tracing, {"traceparent": UNSAMPLED})
    assert track.begin("step") is None
    assert track.record.trace_id == TRACE_ID
    assert track.inject({}) == {"traceparent": UNSAMPLED}  # the caller's context, as it came
    track.close(200)
    assert exporter.get_finished_spans() == ()
    tracing.shutdown()


class Spy(Sampler):
    """The always-on sampler, remembering what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[Any, ...]] = []

    def should_sample(self, parent_context, trace_id, name, kind=None, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.asked.append((parent_context, trace_id, name, kind))
        return ALWAYS_ON.should_sample(parent_context, trace_id, name, kind, *args, **kwargs)

    def get_description(self) -> str:
        return "spy"


def test_the_sampler_decides_once_as_the_request_arrives(exporter: InMemorySpanExporter) -> None:
    """It sees the request's span as it would in the SDK: its name, SERVER, the trace id and the
    caller's context; the steps follow that decision, and with tracing off it is never asked."""
    spy = Spy()
    track = request(Tracing.with_exporter(exporter, sampler=spy), {"traceparent": SAMPLED})
    track.end(track.begin("a"))
    track.close(200)
    ((context, trace_id, name, kind),) = spy.asked
    assert (format_trace_id(trace_id), name, kind) == (TRACE_ID, SERVER, SpanKind.SERVER)
    parent = trace.get_current_span(context).get_span_context()
    assert (format_span_id(parent.span_id), parent.is_remote) == (PARENT_ID, True)

    off = Spy()
    request(Tracing(None, sampler=off), {"traceparent": SAMPLED}).close(200)
    assert off.asked == []


def test_samplers_from_the_variables() -> None:
    ratio = sampler_from(
        None, {"OTEL_TRACES_SAMPLER": "traceidratio", "OTEL_TRACES_SAMPLER_ARG": "0.25"}
    )
    assert isinstance(ratio, TraceIdRatioBased) and ratio.rate == 0.25
    default = sampler_from(None, {})
    assert isinstance(default, ParentBased)
    assert sampler_from(None, {"OTEL_TRACES_SAMPLER": "nonsense"}).get_description() == (
        default.get_description()
    )
    assert "0.5" in sampler_from(config(random_sampling=50), {}).get_description()
    assert sampler_from(None, {"OTEL_TRACES_SAMPLER": "always_off"}).get_description() == (
        "AlwaysOffSampler"
    )


# ---------------------------------------------------------------------- export to real receivers


@pytest.fixture
def no_thread_left() -> Iterator[None]:
    before = set(threading.enumerate())
    yield
    left = [t for t in threading.enumerate() if t not in before and t.is_alive()]
    for thread in left:
        thread.join(timeout=5)
    assert not [t.name for t in left if t.is_alive()]


def make_spans(tracing: Tracing) -> tuple[str, str]:
    track = request(tracing, {"traceparent": SAMPLED})
    call = track.begin(attempt_span_name("gpt-4o"), SpanKind.CLIENT)
    assert call is not None
    track.end(
        call, {"gen_ai.provider.name": "openai", **attempt_outcome_attributes(200, "answered")}
    )
    track.record.model = "openai/gpt-4o"
    track.record.input_tokens, track.record.output_tokens = 7, 3
    server_id = track.inject({})["traceparent"].split("-")[2]
    track.close(200)
    return server_id, format_span_id(call.span_id)


@pytest.mark.usefixtures("no_thread_left")
def test_otlp_http_export_reaches_a_receiver() -> None:
    with http_receiver() as (url, received):
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",
            "OTEL_EXPORTER_OTLP_HEADERS": "x-team=a",
            "OTEL_SERVICE_NAME": "turnout-test",
        }
        tracing = Tracing.from_config(
            config(span_attributes={"static": {"environment": "test"}}), env
        )
        exporter = tracing._processor._batch_processor._exporter  # type: ignore[union-attr]
        assert isinstance(exporter, HttpSpanExporter)  # turnout's encoder, the SDK's transport
        server_id, call_id = make_spans(tracing)
        tracing.shutdown()  # flushes the batch processor
        spans = {span.name: span for span in received.wait_for(2)}

    assert received.headers[0]["x-team"] == "a"
    assert received.headers[0]["content-type"] == "application/x-protobuf"
    server, call = spans["POST /v1/chat/completions"], spans["chat gpt-4o"]
    assert server.trace_id == call.trace_id == TRACE_ID
    assert (server.span_id, server.parent_span_id) == (server_id, PARENT_ID)
    assert (call.span_id, call.parent_span_id) == (call_id, server_id)
    assert server.kind == 2 and call.kind == 3  # SPAN_KIND_SERVER, SPAN_KIND_CLIENT
    assert server.resource["service.name"] == "turnout-test"
    assert server.attributes["environment"] == call.attributes["environment"] == "test"
    assert server.attributes["gen_ai.usage.input_tokens"] == 7
    assert server.attributes["gen_ai.response.model"] == "gpt-4o"
    assert call.attributes["gen_ai.provider.name"] == "openai"
    assert call.attributes["http.response.status_code"] == 200


@pytest.mark.usefixtures("no_thread_left")
def test_otlp_grpc_export_to_planos_endpoint() -> None:
    with grpc_receiver() as (endpoint, received), http_receiver() as (url, http_received):
        tracing = Tracing.from_config(
            config(opentracing_grpc_endpoint=endpoint, random_sampling=100),
            # Plano's endpoint wins over the variable's
            env={"OTEL_EXPORTER_OTLP_ENDPOINT": url},
        )
        processor = tracing._processor
        exporter = processor._batch_processor._exporter  # type: ignore[union-attr]
        assert isinstance(exporter, GrpcSpanExporter)  # turnout's encoder, the SDK's transport
        assert exporter._endpoint == endpoint.removeprefix("http://")
        make_spans(tracing)
        tracing.shutdown()
        spans = {span.name: span for span in received.wait_for(2)}
        assert http_received.spans() == []

    assert set(spans) == {"POST /v1/chat/completions", "chat gpt-4o"}
    assert {span.trace_id for span in spans.values()} == {TRACE_ID}
    assert spans["POST /v1/chat/completions"].resource["service.name"] == "turnout"
