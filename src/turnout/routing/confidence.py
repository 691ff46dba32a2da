"""The embedded router's confidence: the chance that a decision is right, read from its scores.

A logistic model over two numbers every decision has, one model per kind of decision: a route
(how far the best route is ahead of the runner-up, and how far it clears its background level),
no route by the built-in rules (the same two numbers), and no route because a no-route example
is nearer than any route's evidence (by how much, and the best route's lift). The weights were
fitted on the dev suites' decisions, zero-shot and with LLM-written examples
(`python bench/routing/calibrate.py` refits them and prints the share of decisions that were
right in each confidence band), so a confidence of 0.8 means about 80% of such decisions were
right there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

Kind = Literal["route", "no_route", "declined"]

# (margin, lift, bias) per kind of decision, from bench/routing/calibrate.py.
WEIGHTS: dict[Kind, tuple[float, float, float]] = {
    "route": (7.043, 4.318, -0.447),
    "no_route": (-1.558, -9.476, 0.829),
    "declined": (7.803, -5.253, 1.908),
}
# A probability estimate is never certain: 1.0 would make `min_confidence: 1` skip the LLM router.
LOWEST, HIGHEST = 0.0001, 0.9999


@dataclass(frozen=True, slots=True)
class Evidence:
    """What a decision's confidence is read from."""

    kind: Kind
    margin: float  # the winner's lead: over the runner-up route, or of the no-route example
    lift: float  # the best route's score over its background level


def confidence(evidence: Evidence) -> float:
    w_margin, w_lift, bias = WEIGHTS[evidence.kind]
    z = w_margin * evidence.margin + w_lift * evidence.lift + bias
    return min(max(round(1.0 / (1.0 + math.exp(-z)), 4), LOWEST), HIGHEST)
