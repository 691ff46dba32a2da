"""Telemetry end to end: a real gateway serves routed, streamed, failed-over and refused requests,
and its trace spans, /metrics and access log say what happened, with the same trace id."""

from __future__ import annotations

import io
import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from conftest import ROOT, ServerThread, free_port
from fakes import FakeProvider, Fault, Reply
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client.parser import text_string_to_metric_families

from turnout.config import parse_config
from turnout.observability.access_log import AccessLog, utc_time
from turnout.observability.metrics import Metrics
from turnout.observability.telemetry import Telemetry
from turnout.observability.tracing import Tracing
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.server.app import create_app

CODE = "Write a Python function that reverses a list"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
DASHBOARD = ROOT / "deploy" / "grafana" / "turnout.json"

CONFIG = """
version: v0.4.0
model_providers:
  - model: openai/gpt-4o-mini
    base_url: {openai}
    access_key: test-key
    default: true
  - model: openai/gpt-4o
    base_url: {openai}
    access_key: test-key
routing_preferences:
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [openai/gpt-4o, openai/gpt-4o-mini]
ratelimits:
  - model: "*"
    selector: {{key: x-user, value: limited}}
    limit: {{requests: 1, unit: minute}}
governance:
  guardrails:
    pii: {{action: redact}}
"""


@dataclass
class Observed:
    client: httpx.Client
    upstream: FakeProvider
    spans: InMemorySpanExporter
    log: io.StringIO

    def lines(self, count: int) -> list[dict]:
        """The access log's lines, once `count` are written (lines are written in batches)."""
        deadline = time.monotonic() + 5
        while len(self.log.getvalue().splitlines()) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return [json.loads(line) for line in self.log.getvalue().splitlines()]

    def scrape(self) -> dict[str, list]:
        text = self.client.get("/metrics").text
        return {family.name: family.samples for family in text_string_to_metric_families(text)}

    def server_spans(self) -> list[ReadableSpan]:
        return [
            s
            for s in self.spans.get_finished_spans()
            if s.parent is None or s.kind.name == "SERVER"
        ]


@pytest.fixture()
def observed(router: EmbeddedRouter) -> Iterator[Observed]:
    with FakeProvider("openai") as upstream:
        config = parse_config(CONFIG.format(openai=upstream.url), env={})
        service = RoutingService(config, router)
        service.prepare()
        spans = InMemorySpanExporter()
        log = io.StringIO()
        telemetry = Telemetry(Metrics(), Tracing.with_exporter(spans), AccessLog(out=log))
        app = create_app(service, telemetry=telemetry)
        with (
            ServerThread(app, free_port()) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            yield Observed(client, upstream, spans, log)


def chat(text: str, **extra: object) -> dict:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": text}], **extra}


def test_a_failed_over_routed_request_is_one_trace_with_the_clients_id(observed: Observed) -> None:
    observed.upstream.queue(Fault(503), Reply("def reverse(xs): return xs[::-1]"))
    response = observed.client.post(
        "/v1/chat/completions", json=chat(CODE), headers={"traceparent": TRACEPARENT}
    )
    assert response.status_code == 200
    assert response.headers["x-request-id"] == TRACE_ID

    spans = observed.spans.get_finished_spans()
    assert {format(s.context.trace_id, "032x") for s in spans} == {TRACE_ID}
    (server,) = [s for s in spans if s.kind.name == "SERVER"]
    children = [s.name for s in spans if s.parent and s.parent.span_id == server.context.span_id]
    assert "turnout.guardrails" in children and "turnout.routing" in children
    assert [n for n in children if n.startswith("chat ")] == ["chat gpt-4o", "chat gpt-4o-mini"]
    attributes = dict(server.attributes or {})
    assert attributes["gen_ai.operation.name"] == "chat"
    assert attributes["gen_ai.request.model"] == "gpt-4o-mini"
    assert attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attributes["turnout.route"] == "code_generation"
    assert attributes["turnout.attempts"] == 2
    assert (
        attributes["gen_ai.usage.input_tokens"] > 0 and attributes["gen_ai.usage.output_tokens"] > 0
    )
    assert CODE not in json.dumps({k: str(v) for k, v in attributes.items()})  # no content

    # The upstream saw the same trace, each attempt its own parent span.
    sent = [r.headers["traceparent"] for r in observed.upstream.requests]
    assert len(sent) == 2 and all(tp.split("-")[1] == TRACE_ID for tp in sent)
    assert sent[0].split("-")[2] != sent[1].split("-")[2]


def test_the_access_log_line_says_what_happened(observed: Observed) -> None:
    observed.upstream.queue(Fault(503), Reply("fine", chunks=3))
    with observed.client.stream(
        "POST",
        "/v1/chat/completions",
        json=chat(CODE, stream=True),
        headers={"traceparent": TRACEPARENT},
    ) as response:
        assert "data: [DONE]" in "".join(response.iter_text())

    (line,) = observed.lines(1)
    assert line["request_id"] == line["trace_id"] == TRACE_ID
    assert line["endpoint"] == "/v1/chat/completions" and line["kind"] == "proxy"
    assert line["stream"] is True and line["status"] == 200
    assert (line["route"], line["router"], line["model"]) == (
        "code_generation",
        "embedded",
        "openai/gpt-4o-mini",
    )
    assert line["attempts"] == 2 and line["attempted"] == [
        "openai/gpt-4o:503",
        "openai/gpt-4o-mini:200",
    ]
    assert line["ttft_ms"] > 0 and line["latency_ms"] >= line["ttft_ms"]
    assert line["output_tokens"] > 0  # the governed stream (PII guard on) was measured
    assert line["client_key"] is None and line["rejection"] is None
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", line["time"])


def test_refusals_and_decisions_are_logged_and_counted(observed: Observed) -> None:
    limited = {"x-user": "limited"}
    observed.client.post("/v1/chat/completions", json=chat("hi"), headers=limited)
    refused = observed.client.post("/v1/chat/completions", json=chat("hi"), headers=limited)
    decision = observed.client.post("/routing/v1/chat/completions", json=chat(CODE))
    assert refused.status_code == 429 and decision.status_code == 200

    lines = observed.lines(3)
    assert [line["status"] for line in lines] == [200, 429, 200]
    assert lines[1]["rejection"] == "rate_limit"
    assert lines[2]["kind"] == "decision" and lines[2]["route"] == "code_generation"
    assert lines[2]["request_id"] == decision.json()["trace_id"]

    metrics = observed.scrape()
    rejections = {
        s.labels["reason"]: s.value
        for s in metrics["turnout_rejections"]
        if s.name.endswith("_total")
    }
    assert rejections.get("rate_limit") == 1


def test_metrics_count_requests_attempts_tokens_and_guards(observed: Observed) -> None:
    observed.upstream.queue(Fault(503), Reply("mail me at ann@example.com"))
    observed.client.post("/v1/chat/completions", json=chat(CODE))
    metrics = observed.scrape()

    requests = [s for s in metrics["turnout_requests"] if s.name == "turnout_requests_total"]
    assert any(
        s.labels["route"] == "code_generation"
        and s.labels["model"] == "openai/gpt-4o-mini"
        and s.value == 1
        for s in requests
    )
    attempts = {
        (s.labels["model"], s.labels["outcome"]): s.value
        for s in metrics["turnout_upstream_attempts"]
        if s.name.endswith("_total")
    }
    assert attempts == {("openai/gpt-4o", "retryable"): 1, ("openai/gpt-4o-mini", "answered"): 1}
    guards = {
        (s.labels["guard"], s.labels["action"])
        for s in metrics["turnout_guardrail_events"]
        if s.value
    }
    assert ("pii.output", "redact") in guards
    tokens = sum(s.value for s in metrics["turnout_tokens"] if s.name.endswith("_total"))
    assert tokens > 0


def test_every_dashboard_panel_queries_a_metric_the_gateway_emits(observed: Observed) -> None:
    observed.upstream.queue(
        Fault(503), Reply("routed and failed over"), Reply("streamed", chunks=3)
    )
    observed.client.post("/v1/chat/completions", json=chat(CODE))
    with observed.client.stream(
        "POST", "/v1/chat/completions", json=chat("hi", stream=True)
    ) as response:
        "".join(response.iter_text())
    for _ in range(2):
        observed.client.post("/v1/chat/completions", json=chat("hi"), headers={"x-user": "limited"})
    text = observed.client.get("/metrics").text
    emitted = {
        sample.name for family in text_string_to_metric_families(text) for sample in family.samples
    }

    expressions = [
        target["expr"]
        for panel in json.loads(Path(DASHBOARD).read_text())["panels"]
        for target in panel.get("targets", [])
    ]
    queried = {name for expr in expressions for name in re.findall(r"\bturnout_[a-z_]+", expr)}
    assert queried, "the dashboard queries no turnout metric"
    assert queried <= emitted, (
        f"panels query metrics the gateway never emitted: {queried - emitted}"
    )


@pytest.mark.parametrize(
    "timestamp",
    [0.0, 1764107042.9995, 1764107042.0004999, 1764107042.9999996, 1137925102.3339994, time.time()],
)
def test_the_log_time_is_what_datetime_writes(timestamp: float) -> None:
    expected = datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="milliseconds")
    assert utc_time(timestamp) == expected
