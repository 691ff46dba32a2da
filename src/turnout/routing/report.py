"""`turnout eval` output: routers side by side per suite, as tables or JSON."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial
from typing import Any

from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from turnout.routing.baseline import DescriptionCosineRouter
from turnout.routing.evaluation import (
    NO_ROUTE,
    Classifier,
    Suite,
    at_best_threshold,
    metrics,
    run_suite,
)


def run(
    routers: Sequence[Classifier], suites: Sequence[Suite], show_progress: bool
) -> list[dict[str, Any]]:
    results = []
    with Progress(disable=not show_progress, transient=True) as progress:
        for suite in suites:
            for router in routers:
                task = progress.add_task(f"{suite.name} · {router.kind}", total=len(suite.cases))
                outcomes = run_suite(router, suite, partial(progress.advance, task))
                result: dict[str, Any] = {"suite": suite.name, "router": router.kind}
                if isinstance(router, DescriptionCosineRouter):
                    outcomes, threshold = at_best_threshold(outcomes)
                    result["threshold"] = threshold
                result.update(metrics(outcomes, [r.name for r in suite.routes]))
                results.append(result)
    return results


def _threshold_note(result: dict[str, Any]) -> str:
    if "threshold" not in result:
        return ""
    threshold = result["threshold"]
    if threshold is None or not math.isfinite(threshold):
        return " (best: never no route)"
    return f" (best threshold {threshold:.3f})"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def print_results(results: Sequence[dict[str, Any]], console: Console | None = None) -> None:
    console = console or Console()
    summary = Table(title="routing accuracy")
    for column in (
        "suite",
        "router",
        "cases",
        "accuracy",
        "in-scope top-1",
        "no-route P",
        "no-route R",
        "multi-turn",
        "p50 ms",
        "p95 ms",
        "p99 ms",
    ):
        summary.add_column(column, justify="left" if column in ("suite", "router") else "right")
    for r in results:
        router = r["router"] + _threshold_note(r)
        summary.add_row(
            r["suite"],
            router,
            str(r["cases"]),
            _pct(r["accuracy"]),
            _pct(r["in_scope_top1"]),
            _pct(r["no_route_precision"]),
            _pct(r["no_route_recall"]),
            f"{_pct(r['multi_turn_accuracy'])} of {r['multi_turn_cases']}",
            *(f"{r['latency_ms'][p]:.1f}" for p in ("p50", "p95", "p99")),
        )
    console.print(summary)
    for r in results:
        if r["router"] == DescriptionCosineRouter.kind:
            continue
        _print_details(r, console)


def _print_details(result: dict[str, Any], console: Console) -> None:
    routes = Table(title=f"{result['suite']} · {result['router']}: per route")
    for column in ("route", "precision", "recall", "support"):
        routes.add_column(column, justify="left" if column == "route" else "right")
    for name, m in result["per_route"].items():
        routes.add_row(name, _pct(m["precision"]), _pct(m["recall"]), str(m["support"]))
    console.print(routes)
    labels = list(result["per_route"])
    counts = {(c["expected"], c["predicted"]): c["count"] for c in result["confusion"]}
    confusion = Table(title="confusion (rows: expected, columns: predicted)")
    confusion.add_column("expected \\ predicted")
    for label in labels:
        confusion.add_column(label if label == NO_ROUTE else label[:12], justify="right")
    for expected in labels:
        confusion.add_row(expected, *(str(counts.get((expected, p), "")) for p in labels))
    console.print(confusion)
