"""Route examples: accuracy zero-shot against with LLM-written examples, and what examples cost
per decision, in one run.

    python bench/routing/examples_eval.py [--decisions 300]

Accuracy: every suite, zero-shot and with its fixture in examples/ (25 requests per route and
40 no-route requests an LLM wrote from the route names and descriptions alone). Latency: the
general-dev routes zero-shot against the same routes with 50 examples each, deciding new short
prompts alternately in one thread.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from evidence import Decided, decide_all, load, new_router, with_examples

from turnout.routing.conversation import Turn
from turnout.routing.decision import RouteSet
from turnout.routing.examples import RouteExamples

SUITES = ("general-dev", "clinc-dev", "llm-tasks", "support-desk")


def summary(decided: list[Decided]) -> str:
    no_route = [d for d in decided if d.case.expected is None]
    in_scope = [d for d in decided if d.case.expected is not None]
    accuracy = sum(d.right for d in decided) / len(decided)
    recall = (
        sum(d.result.route is None for d in no_route) / len(no_route) if no_route else float("nan")
    )
    return (
        f"accuracy {accuracy:.3f}  in-scope {sum(d.right for d in in_scope) / len(in_scope):.3f}  "
        f"no-route recall {recall:.3f} ({len(no_route)})"
    )


def fifty_each(route_set: RouteSet) -> RouteSet:
    """Each route's 25 written examples twice over, told apart so none is dropped as a repeat."""
    doubled = {
        route.name: tuple(route.examples) + tuple(f"{text} (again)" for text in route.examples)
        for route in route_set.routes
    }
    return RouteSet(
        [r.model_copy(update={"examples": []}) for r in route_set.routes]
    ).with_examples(RouteExamples(doubled, route_set.no_route_examples))


def latency(decisions: int) -> None:
    router = new_router()
    suite = load("general-dev")
    plain = RouteSet(suite.routes)
    rich = fifty_each(with_examples(suite))
    for route_set in (plain, rich):
        router.prepare(route_set.routes, route_set.no_route_examples)
    prompts = [case.turns for case in suite.cases]
    samples: dict[str, list[float]] = {"zero-shot": [], "50 examples per route": []}
    for i in range(decisions):
        for label, route_set in (("zero-shot", plain), ("50 examples per route", rich)):
            turns = (
                *prompts[i % len(prompts)][:-1],
                Turn("user", f"{prompts[i % len(prompts)][-1].text} #{label} {i}"),
            )
            started = time.perf_counter()
            router.classify(turns, route_set.routes, route_set.no_route_examples)
            samples[label].append((time.perf_counter() - started) * 1000)
    evidence = sum(len(r.examples) for r in rich.routes)
    print(
        f"\nlatency, general-dev routes, {decisions} new prompts each, alternating ({evidence} examples):"
    )
    for label, values in samples.items():
        p50, p95 = np.percentile(values, [50, 95])
        print(f"  {label:22s} p50 {p50:.2f} ms  p95 {p95:.2f} ms")
    base, rich_p50 = (np.percentile(v, 50) for v in samples.values())
    print(f"  difference at p50: {rich_p50 - base:+.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=300)
    args = parser.parse_args()
    router = new_router()
    for name in SUITES:
        suite = load(name)
        print(
            f"{name:13s} zero-shot      {summary(decide_all(router, suite, RouteSet(suite.routes)))}"
        )
        print(
            f"{name:13s} with examples  {summary(decide_all(router, suite, with_examples(suite)))}"
        )
    latency(args.decisions)


if __name__ == "__main__":
    main()
