"""observability/metrics.py: what a finished request's record becomes in /metrics, bounded label
sets, metrics turned off (`observability.metrics: false`), and the Grafana dashboard's queries
against what the exposition really holds."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import yaml
from conftest import ServerThread, free_port
from fakes import FakeProvider, Reply
from prometheus_client.parser import text_string_to_metric_families

from turnout.config import parse_config
from turnout.observability.metrics import (
    BATCH,
    ENDPOINTS,
    FALLBACK_REASONS,
    GUARD_ACTIONS,
    GUARDS,
    KINDS,
    OUTCOMES,
    REJECTIONS,
    ROUTERS,
    Metrics,
    NoMetrics,
    build_metrics,
)
from turnout.observability.record import Attempt, RequestRecord
from turnout.observability.telemetry import Telemetry
from turnout.routing.decision import RoutingService
from turnout.routing.embedded import EmbeddedRouter
from turnout.server import runner
from turnout.server.app import create_app

ROOT = Path(__file__).resolve().parent.parent
DASHBOARD = ROOT / "deploy" / "grafana" / "turnout.json"

CLAUDE = "anthropic/claude-sonnet-4-20250514"
GPT4O = "openai/gpt-4o"
MINI = "openai/gpt-4o-mini"

Labels = frozenset[tuple[str, str]]


def routed() -> RequestRecord:
    """A proxied chat request that matched a route and was answered by its first model."""
    record = RequestRecord(
        endpoint="/v1/chat/completions",
        api="openai_chat",
        kind="proxy",
        trace_id="a" * 32,
        client_key="support-bot",
        requested_model="my-secret-model-name",
        route="code_generation",
        router="embedded",
        router_latency_ms=4.0,
        attempts=[Attempt(CLAUDE, 200, 1400.0, "answered")],
        model=CLAUDE,
        guard_events=["pii.input.redact"],
        input_tokens=120,
        output_tokens=80,
        cost_usd=0.0016,
    )
    record.status, record.latency_ms = 200, 1500.0
    return record


def streamed() -> RequestRecord:
    """A streamed Messages request, decided by the LLM router, no route."""
    record = RequestRecord(
        endpoint="/v1/messages",
        api="anthropic_messages",
        kind="proxy",
        trace_id="b" * 32,
        client_key="analytics",
        stream=True,
        router="llm",
        router_latency_ms=180.0,
        attempts=[Attempt(MINI, 200, 4000.0, "answered")],
        model=MINI,
        input_tokens=1000,
        output_tokens=500,
        cost_usd=0.00045,
        ttft_ms=350.0,
    )
    record.status, record.latency_ms = 200, 4200.0
    return record


def failed_over() -> RequestRecord:
    """GPT-4o answered a 503, then the next model was unreachable, then Claude answered; the LLM
    router had timed out, so the embedded router decided."""
    record = RequestRecord(
        endpoint="/v1/responses",
        api="openai_responses",
        kind="proxy",
        trace_id="c" * 32,
        client_key="support-bot",
        route="code_generation",
        router="embedded",
        router_fallback="timeout",
        router_latency_ms=1005.0,
        attempts=[
            Attempt(GPT4O, 503, 300.0, "retryable"),
            Attempt(MINI, 0, 5000.0, "unreachable"),
            Attempt(CLAUDE, 200, 2000.0, "answered"),
        ],
        model=CLAUDE,
        input_tokens=200,
        output_tokens=100,
        cost_usd=0.0021,
    )
    record.status, record.latency_ms = 200, 8400.0
    return record


def rate_limited() -> RequestRecord:
    record = RequestRecord(
        endpoint="/v1/chat/completions",
        api="openai_chat",
        kind="proxy",
        trace_id="d" * 32,
        client_key="analytics",
        rejection="rate_limit",
    )
    record.status, record.latency_ms = 429, 1.0
    return record


def guard_blocked() -> RequestRecord:
    """A routing decision request refused by the prompt-injection guard."""
    record = RequestRecord(
        endpoint="/routing/v1/chat/completions",
        api="openai_chat",
        kind="decision",
        trace_id="e" * 32,
        client_key="support-bot",
        rejection="guardrail",
        guard_events=["prompt_injection.block"],
    )
    record.status, record.latency_ms = 400, 3.0
    return record


def decision() -> RequestRecord:
    record = RequestRecord(
        endpoint="/routing/v1/messages",
        api="anthropic_messages",
        kind="decision",
        trace_id="f" * 32,
        route="code_generation",
        router="embedded",
        router_latency_ms=5.0,
    )
    record.status, record.latency_ms = 200, 6.0
    return record


def all_failed() -> RequestRecord:
    """GPT-4o was at its rate limit in turnout (skipped, not called) and GPT-4o-mini answered a
    502: the client gets the last upstream status."""
    record = RequestRecord(
        endpoint="/v1/chat/completions",
        api="openai_chat",
        kind="proxy",
        trace_id="0" * 32,
        router="embedded",
        router_latency_ms=4.0,
        attempts=[Attempt(GPT4O, 429, 0.0, "rate_limited"), Attempt(MINI, 502, 100.0, "retryable")],
    )
    record.status, record.latency_ms = 502, 120.0
    return record


def provider_refused() -> RequestRecord:
    """The provider refused the request with a 400: returned as it is, no other model tried."""
    record = RequestRecord(
        endpoint="/v1/chat/completions",
        api="openai_chat",
        kind="proxy",
        trace_id="1" * 32,
        router="embedded",
        router_latency_ms=4.0,
        attempts=[Attempt(GPT4O, 400, 150.0, "failed")],
    )
    record.status, record.latency_ms = 400, 200.0
    return record


RECORDS = (
    routed,
    streamed,
    failed_over,
    rate_limited,
    guard_blocked,
    decision,
    all_failed,
    provider_refused,
)


def scrape(metrics: Metrics) -> dict[tuple[str, Labels], float]:
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def value(samples: dict[tuple[str, Labels], float], name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(
        v
        for (n, ls), v in samples.items()
        if n == name and all((k, x) in ls for k, x in labels.items())
    )


def label_values(samples: dict[tuple[str, Labels], float], label: str) -> set[str]:
    return {dict(ls)[label] for (_, ls) in samples if label in dict(ls)}


@pytest.fixture
def observed() -> Metrics:
    metrics = Metrics()
    for make in RECORDS:
        metrics.observe(make())
    metrics.request_started("proxy", stream=False)  # one stream still going
    metrics.request_started("proxy", stream=True)
    metrics.request_started("decision", stream=False)
    metrics.request_ended("decision", stream=False)
    metrics.ratelimit_storage_unavailable()
    return metrics


def test_requests_are_counted_by_endpoint_status_model_route_and_kind(observed: Metrics) -> None:
    s = scrape(observed)

    assert value(s, "turnout_requests_total") == len(RECORDS)
    assert (
        value(
            s,
            "turnout_requests_total",
            endpoint="/v1/chat/completions",
            kind="proxy",
            status="200",
            model=CLAUDE,
            route="code_generation",
        )
        == 1
    )
    assert value(s, "turnout_requests_total", route="code_generation") == 3
    assert value(s, "turnout_requests_total", model=CLAUDE) == 2
    assert value(s, "turnout_requests_total", model="none") == 5
    assert value(s, "turnout_requests_total", status="429") == 1
    assert value(s, "turnout_requests_total", status="502", route="none") == 1
    assert value(s, "turnout_requests_total", kind="decision") == 2


def test_latency_histogram_is_in_seconds_by_endpoint_kind_and_stream(observed: Metrics) -> None:
    s = scrape(observed)
    name = "turnout_request_duration_seconds"

    assert value(s, f"{name}_count") == len(RECORDS)
    assert value(s, f"{name}_sum", endpoint="/v1/messages", stream="true") == pytest.approx(4.2)
    assert value(s, f"{name}_bucket", endpoint="/v1/messages", le="5.0") == 1
    assert value(s, f"{name}_bucket", endpoint="/v1/messages", le="2.5") == 0
    assert value(s, f"{name}_count", kind="decision", stream="false") == 2
    # buckets reach minutes for long generations
    assert value(s, f"{name}_bucket", le="600.0") == len(RECORDS)


def test_time_to_first_token_is_observed_for_streams_only(observed: Metrics) -> None:
    s = scrape(observed)
    name = "turnout_time_to_first_token_seconds"

    assert value(s, f"{name}_count") == 1
    assert value(s, f"{name}_sum", model=MINI) == pytest.approx(0.35)
    assert value(s, f"{name}_bucket", model=MINI, le="0.5") == 1
    assert value(s, f"{name}_bucket", model=MINI, le="0.25") == 0
    assert value(s, f"{name}_bucket", le="30.0") == 1


def test_tokens_and_cost_by_model_and_client_key(observed: Metrics) -> None:
    s = scrape(observed)

    assert value(s, "turnout_tokens_total", model=CLAUDE, type="input") == 320
    assert value(s, "turnout_tokens_total", model=CLAUDE, type="output") == 180
    assert value(s, "turnout_tokens_total", client_key="analytics", model=MINI) == 1500
    assert value(s, "turnout_cost_usd_total", model=CLAUDE, client_key="support-bot") == (
        pytest.approx(0.0037)
    )
    assert value(s, "turnout_cost_usd_total") == pytest.approx(0.0037 + 0.00045)


def test_router_decisions_latency_and_fallbacks(observed: Metrics) -> None:
    s = scrape(observed)

    assert value(s, "turnout_router_decisions_total") == 6  # not the two refused requests
    assert value(s, "turnout_router_decisions_total", router="embedded") == 5
    assert value(s, "turnout_router_decisions_total", router="llm", route="none") == 1
    assert (
        value(s, "turnout_router_decisions_total", router="embedded", route="code_generation") == 3
    )
    assert value(s, "turnout_router_duration_seconds_sum", router="llm") == pytest.approx(0.18)
    assert value(s, "turnout_router_duration_seconds_bucket", router="embedded", le="0.005") == 4
    assert value(s, "turnout_router_fallbacks_total", reason="timeout") == 1
    assert value(s, "turnout_router_fallbacks_total") == 1


def test_upstream_attempts_by_model_and_outcome_and_errors_by_status(observed: Metrics) -> None:
    s = scrape(observed)

    assert value(s, "turnout_upstream_attempts_total") == 8
    assert value(s, "turnout_upstream_attempts_total", model=CLAUDE, outcome="answered") == 2
    assert value(s, "turnout_upstream_attempts_total", model=GPT4O, outcome="retryable") == 1
    assert value(s, "turnout_upstream_attempts_total", model=MINI, outcome="unreachable") == 1
    assert value(s, "turnout_upstream_attempts_total", model=MINI, outcome="retryable") == 1
    assert value(s, "turnout_upstream_attempts_total", model=GPT4O, outcome="rate_limited") == 1
    assert value(s, "turnout_upstream_attempts_total", model=GPT4O, outcome="failed") == 1
    # errors: what providers answered (or did not); turnout's own rate limit is not one
    assert value(s, "turnout_upstream_errors_total") == 4
    assert value(s, "turnout_upstream_errors_total", model=GPT4O, status="503") == 1
    assert value(s, "turnout_upstream_errors_total", model=GPT4O, status="400") == 1
    assert value(s, "turnout_upstream_errors_total", model=GPT4O, status="429") == 0
    assert value(s, "turnout_upstream_errors_total", model=MINI, status="0") == 1
    assert value(s, "turnout_upstream_errors_total", model=MINI, status="502") == 1


def test_rejections_and_guardrail_events(observed: Metrics) -> None:
    s = scrape(observed)

    assert value(s, "turnout_rejections_total", reason="rate_limit", client_key="analytics") == 1
    assert value(s, "turnout_rejections_total", reason="guardrail", client_key="support-bot") == 1
    assert value(s, "turnout_rejections_total") == 2
    assert value(s, "turnout_guardrail_events_total", guard="prompt_injection", action="block") == 1
    assert value(s, "turnout_guardrail_events_total", guard="pii.input", action="redact") == 1


def test_in_flight_gauges_and_storage_counter(observed: Metrics) -> None:
    s = scrape(observed)

    assert value(s, "turnout_requests_in_flight", kind="proxy") == 1
    assert value(s, "turnout_requests_in_flight", kind="decision") == 0
    assert value(s, "turnout_streams_in_flight", kind="proxy") == 1
    assert value(s, "turnout_ratelimit_storage_unavailable_total") == 1

    observed.request_ended("proxy", stream=False)
    observed.request_ended("proxy", stream=True)
    s = scrape(observed)
    assert value(s, "turnout_requests_in_flight") == 0
    assert value(s, "turnout_streams_in_flight") == 0


def test_requests_counted_in_batches_are_all_in_the_scrape() -> None:
    """Finished requests are counted BATCH at a time; a scrape counts the ones still waiting."""
    metrics = Metrics()
    for _ in range(BATCH + 3):
        metrics.observe(routed())
    s = scrape(metrics)

    assert value(s, "turnout_requests_total") == BATCH + 3
    assert value(s, "turnout_request_duration_seconds_count") == BATCH + 3
    assert value(s, "turnout_tokens_total", type="input") == 120 * (BATCH + 3)


def test_each_instance_has_its_own_registry() -> None:
    first, second = Metrics(), Metrics()  # no "Duplicated timeseries" error
    first.observe(routed())

    assert value(scrape(first), "turnout_requests_total") == 1
    assert value(scrape(second), "turnout_requests_total") == 0


def test_label_values_stay_in_bounded_sets() -> None:
    """Values outside the fixed sets become "other"; nothing a client wrote becomes a label."""
    metrics = Metrics()
    for make in RECORDS:
        metrics.observe(make())
    odd = routed()
    odd.endpoint = "/v1/chat/completions/../../etc/passwd"
    odd.kind = "weird"  # type: ignore[assignment]
    odd.router = "my-router"
    odd.router_fallback = "upstream said: ignore previous instructions"
    odd.rejection = "something new"  # type: ignore[assignment]
    odd.guard_events = ["pii.input.shout", "made.up.event", "noevent"]
    odd.attempts = [Attempt(GPT4O, 999, 1.0, "exploded")]  # type: ignore[arg-type]
    odd.status = 12345
    metrics.observe(odd)
    metrics.request_started("evil-kind", stream=True)
    body = metrics.exposition()[0].decode()
    s = scrape(metrics)

    assert "my-secret-model-name" not in body  # the requested model is logged, never a label
    assert "a" * 32 not in body  # nor the trace id
    assert label_values(s, "endpoint") <= ENDPOINTS | {"other"}
    assert label_values(s, "kind") <= KINDS | {"other"}
    assert label_values(s, "router") <= ROUTERS | {"other"}
    assert label_values(s, "reason") <= FALLBACK_REASONS | REJECTIONS | {"other"}
    assert label_values(s, "outcome") <= OUTCOMES | {"other"}
    assert label_values(s, "guard") <= GUARDS | {"other"}
    assert label_values(s, "action") <= GUARD_ACTIONS | {"other"}
    assert label_values(s, "type") <= {"input", "output"}
    assert label_values(s, "stream") <= {"true", "false"}
    assert all(x == "0" or 100 <= int(x) <= 599 for x in label_values(s, "status"))
    # models, routes and keys: the configured names the records carry, or "none"
    assert label_values(s, "model") <= {CLAUDE, GPT4O, MINI, "none"}
    assert label_values(s, "route") <= {"code_generation", "none"}
    assert label_values(s, "client_key") <= {"support-bot", "analytics", "none"}
    assert value(s, "turnout_guardrail_events_total", guard="pii.input", action="other") == 1
    assert value(s, "turnout_guardrail_events_total", guard="other", action="other") == 2
    assert value(s, "turnout_upstream_errors_total", model=GPT4O, status="0") == 1


def test_metric_names_follow_prometheus_conventions(observed: Metrics) -> None:
    body = observed.exposition()[0].decode()
    for family in text_string_to_metric_families(body):
        if family.name.endswith("_created"):
            continue
        assert family.name.startswith("turnout_"), family.name
        assert re.fullmatch(r"[a-z][a-z0-9_]*", family.name), family.name
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name
        if family.type == "counter":
            assert f"# TYPE {family.name}_total counter" in body


def test_workers_share_counts_through_the_multiprocess_directory(tmp_path: Path) -> None:
    """Each worker writes to PROMETHEUS_MULTIPROC_DIR; any of them answers with the sum."""
    script = textwrap.dedent(
        """
        import sys
        from turnout.observability.metrics import Metrics, multiprocess
        from turnout.observability.record import RequestRecord
        assert multiprocess()
        metrics = Metrics()
        record = RequestRecord(endpoint="/v1/chat/completions", api="openai_chat",
                               kind="proxy", trace_id="x")
        record.finish(200)
        metrics.observe(record)
        metrics.request_started("proxy", stream=False)
        sys.stdout.write(metrics.exposition()[0].decode())
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    outputs = [
        subprocess.run(
            [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
        ).stdout
        for _ in range(2)
    ]
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(outputs[-1])
        for s in family.samples
    }

    assert value(samples, "turnout_requests_total", status="200") == 2
    assert value(samples, "turnout_request_duration_seconds_count") == 2
    assert value(samples, "turnout_requests_in_flight", kind="proxy") == 2


# ---------------------------------------------------------------- metrics off


def test_no_metrics_keeps_no_state_and_exposes_nothing() -> None:
    """Every method of a NoMetrics, the event methods too, returns without counting."""
    off, on = build_metrics(False), build_metrics(True)
    assert type(off) is NoMetrics and not off.served
    assert type(on) is Metrics and on.served

    for make in RECORDS:
        off.observe(make())
    off.request_started("proxy", stream=False)
    off.request_started("proxy", stream=True)
    off.request_ended("proxy", stream=True)
    off.router_decision("llm", 5.0, "timeout", route="code_generation", escalated=True)
    off.guard_event("pii.input.redact")
    off.upstream_attempt(GPT4O, "retryable", status=503)
    off.ratelimit_storage_unavailable()

    assert vars(off) == {}  # no families, no pending records, no registry
    assert off.exposition()[0] == b""


@pytest.mark.parametrize("enabled", [True, False])
def test_no_metrics_writes_no_multiprocess_files(tmp_path: Path, enabled: bool) -> None:
    """With workers sharing PROMETHEUS_MULTIPROC_DIR, counting metrics write files there as
    requests come and go; metrics turned off write none."""
    script = textwrap.dedent(
        f"""
        from turnout.observability.metrics import build_metrics, multiprocess
        from turnout.observability.record import RequestRecord
        assert multiprocess()
        metrics = build_metrics({enabled})
        record = RequestRecord(endpoint="/v1/chat/completions", api="openai_chat",
                               kind="proxy", trace_id="x")
        record.finish(200)
        metrics.request_started("proxy", stream=False)
        metrics.request_ended("proxy", stream=False)
        metrics.observe(record)
        """
    )
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True)

    assert bool(list(tmp_path.iterdir())) is enabled


# Anthropic's id header is request-id, so the client's x-request-id is turnout's own.
GATEWAY = """
version: v0.4.0
model_providers:
  - model: anthropic/claude-sonnet-4-20250514
    base_url: {anthropic}
    access_key: test-key
    default: true
"""
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"


def message(**extra: object) -> dict:
    return {
        "model": "claude-sonnet-4-20250514",
        "max_tokens": 50,
        "messages": [{"role": "user", "content": "hi"}],
        **extra,
    }


@contextmanager
def turnout_gateway(
    router: EmbeddedRouter, sections: dict[str, object] | None = None
) -> Iterator[tuple[httpx.Client, Telemetry, FakeProvider]]:
    """A real gateway, with these config `sections` (e.g. `observability`) added, in front of a
    fake Anthropic."""
    with FakeProvider("anthropic") as upstream:
        data = {**yaml.safe_load(GATEWAY.format(anthropic=upstream.url)), **(sections or {})}
        config = parse_config(data, env={})
        service = RoutingService(config, router)
        service.prepare()
        telemetry = Telemetry.from_config(config)  # what create_app would build itself
        with (
            ServerThread(create_app(service, telemetry=telemetry), free_port()) as server,
            httpx.Client(base_url=server.url, timeout=20) as client,
        ):
            yield client, telemetry, upstream


def access_log_lines(capsys: pytest.CaptureFixture[str], count: int) -> list[dict]:
    """The access log's lines on stdout, once `count` are written (they are written in batches)."""
    out, deadline = "", time.monotonic() + 5
    while len(out.splitlines()) < count and time.monotonic() < deadline:
        time.sleep(0.02)
        out += capsys.readouterr().out
    return [json.loads(line) for line in out.splitlines()]


def test_with_metrics_off_the_metrics_path_is_a_404_and_requests_are_served(
    router: EmbeddedRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    with turnout_gateway(router, {"observability": {"metrics": False}}) as (
        client,
        telemetry,
        upstream,
    ):
        assert type(telemetry.metrics) is NoMetrics
        upstream.queue(Reply("fine"), Reply("fine", chunks=3))
        whole = client.post("/v1/messages", json=message(), headers={"traceparent": TRACEPARENT})
        with client.stream("POST", "/v1/messages", json=message(stream=True)) as streamed:
            assert "message_stop" in "".join(streamed.iter_text())
        scraped = client.get("/metrics")
        lines = access_log_lines(capsys, 2)

    assert whole.status_code == 200 and whole.headers["x-request-id"] == TRACE_ID
    assert streamed.status_code == 200 and re.fullmatch(
        r"[0-9a-f]{32}", streamed.headers["x-request-id"]
    )
    assert [(line["request_id"], line["stream"]) for line in lines] == [
        (TRACE_ID, False),
        (streamed.headers["x-request-id"], True),
    ]
    # the gateway's usual 404 for a path it does not serve, in its error envelope
    assert scraped.status_code == 404
    assert scraped.json()["error"]["message"] == "GET /metrics: Not Found"
    assert vars(telemetry.metrics) == {}  # two requests, one a stream: nothing counted


def test_with_metrics_on_by_default_the_metrics_path_counts_the_request(
    router: EmbeddedRouter,
) -> None:
    with turnout_gateway(router) as (client, telemetry, upstream):
        assert type(telemetry.metrics) is Metrics
        upstream.queue(Reply("fine"))
        answered = client.post("/v1/messages", json=message())
        scraped = client.get("/metrics")

    assert answered.status_code == 200 and scraped.status_code == 200
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert value(samples, "turnout_requests_total", endpoint="/v1/messages", status="200") == 1
    assert value(samples, "turnout_requests_in_flight") == 0


def test_rate_limit_storage_that_cannot_be_reached_is_counted(router: EmbeddedRouter) -> None:
    sections = {
        "ratelimits": [{"model": "*", "limit": {"requests": 100, "unit": "minute"}}],
        "governance": {
            "storage": {
                "type": "redis",
                "url": f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
                "on_unavailable": "allow",
            }
        },
    }
    with turnout_gateway(router, sections) as (client, _, upstream):
        upstream.queue(Reply("fine"))
        answered = client.post("/v1/messages", json=message())
        scraped = client.get("/metrics")

    assert answered.status_code == 200  # allowed while the storage is down
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(scraped.text)
        for s in family.samples
    }
    assert value(samples, "turnout_ratelimit_storage_unavailable_total") >= 1


@pytest.mark.parametrize("enabled", [True, False])
def test_workers_share_a_metrics_directory_only_when_metrics_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, enabled: bool
) -> None:
    """`turnout up --workers N` sets up PROMETHEUS_MULTIPROC_DIR for the workers, and removes it
    afterwards; with metrics off, not at all."""
    seen: list[str | None] = []

    class Workers:  # uvicorn's Multiprocess, minus the processes
        def __init__(self, config: object, sockets: list[socket.socket]) -> None:
            pass

        def run(self) -> None:
            seen.append(os.environ.get(runner.METRICS_DIRECTORY_VARIABLE))

    monkeypatch.setattr("uvicorn.supervisors.Multiprocess", Workers)
    monkeypatch.delenv(runner.METRICS_DIRECTORY_VARIABLE, raising=False)
    monkeypatch.setenv(runner.WORKER_CONFIG_VARIABLE, "")  # serve_workers sets it; undone after
    config = yaml.safe_load(GATEWAY.format(anthropic="http://127.0.0.1:9"))
    config["observability"] = {"metrics": enabled}
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))

    with socket.socket() as listener:
        runner.serve_workers(str(path), listener, 2, 1)

    (directory,) = seen
    assert (directory is not None) is enabled
    assert runner.METRICS_DIRECTORY_VARIABLE not in os.environ


# ---------------------------------------------------------------- the Grafana dashboard


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text("utf-8"))


def panels() -> list[dict]:
    return [p for p in dashboard()["panels"] if p["type"] != "row"]


def expressions() -> list[str]:
    return [t["expr"] for p in panels() for t in p["targets"]]


def referenced_metrics(expr: str) -> set[str]:
    # label names and values inside {...} and the grouping labels are not metric names
    without_matchers = re.sub(r"\{[^}]*\}", "", expr)
    return set(re.findall(r"\bturnout_[a-z0-9_]+\b", without_matchers))


def test_dashboard_queries_only_metrics_the_exposition_emits(observed: Metrics) -> None:
    """The "done when" check: each metric a PromQL expression names has samples after the
    fixture requests, and its family is one turnout declares."""
    body = observed.exposition()[0].decode()
    families = {f.name: f.type for f in text_string_to_metric_families(body)}
    sample_names = {name for name, _ in scrape(observed)}
    referenced = set().union(*(referenced_metrics(e) for e in expressions()))

    assert referenced, "no turnout_ metric in the dashboard"
    for name in sorted(referenced):
        assert name in sample_names, f"{name}: no such series after the fixture requests"
        family = re.sub(r"_(bucket|count|sum)$", "", name)
        if family != name:
            assert families.get(family) == "histogram", name
        else:
            family = name.removesuffix("_total")
            assert families.get(family) in {"counter", "gauge"}, name
    # every family turnout emits is on the dashboard
    emitted = {
        name for name, kind in families.items() if kind != "gauge" or not name.endswith("_created")
    }
    shown = {re.sub(r"_(bucket|count|sum|total)$", "", n) for n in referenced}
    assert emitted <= shown, emitted - shown


def test_dashboard_groups_and_filters_by_labels_the_metrics_have(observed: Metrics) -> None:
    labels_of: dict[str, set[str]] = {}
    for name, labels in scrape(observed):
        labels_of.setdefault(name, set()).update(k for k, _ in labels)
    for expr in expressions():
        available = set().union(*(labels_of[m] for m in referenced_metrics(expr)))
        grouped = {
            label.strip()
            for group in re.findall(r"\bby \(([^)]*)\)", expr)
            for label in group.split(",")
        }
        matched = set(re.findall(r"(\w+)=~?\"", expr))
        assert grouped | matched <= available, (expr, (grouped | matched) - available)
        if "histogram_quantile" in expr:
            assert "le" in grouped, expr


def test_dashboard_shape() -> None:
    board = dashboard()
    assert board["schemaVersion"] == 39
    (variable,) = [v for v in board["templating"]["list"] if v["name"] == "DS_PROMETHEUS"]
    assert (variable["type"], variable["query"]) == ("datasource", "prometheus")
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    cells: set[tuple[int, int]] = set()
    for panel in board["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        area = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
    for panel in panels():
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}"
        assert panel["targets"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${DS_PROMETHEUS}"
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    titles = " ".join(p["title"].lower() for p in panels())
    for topic in (
        "by route",
        "by model",
        "error rate",
        "latency",
        "first token",
        "tokens",
        "cost",
        "router decisions",
        "fallbacks",
        "router latency",
        "upstream attempts",
        "rejections",
        "guardrail",
        "in flight",
    ):
        assert topic in titles, topic


# ---------------------------------------------------------------- how Prometheus finds the pods


def test_scrape_annotations_and_service_monitor_match_the_manifests() -> None:
    manifests = list(yaml.safe_load_all((ROOT / "deploy/kubernetes/base/turnout.yaml").read_text()))
    (deployment,) = [m for m in manifests if m["kind"] == "Deployment"]
    (service,) = [m for m in manifests if m["kind"] == "Service"]
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    readme = (ROOT / "deploy/grafana/README.md").read_text("utf-8")
    (monitor,) = [
        doc
        for block in re.findall(r"```yaml\n(.*?)```", readme, re.DOTALL)
        if (doc := yaml.safe_load(block)).get("kind") == "ServiceMonitor"
    ]

    assert annotations["prometheus.io/scrape"] == "true"
    assert annotations["prometheus.io/port"] == str(container["ports"][0]["containerPort"])
    assert annotations["prometheus.io/path"] == "/metrics"
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert selector.items() <= service["metadata"]["labels"].items()
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["port"] in {p["name"] for p in service["spec"]["ports"]}
    assert endpoint["path"] == annotations["prometheus.io/path"]
