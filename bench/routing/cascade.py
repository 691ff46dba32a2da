"""The cascade curve: accuracy against the share of requests sent to the LLM router.

    python bench/routing/cascade.py [--seeds 20]

The embedded router decides every case of each suite (with its LLM-written examples); a
stand-in LLM router answers right 93% of the time (Arch-Router-1.5B's published accuracy),
its errors a uniformly random wrong answer (another route, or no route). For each
`routing.cascade.min_confidence` from 0 to 1, cases below it go to the stand-in. Averaged over
seeds of the stand-in's errors.
"""

from __future__ import annotations

import argparse

import numpy as np
from evidence import Decided, decide_all, load, new_router, with_examples

LLM_ACCURACY = 0.93
SUITES = ("general-dev", "clinc-dev", "llm-tasks", "support-desk")
THRESHOLDS = [round(x, 2) for x in np.arange(0.0, 1.0001, 0.05)]
TARGET_SHARE = 0.95
MAX_ESCALATED = 0.25


def stand_in_right(decided: list[Decided], seeds: int) -> np.ndarray:
    """(seeds, cases): whether the stand-in got each case right."""
    rng = np.random.default_rng(7)
    return rng.random((seeds, len(decided))) < LLM_ACCURACY


def curve(decided: list[Decided], llm_right: np.ndarray) -> list[tuple[float, float, float]]:
    confidence = np.array([d.result.confidence or 0.0 for d in decided])
    embedded_right = np.array([d.right for d in decided])
    rows = []
    for threshold in THRESHOLDS:
        escalated = confidence < threshold
        right = np.where(escalated, llm_right, embedded_right)
        rows.append((threshold, float(escalated.mean()), float(right.mean())))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=20)
    args = parser.parse_args()
    router = new_router()
    for name in SUITES:
        suite = load(name)
        decided = decide_all(router, suite, with_examples(suite))
        llm_right = stand_in_right(decided, args.seeds)
        llm_accuracy = float(llm_right.mean())
        rows = curve(decided, llm_right)
        print(f"\n{name}: {len(decided)} cases, stand-in LLM router {llm_accuracy:.3f}")
        print("min_confidence  escalated  accuracy  of LLM's")
        for threshold, escalated, accuracy in rows:
            print(
                f"{threshold:14.2f}  {escalated:9.3f}  {accuracy:8.3f}  {accuracy / llm_accuracy:8.3f}"
            )
        fit = [r for r in rows if r[1] <= MAX_ESCALATED]
        best = max(fit, key=lambda r: r[2])
        print(
            f"best with <= {MAX_ESCALATED:.0%} escalated: min_confidence {best[0]:.2f}, "
            f"{best[1]:.1%} escalated, accuracy {best[2]:.3f} = {best[2] / llm_accuracy:.3f} of the LLM's "
            f"({'meets' if best[2] / llm_accuracy >= TARGET_SHARE else 'misses'} {TARGET_SHARE:.0%})"
        )


if __name__ == "__main__":
    main()
