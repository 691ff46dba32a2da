"""Running a router over labelled suites and computing what operators need to judge it."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from turnout.config import RoutingPreference, load_config
from turnout.routing.conversation import Turn
from turnout.routing.embedded import Classification

NO_ROUTE = "(none)"


class SuiteError(ValueError):
    """A suite folder that cannot be evaluated (missing files, a malformed case)."""


class Classifier(Protocol):
    kind: str

    def prepare(self, routes: Sequence[RoutingPreference]) -> None: ...

    def classify(
        self, turns: Sequence[Turn], routes: Sequence[RoutingPreference]
    ) -> Classification: ...


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    turns: tuple[Turn, ...]
    expected: str | None


@dataclass(frozen=True, slots=True)
class Suite:
    name: str
    routes: list[RoutingPreference]
    cases: list[Case]


@dataclass(frozen=True, slots=True)
class Outcome:
    case: Case
    predicted: str | None
    top_route: str | None
    top_score: float
    latency_ms: float


def load_suite(folder: Path, routes_config: Path | None = None) -> Suite:
    """A folder of `routes.yaml` and `cases.jsonl`; `routes_config` replaces the suite's routes."""
    config = load_config(routes_config or folder / "routes.yaml")
    names = {route.name for route in config.routing_preferences}
    cases_path = folder / "cases.jsonl"
    try:
        lines = cases_path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise SuiteError(f"{cases_path}: {exc.strerror}") from exc
    cases = [
        _parse_case(line, f"{cases_path}:{n}", names)
        for n, line in enumerate(lines, 1)
        if line.strip()
    ]
    if not cases:
        raise SuiteError(f"{cases_path}: no cases")
    return Suite(folder.name, config.routing_preferences, cases)


def _parse_case(line: str, where: str, route_names: set[str]) -> Case:
    try:
        raw = json.loads(line)
        turns = tuple(Turn(m["role"], m["content"]) for m in raw["messages"])
        expected = raw["expected_route"]
        case_id = str(raw.get("id", where))
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SuiteError(f"{where}: not a case ({exc})") from None
    if expected is not None and expected not in route_names:
        raise SuiteError(f"{where}: expected_route {expected!r} is not a route of the suite")
    return Case(case_id, turns, expected)


def run_suite(
    router: Classifier, suite: Suite, on_case: Callable[[], None] = lambda: None
) -> list[Outcome]:
    router.prepare(suite.routes)
    outcomes = []
    for case in suite.cases:
        started = time.perf_counter()
        result = router.classify(case.turns, suite.routes)
        latency_ms = (time.perf_counter() - started) * 1000
        top = max(result.scores, key=result.scores.__getitem__) if result.scores else None
        top_score = result.scores[top] if top else float("-inf")
        outcomes.append(Outcome(case, result.route, top, top_score, latency_ms))
        on_case()
    return outcomes


def at_best_threshold(outcomes: Sequence[Outcome]) -> tuple[list[Outcome], float]:
    """Re-decide no-route with the threshold on the top score that maximises accuracy."""
    candidates = sorted({o.top_score for o in outcomes} | {float("-inf")})
    best_threshold, best_correct = float("-inf"), -1
    for threshold in candidates:
        correct = sum(_thresholded(o, threshold) == o.case.expected for o in outcomes)
        if correct > best_correct:
            best_threshold, best_correct = threshold, correct
    rescored = [
        Outcome(o.case, _thresholded(o, best_threshold), o.top_route, o.top_score, o.latency_ms)
        for o in outcomes
    ]
    return rescored, best_threshold


def _thresholded(outcome: Outcome, threshold: float) -> str | None:
    return outcome.top_route if outcome.top_score >= threshold else None


def _ratio(part: int, whole: int) -> float | None:
    return part / whole if whole else None


def metrics(outcomes: Sequence[Outcome], route_names: Iterable[str]) -> dict[str, Any]:
    """Accuracy, in-scope top-1, no-route precision/recall, per-route P/R, confusion, latency."""
    total = len(outcomes)
    correct = sum(o.predicted == o.case.expected for o in outcomes)
    in_scope = [o for o in outcomes if o.case.expected is not None]
    multi_turn = [o for o in outcomes if sum(t.role == "user" for t in o.case.turns) > 1]
    labels = [*route_names, None]
    per_route = {}
    for label in labels:
        predicted = sum(o.predicted == label for o in outcomes)
        expected = sum(o.case.expected == label for o in outcomes)
        hits = sum(o.predicted == label == o.case.expected for o in outcomes)
        per_route[label or NO_ROUTE] = {
            "precision": _ratio(hits, predicted),
            "recall": _ratio(hits, expected),
            "support": expected,
        }
    confusion = Counter((o.case.expected or NO_ROUTE, o.predicted or NO_ROUTE) for o in outcomes)
    latencies = np.array([o.latency_ms for o in outcomes])
    return {
        "cases": total,
        "accuracy": _ratio(correct, total),
        "in_scope_top1": _ratio(
            sum(o.top_route == o.case.expected for o in in_scope), len(in_scope)
        ),
        "in_scope_accuracy": _ratio(
            sum(o.predicted == o.case.expected for o in in_scope), len(in_scope)
        ),
        "no_route_precision": per_route[NO_ROUTE]["precision"],
        "no_route_recall": per_route[NO_ROUTE]["recall"],
        "multi_turn_accuracy": _ratio(
            sum(o.predicted == o.case.expected for o in multi_turn), len(multi_turn)
        ),
        "multi_turn_cases": len(multi_turn),
        "per_route": per_route,
        "confusion": [
            {"expected": e, "predicted": p, "count": n} for (e, p), n in sorted(confusion.items())
        ],
        "latency_ms": {f"p{q}": round(float(np.percentile(latencies, q)), 3) for q in (50, 95, 99)},
    }
