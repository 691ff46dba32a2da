"""Fit the embedded router's confidence (src/turnout/routing/confidence.py) on the dev suites.

    python bench/routing/calibrate.py

Runs the router on general-dev and clinc-dev, zero-shot and with their LLM-written examples,
fits a logistic model of "the decision was right" on (margin, lift) for each kind of decision
(a route; no route by the built-in rules; no route because a no-route example was nearer), and
prints the weights and a reliability table (confidence band against the share of its decisions
that were right) for every suite.
"""

from __future__ import annotations

import numpy as np
from evidence import Decided, decide_all, load, new_router, with_examples

from turnout.routing.decision import RouteSet

FIT_SUITES = ("general-dev", "clinc-dev")
ALL_SUITES = ("general-dev", "clinc-dev", "llm-tasks", "support-desk")


def fit(
    features: np.ndarray, right: np.ndarray, steps: int = 20000, rate: float = 0.5, l2: float = 0.05
) -> np.ndarray:
    """Logistic regression by gradient descent (three weights need no library). The L2 penalty
    keeps a small group (few declined decisions, almost all right) from steep, overfitted weights."""
    x = np.hstack([features, np.ones((len(features), 1))])
    w = np.zeros(x.shape[1])
    penalty = np.array([l2, l2, 0.0])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-x @ w))
        w -= rate * (x.T @ (p - right) / len(x) + penalty * w)
    return w


def features(decided: list[Decided]) -> tuple[np.ndarray, np.ndarray]:
    evidence = [d.result.evidence for d in decided]
    x = np.array([[e.margin * 10, e.lift * 10] for e in evidence if e is not None])
    return x, np.array([d.right for d in decided], dtype=float)


def reliability(decided: list[Decided]) -> str:
    bins = [(0.0, 0.5), (0.5, 0.7), (0.7, 0.8), (0.8, 0.9), (0.9, 0.95), (0.95, 1.01)]
    cells = []
    for low, high in bins:
        inside = [d for d in decided if low <= (d.result.confidence or 0.0) < high]
        share = sum(d.right for d in inside) / len(inside) if inside else float("nan")
        cells.append(f"[{low:.2f},{min(high, 1):.2f}) n={len(inside):4d} right={share:.2f}")
    return "\n    ".join(cells)


def main() -> None:
    router = new_router()
    runs = {}
    for name in ALL_SUITES:
        suite = load(name)
        runs[name] = {
            "zero-shot": decide_all(router, suite, RouteSet(suite.routes)),
            "examples": decide_all(router, suite, with_examples(suite)),
        }
    pooled = [d for name in FIT_SUITES for run in runs[name].values() for d in run]
    print("WEIGHTS = {")
    for kind in ("route", "no_route", "declined"):
        group = [d for d in pooled if d.result.evidence and d.result.evidence.kind == kind]
        x, y = features(group)
        w = fit(x, y)
        # features are scaled by 10 for the fit; report weights on the raw numbers
        print(
            f'    "{kind}": ({w[0] * 10:.3f}, {w[1] * 10:.3f}, {w[2]:.3f}),  # n={len(group)}, {y.mean():.0%} right'
        )
    print("}")
    for name, run in runs.items():
        for mode, decided in run.items():
            print(f"{name} {mode}:\n    {reliability(decided)}")


if __name__ == "__main__":
    main()
