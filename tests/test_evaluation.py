"""Suite loading and the metrics `turnout eval` reports."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import SHARED_SUITES
from turnout.routing.conversation import Turn
from turnout.routing.evaluation import (
    Case,
    Outcome,
    SuiteError,
    at_best_threshold,
    load_suite,
    metrics,
)

ROUTES_YAML = """
version: v0.4.0
model_providers:
  - model: openai/gpt-4o
    default: true
routing_preferences:
  - name: code
    description: writing code
    models: [openai/gpt-4o]
  - name: math
    description: solving math problems
    models: [openai/gpt-4o]
"""


def outcome(
    expected: str | None,
    predicted: str | None,
    top: str | None = None,
    score: float = 0.5,
    turns: int = 1,
    latency: float = 1.0,
) -> Outcome:
    case_turns = tuple(Turn("user", f"t{i}") for i in range(turns))
    return Outcome(Case("c", case_turns, expected), predicted, top or predicted, score, latency)


def test_metrics_count_accuracy_top1_and_no_route_precision_recall() -> None:
    outcomes = [
        outcome("code", "code"),
        outcome("code", None, top="code"),  # right route, wrongly rejected
        outcome("math", "code"),
        outcome(None, None, top="math"),
        outcome(None, "math", turns=2),
    ]
    m = metrics(outcomes, ["code", "math"])
    assert m["accuracy"] == pytest.approx(2 / 5)
    assert m["in_scope_top1"] == pytest.approx(2 / 3)
    assert m["in_scope_accuracy"] == pytest.approx(1 / 3)
    assert m["no_route_precision"] == pytest.approx(1 / 2)
    assert m["no_route_recall"] == pytest.approx(1 / 2)
    assert m["per_route"]["code"] == {"precision": 0.5, "recall": 0.5, "support": 2}
    assert m["per_route"]["math"]["recall"] == 0.0
    assert {"expected": "math", "predicted": "code", "count": 1} in m["confusion"]
    assert m["multi_turn_cases"] == 1 and m["multi_turn_accuracy"] == 0.0


def test_latency_percentiles() -> None:
    outcomes = [outcome("code", "code", latency=float(i)) for i in range(1, 101)]
    latency = metrics(outcomes, ["code"])["latency_ms"]
    assert latency["p50"] == pytest.approx(50.5)
    assert latency["p99"] == pytest.approx(99.01)


def test_best_threshold_is_chosen_for_the_baseline() -> None:
    outcomes = [
        outcome("code", "code", score=0.9),
        outcome("math", "math", score=0.7),
        outcome(None, "code", top="code", score=0.3),
        outcome(None, "math", top="math", score=0.2),
    ]
    rescored, threshold = at_best_threshold(outcomes)
    assert 0.3 < threshold <= 0.7
    assert [o.predicted for o in rescored] == ["code", "math", None, None]


def write_suite(folder: Path, cases: list[dict] | str) -> Path:
    folder.mkdir()
    (folder / "routes.yaml").write_text(ROUTES_YAML)
    text = cases if isinstance(cases, str) else "\n".join(json.dumps(c) for c in cases)
    (folder / "cases.jsonl").write_text(text)
    return folder


def test_a_suite_loads_its_routes_and_cases(tmp_path: Path) -> None:
    case = {"id": "a", "messages": [{"role": "user", "content": "2+2"}], "expected_route": "math"}
    suite = load_suite(write_suite(tmp_path / "s", [case]))
    assert [r.name for r in suite.routes] == ["code", "math"]
    assert suite.cases == [Case("a", (Turn("user", "2+2"),), "math")]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a case"),
        ('{"id": "a", "messages": [], "expected_route": "poetry"}', "not a route of the suite"),
        ('{"id": "a"}', "not a case"),
        ("", "no cases"),
    ],
)
def test_bad_cases_are_reported_with_their_line(tmp_path: Path, content: str, message: str) -> None:
    with pytest.raises(SuiteError, match=message):
        load_suite(write_suite(tmp_path / "s", content))


def test_the_shared_suites_load() -> None:
    suite = load_suite(SHARED_SUITES / "general-dev")
    assert len(suite.cases) == 149
    assert sum(c.expected is None for c in suite.cases) == 30
