"""observability/stats.py: the summary of two scrapes (counts, rates, quantiles from buckets), its
rendering, and `run_stats` against a real HTTP server."""

from __future__ import annotations

import io
import math
import re
from collections.abc import Iterator

import pytest
from conftest import ServerThread, free_port
from rich.console import Console
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from test_metrics import (
    CLAUDE,
    MINI,
    all_failed,
    decision,
    failed_over,
    guard_blocked,
    rate_limited,
    routed,
    streamed,
    turnout_gateway,
)

from turnout.observability.metrics import Metrics
from turnout.observability.record import RequestRecord
from turnout.observability.stats import (
    Scrape,
    StatsError,
    metrics_url,
    parse_scrape,
    quantile,
    render,
    run_stats,
    summarize,
)
from turnout.routing.embedded import EmbeddedRouter

INF = math.inf


def snapshot(metrics: Metrics) -> Scrape:
    return parse_scrape(metrics.exposition()[0].decode())


def with_latency(record: RequestRecord, ms: float) -> RequestRecord:
    record.latency_ms = ms
    return record


@pytest.fixture
def scrapes() -> tuple[Scrape, Scrape]:
    """Before: a routed and a rate-limited request. After 10 s: a stream, a failover, a refused
    decision, a routing decision and a request every upstream failed."""
    metrics = Metrics()
    metrics.observe(routed())
    metrics.observe(rate_limited())
    before = snapshot(metrics)
    for make in (streamed, failed_over, guard_blocked, decision, all_failed):
        metrics.observe(make())
    metrics.request_started("proxy", stream=False)
    metrics.request_started("proxy", stream=True)
    return before, snapshot(metrics)


# ---------------------------------------------------------------- quantiles from buckets


def test_quantile_interpolates_within_the_bucket_like_histogram_quantile() -> None:
    buckets = [(0.1, 10.0), (0.5, 60.0), (1.0, 100.0), (INF, 100.0)]

    assert quantile(0.5, buckets) == pytest.approx(0.1 + 0.4 * 40 / 50)
    assert quantile(0.99, buckets) == pytest.approx(0.5 + 0.5 * 39 / 40)
    assert quantile(0.05, buckets) == pytest.approx(0.05)  # the first bucket starts at 0


def test_quantile_in_the_inf_bucket_is_the_highest_finite_bound() -> None:
    assert quantile(0.99, [(1.0, 1.0), (INF, 2.0)]) == 1.0


def test_quantile_without_observations_is_none() -> None:
    assert quantile(0.5, []) is None
    assert quantile(0.5, [(1.0, 0.0), (INF, 0.0)]) is None


# ---------------------------------------------------------------- the summary


def test_summary_counts_and_rates(scrapes: tuple[Scrape, Scrape]) -> None:
    summary = summarize(*scrapes, seconds=10.0)

    assert summary.recent
    assert summary.requests.total == 7
    assert summary.requests.per_second == pytest.approx(0.5)
    routes = {c.name: (c.total, c.per_second) for c in summary.by_route}
    assert routes == {"code_generation": (3, pytest.approx(0.2)), "none": (4, pytest.approx(0.3))}
    models = {c.name: c.total for c in summary.by_model}
    assert models == {CLAUDE: 2, MINI: 1, "none": 4}
    assert summary.by_model[0].name == "none"  # largest first
    assert summary.errors.total == 1  # the 502
    assert summary.error_rate == pytest.approx(1 / 5)  # of the 5 requests in the interval
    assert summary.input_tokens.total == 1320
    assert summary.output_tokens.total == 680
    assert summary.input_tokens.per_second == pytest.approx(120.0)  # (1000 + 200) / 10 s
    assert summary.cost_usd.total == pytest.approx(0.0016 + 0.00045 + 0.0021)
    assert summary.cost_usd.per_second == pytest.approx((0.00045 + 0.0021) / 10)
    assert {c.name: c.total for c in summary.fallbacks} == {"timeout": 1}
    assert {c.name: c.total for c in summary.decisions} == {"embedded": 4, "llm": 1}
    assert {c.name: c.total for c in summary.rejections} == {"rate_limit": 1, "guardrail": 1}
    assert {c.name: c.total for c in summary.upstream} == {
        "answered": 3,
        "retryable": 2,
        "unreachable": 1,
        "rate_limited": 1,
    }
    assert (summary.in_flight_requests, summary.in_flight_streams) == (1, 1)


def test_summary_quantiles_cover_the_interval(scrapes: tuple[Scrape, Scrape]) -> None:
    summary = summarize(*scrapes, seconds=10.0)

    # In the interval, proxied: 4.2 s, 8.4 s and 0.12 s; (routed 1.5 s and the 429 were before.)
    proxy = summary.latency["proxy"]
    assert proxy.p50 == pytest.approx(2.5 + 2.5 * (1.5 - 1) / 1)  # rank 1.5 in the (2.5, 5] bucket
    assert proxy.p99 is not None and 5 < proxy.p99 <= 10
    decisions = summary.latency["decision"]
    assert decisions.p50 is not None and decisions.p50 <= 0.01
    assert summary.ttft.p50 == pytest.approx(0.25 + 0.25 * 0.5)  # 0.35 s, in (0.25, 0.5]


def test_summary_without_new_requests_covers_all_time(scrapes: tuple[Scrape, Scrape]) -> None:
    _, after = scrapes
    summary = summarize(after, after, seconds=5.0)

    assert not summary.recent
    assert summary.requests.per_second == 0
    assert summary.requests.total == 7
    assert summary.error_rate == pytest.approx(1 / 7)
    assert summary.latency["proxy"].p50 is not None
    assert summary.ttft.p50 == pytest.approx(0.375)


def test_summary_after_a_restart_counts_from_the_restart(scrapes: tuple[Scrape, Scrape]) -> None:
    _, old = scrapes
    restarted = Metrics()  # a new process: the same series, created anew
    restarted.observe(routed())
    summary = summarize(old, snapshot(restarted), seconds=2.0)

    assert summary.requests.total == 1
    assert summary.requests.per_second == pytest.approx(0.5)
    assert summary.input_tokens.per_second == pytest.approx(60.0)


def test_summary_of_an_idle_gateway() -> None:
    idle = snapshot(Metrics())
    summary = summarize(idle, idle, seconds=1.0)

    assert summary.requests.total == 0 and summary.error_rate is None
    assert summary.latency == {} and summary.ttft.p50 is None
    render(summary)  # no crash on empty tables


def test_parse_scrape_refuses_other_metrics() -> None:
    with pytest.raises(StatsError, match="not a turnout"):
        parse_scrape("# TYPE http_requests counter\nhttp_requests_total 3\n")
    with pytest.raises(StatsError):
        parse_scrape("<html><body>hello</body></html>")


def test_render_shows_the_numbers(scrapes: tuple[Scrape, Scrape]) -> None:
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(render(summarize(*scrapes, seconds=10.0), "http://gw:12000/metrics"))
    text = console.export_text()

    assert "http://gw:12000/metrics" in text
    assert "0.50/s" in text  # requests per second
    assert "20.0%" in text  # error rate
    assert "code_generation" in text and CLAUDE in text
    assert "timeout" in text and "rate_limit" in text
    assert "$0.0042" in text  # cost so far
    assert "375 ms" in text  # time to first token p50: 0.35 s, interpolated in (0.25, 0.5]


def test_metrics_url() -> None:
    assert metrics_url("http://gw:12000") == "http://gw:12000/metrics"
    assert metrics_url("http://gw:12000/") == "http://gw:12000/metrics"
    assert metrics_url("localhost:12000") == "http://localhost:12000/metrics"
    assert metrics_url("http://gw:12000/metrics") == "http://gw:12000/metrics"
    assert metrics_url("https://gw/internal/prom") == "https://gw/internal/prom"  # metrics_path


# ---------------------------------------------------------------- run_stats over HTTP


@pytest.fixture
def gateway() -> Iterator[str]:
    """A /metrics that counts one more routed request on each scrape."""
    metrics = Metrics()

    async def exposition(request: Request) -> Response:
        metrics.observe(routed())
        body, content_type = metrics.exposition()
        return Response(body, headers={"content-type": content_type})

    app = Starlette(routes=[Route("/metrics", exposition)])
    with ServerThread(app, free_port()) as server:
        yield server.url


def run(url: str, once: bool = True, **kwargs) -> tuple[int, str]:
    out = io.StringIO()
    code = run_stats(url, 0.05, once, console=Console(file=out, width=120), **kwargs)
    return code, out.getvalue()


def test_run_stats_once_prints_the_summary(gateway: str) -> None:
    code, text = run(gateway)

    assert code == 0
    assert f"turnout {gateway}/metrics" in text
    assert re.search(r"requests\W+2\W", text)  # the second scrape saw two requests
    assert "code_generation" in text and CLAUDE in text
    assert "$0.0032" in text  # 2 × 0.0016


def test_run_stats_refreshes_until_interrupted(gateway: str) -> None:
    calls = []

    def sleep(seconds: float) -> None:
        calls.append(seconds)
        if len(calls) == 3:
            raise KeyboardInterrupt

    code, text = run(gateway, once=False, sleep=sleep)

    assert code == 0
    assert text.count(f"turnout {gateway}/metrics") == 2  # two summaries, then Ctrl-C


def test_run_stats_on_an_unreachable_gateway(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, text = run(url)

    assert code == 1 and text == ""
    err = capsys.readouterr().err
    assert f"turnout stats: cannot reach {url}/metrics" in err


def test_run_stats_on_something_else(capsys: pytest.CaptureFixture[str]) -> None:
    async def other(request: Request) -> Response:
        return PlainTextResponse("# TYPE up gauge\nup 1\n")

    app = Starlette(routes=[Route("/metrics", other)])
    with ServerThread(app, free_port()) as server:
        code, _ = run(server.url)
        missing, _ = run(server.url + "/nope")

    assert code == 1 and missing == 1
    err = capsys.readouterr().err
    assert "this is not a turnout gateway's /metrics" in err
    assert "answered 404" in err


def test_run_stats_on_a_gateway_with_metrics_off(
    router: EmbeddedRouter, capsys: pytest.CaptureFixture[str]
) -> None:
    with turnout_gateway(router, {"observability": {"metrics": False}}) as (client, _, _):
        url = str(client.base_url).rstrip("/")
        code, text = run(url)

    assert code == 1 and text == ""
    err = " ".join(capsys.readouterr().err.split())  # as one line, however the console wrapped
    assert f"turnout stats: {url}/metrics answered 404" in err
    assert "the metrics endpoint was not found" in err
    assert "metrics may be off (observability.metrics: false)" in err
    assert "Traceback" not in err
