"""`turnout stats URL`: a live summary of a running gateway, read from its /metrics, for people
without Grafana.

Two scrapes `interval` seconds apart give the rates. Totals count since the gateway (each
worker, or all workers with PROMETHEUS_MULTIPROC_DIR) started. Error rate and latency quantiles
cover the requests of the last interval; when none came in, they cover every request since the
start. Quantiles are estimated from the histogram buckets, the way PromQL's histogram_quantile
does. Computing (`parse_scrape`, `summarize`) is kept apart from rendering (`render`)."""

from __future__ import annotations

import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table

MARKER = "turnout_requests"  # the family that tells turnout's /metrics from any other
SCRAPE_TIMEOUT = 5.0

Labels = frozenset[tuple[str, str]]


class StatsError(Exception):
    """The gateway cannot be read: unreachable, an error status, or not turnout's metrics."""


@dataclass(frozen=True)
class Scrape:
    """One parsed /metrics body: every sample's value by its name and labels."""

    families: frozenset[str]
    samples: dict[tuple[str, Labels], float]

    def select(self, name: str, **match: str) -> Iterable[tuple[Labels, float]]:
        for (sample, labels), value in self.samples.items():
            if sample == name and all((k, v) in labels for k, v in match.items()):
                yield labels, value

    def get(self, name: str, labels: Labels) -> float:
        return self.samples.get((name, labels), 0.0)


def parse_scrape(text: str) -> Scrape:
    """Raises StatsError when the text is not Prometheus text or not turnout's metrics."""
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as exc:  # the parser raises ValueError, IndexError...
        raise StatsError(f"not Prometheus metrics ({exc})") from exc
    names = frozenset(f.name for f in families)
    if MARKER not in names:
        raise StatsError(f"no {MARKER}_total metric: this is not a turnout gateway's /metrics")
    samples = {
        (s.name, frozenset(s.labels.items())): float(s.value) for f in families for s in f.samples
    }
    return Scrape(names, samples)


# ---------------------------------------------------------------------- the summary


@dataclass(frozen=True)
class Count:
    """A counter's total since the start and its rate over the interval."""

    name: str
    total: float
    per_second: float


@dataclass(frozen=True)
class Quantiles:
    p50: float | None  # seconds; None: no observation
    p95: float | None
    p99: float | None


@dataclass(frozen=True)
class Summary:
    seconds: float  # between the two scrapes
    recent: bool  # error rate and quantiles cover the interval (else: since the start)
    requests: Count
    by_route: tuple[Count, ...]
    by_model: tuple[Count, ...]
    errors: Count  # 5xx answers
    error_rate: float | None  # 5xx share of the requests (None: no request)
    latency: dict[str, Quantiles]  # by kind: "proxy", "decision"
    ttft: Quantiles
    input_tokens: Count
    output_tokens: Count
    cost_usd: Count
    decisions: tuple[Count, ...]  # by router
    fallbacks: tuple[Count, ...]  # by reason
    rejections: tuple[Count, ...]  # by reason
    upstream: tuple[Count, ...]  # attempts by outcome
    in_flight_requests: float
    in_flight_streams: float


def _delta(before: Scrape, name: str, labels: Labels, value: float) -> float:
    """A counter's increase (one that went down was reset)."""
    previous = before.get(name, labels)
    return value - previous if value >= previous else value


def _counts(
    before: Scrape, after: Scrape, name: str, by: str | None, seconds: float, **match: str
) -> dict[str, Count]:
    """Totals and rates of counter `name`, summed by label `by` (None: one row)."""
    totals: dict[str, float] = defaultdict(float)
    deltas: dict[str, float] = defaultdict(float)
    for labels, value in after.select(name, **match):
        key = dict(labels).get(by, "") if by else name
        totals[key] += value
        deltas[key] += _delta(before, name, labels, value)
    return {
        key: Count(key, totals[key], deltas[key] / seconds if seconds > 0 else 0.0)
        for key in totals
    }


def _rows(counts: dict[str, Count]) -> tuple[Count, ...]:
    """Largest first; series still at zero (the metrics start fixed label sets at 0) are not rows."""
    rows = [count for count in counts.values() if count.total]
    return tuple(sorted(rows, key=lambda c: (-c.total, c.name)))


def _one(counts: dict[str, Count], name: str) -> Count:
    """The single row of an unsplit counter, named `name`."""
    row = next(iter(counts.values()), Count(name, 0.0, 0.0))
    return Count(name, row.total, row.per_second)


def _buckets(
    before: Scrape, after: Scrape, name: str, recent: bool, **match: str
) -> list[tuple[float, float]]:
    """Cumulative (upper bound, count) of histogram `name`, summed over the matching series:
    the increase over the interval when `recent`, else the totals."""
    counts: dict[float, float] = defaultdict(float)
    for labels, value in after.select(f"{name}_bucket", **match):
        le = float(dict(labels)["le"])
        counts[le] += _delta(before, f"{name}_bucket", labels, value) if recent else value
    return sorted(counts.items())


def quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Estimate the q-quantile from cumulative buckets, as PromQL's histogram_quantile: linear
    within the bucket, the highest finite bound when it falls in +Inf. None: no observation."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if math.isinf(upper):
                return lower
            if count == below:
                return upper
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    return lower


def _quantiles(buckets: list[tuple[float, float]]) -> Quantiles:
    return Quantiles(quantile(0.5, buckets), quantile(0.95, buckets), quantile(0.99, buckets))


def restarted(before: Scrape, after: Scrape) -> bool:
    """Whether the gateway restarted between the scrapes: a series was created anew, or a
    counter went down."""
    for (name, labels), value in after.samples.items():
        previous = before.samples.get((name, labels))
        if previous is None:
            continue
        if name.endswith("_created") and value != previous:
            return True
        if name.endswith(("_total", "_bucket", "_count")) and value < previous:
            return True
    return False


def summarize(before: Scrape, after: Scrape, seconds: float) -> Summary:
    """What happened between two scrapes `seconds` apart (pure: no I/O). After a restart, the
    rates count from the restart."""
    if restarted(before, after):
        before = Scrape(frozenset(), {})

    def counts(name: str, by: str | None = None, **match: str) -> dict[str, Count]:
        return _counts(before, after, name, by, seconds, **match)

    requests = _one(counts("turnout_requests_total"), "requests")
    by_status = counts("turnout_requests_total", "status")
    errors = Count(
        "5xx",
        sum(c.total for s, c in by_status.items() if s.startswith("5")),
        sum(c.per_second for s, c in by_status.items() if s.startswith("5")),
    )
    recent = requests.per_second > 0
    if recent:
        error_rate: float | None = errors.per_second / requests.per_second
    else:
        error_rate = errors.total / requests.total if requests.total else None

    series = after.select("turnout_request_duration_seconds_count")
    kinds = sorted({dict(labels).get("kind", "") for labels, _ in series})
    latency = {
        kind: _quantiles(
            _buckets(before, after, "turnout_request_duration_seconds", recent, kind=kind)
        )
        for kind in kinds
    }
    ttft_buckets = _buckets(before, after, "turnout_time_to_first_token_seconds", recent)
    if recent and (not ttft_buckets or ttft_buckets[-1][1] == 0):
        ttft_buckets = _buckets(before, after, "turnout_time_to_first_token_seconds", False)
    tokens = counts("turnout_tokens_total", "type")
    in_flight = sum(v for _, v in after.select("turnout_requests_in_flight"))
    streams = sum(v for _, v in after.select("turnout_streams_in_flight"))
    return Summary(
        seconds=seconds,
        recent=recent,
        requests=requests,
        by_route=_rows(counts("turnout_requests_total", "route")),
        by_model=_rows(counts("turnout_requests_total", "model")),
        errors=errors,
        error_rate=error_rate,
        latency=latency,
        ttft=_quantiles(ttft_buckets),
        input_tokens=tokens.get("input", Count("input", 0.0, 0.0)),
        output_tokens=tokens.get("output", Count("output", 0.0, 0.0)),
        cost_usd=_one(counts("turnout_cost_usd_total"), "cost"),
        decisions=_rows(counts("turnout_router_decisions_total", "router")),
        fallbacks=_rows(counts("turnout_router_fallbacks_total", "reason")),
        rejections=_rows(counts("turnout_rejections_total", "reason")),
        upstream=_rows(counts("turnout_upstream_attempts_total", "outcome")),
        in_flight_requests=in_flight,
        in_flight_streams=streams,
    )


# ---------------------------------------------------------------------- rendering


def _n(value: float) -> str:
    return f"{value:,.0f}" if value == int(value) else f"{value:,.2f}"


def _rate(per_second: float) -> str:
    return f"{per_second:,.2f}/s"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"


def _usd(value: float) -> str:
    return f"${value:,.4f}" if value < 100 else f"${value:,.2f}"


def _table(title: str, rows: tuple[Count, ...], label: str) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(label)
    table.add_column("total", justify="right")
    table.add_column("rate", justify="right")
    for row in rows:
        table.add_row(row.name, _n(row.total), _rate(row.per_second))
    return table


def render(summary: Summary, url: str = "") -> RenderableType:
    window = f"last {summary.seconds:.1f} s" if summary.recent else "since start"
    overview = Table(title=f"turnout {url}".rstrip(), title_justify="left")
    overview.add_column("")
    overview.add_column("total", justify="right")
    overview.add_column(f"rate ({summary.seconds:.1f} s)", justify="right")
    s = summary
    overview.add_row("requests", _n(s.requests.total), _rate(s.requests.per_second))
    rate = "-" if s.error_rate is None else f"{s.error_rate:.1%} ({window})"
    overview.add_row("errors (5xx)", _n(s.errors.total), rate)
    overview.add_row("input tokens", _n(s.input_tokens.total), _rate(s.input_tokens.per_second))
    overview.add_row("output tokens", _n(s.output_tokens.total), _rate(s.output_tokens.per_second))
    overview.add_row("cost", _usd(s.cost_usd.total), f"{_usd(s.cost_usd.per_second * 3600)}/h")
    overview.add_row("in flight", _n(s.in_flight_requests), f"{_n(s.in_flight_streams)} streams")

    latency = Table(title=f"latency ({window})", title_justify="left")
    for column in ("", "p50", "p95", "p99"):
        latency.add_column(column, justify="right" if column else "left")
    for kind, q in s.latency.items():
        latency.add_row(kind, _duration(q.p50), _duration(q.p95), _duration(q.p99))
    latency.add_row("first token", _duration(s.ttft.p50), _duration(s.ttft.p95), "")

    parts: list[RenderableType] = [overview, latency]
    for title, rows, label in (
        ("by route", s.by_route, "route"),
        ("by model", s.by_model, "model"),
        ("router decisions", s.decisions, "router"),
        ("router fallbacks", s.fallbacks, "reason"),
        ("rejections", s.rejections, "reason"),
        ("upstream attempts", s.upstream, "outcome"),
    ):
        if rows:
            parts.append(_table(title, rows, label))
    return Group(*parts)


# ---------------------------------------------------------------------- the command


def metrics_url(url: str) -> str:
    """The gateway's URL → its /metrics URL. A URL with a path is used as it is (for another
    `observability.metrics_path`, or a gateway behind a path prefix)."""
    if "://" not in url:
        url = "http://" + url
    parts = urllib.parse.urlsplit(url)
    path = parts.path if parts.path.strip("/") else "/metrics"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path, parts.query, ""))


def fetch(url: str, timeout: float = SCRAPE_TIMEOUT) -> Scrape:
    """GET and parse a /metrics URL; raises StatsError with a message for people."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            raise StatsError(
                f"{url} answered 404 {exc.reason}: the metrics endpoint was not found. The "
                "gateway's metrics may be off (observability.metrics: false), or served at "
                "another path (observability.metrics_path)"
            ) from exc
        raise StatsError(
            f"{url} answered {exc.code} {exc.reason}: is this a turnout gateway?"
        ) from exc
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise StatsError(f"cannot reach {url}: {reason}") from exc
    try:
        return parse_scrape(body)
    except StatsError as exc:
        raise StatsError(f"{url}: {exc}") from exc


def run_stats(
    url: str,
    interval: float,
    once: bool,
    *,
    console: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print the summary once (two scrapes `interval` seconds apart), or refresh it every
    `interval` seconds until Ctrl-C. Returns the exit code: 1 when the gateway cannot be read."""
    console = console or Console()
    errors = Console(stderr=True)
    target = metrics_url(url)
    if not target.startswith(("http://", "https://")):
        errors.print(f"turnout stats: {url}: only http:// and https:// URLs", markup=False)
        return 1
    interval = max(interval, 0.1)
    try:
        before, taken = fetch(target), time.monotonic()
        if once:
            sleep(interval)
            after, now = fetch(target), time.monotonic()
            console.print(render(summarize(before, after, now - taken), target))
            return 0
        live = Live(console=console, auto_refresh=False) if console.is_terminal else None
        if live is not None:
            live.start()
        try:
            while True:
                sleep(interval)
                after, now = fetch(target), time.monotonic()
                view = render(summarize(before, after, now - taken), target)
                if live is not None:
                    live.update(view, refresh=True)
                else:
                    console.print(view)
                before, taken = after, now
        finally:
            if live is not None:
                live.stop()
    except StatsError as exc:
        errors.print(f"turnout stats: {exc}", markup=False, highlight=False)
        return 1
    except KeyboardInterrupt:
        return 0
