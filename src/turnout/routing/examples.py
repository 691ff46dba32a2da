"""Example requests that back the route descriptions: written by an LLM, edited by operators,
corrected through feedback. The router treats them all alike, as evidence next to the config's
own `examples` and `routing.no_route_examples`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class RouteExamples:
    """Example requests per route name, and requests that must get no route."""

    routes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    no_route: tuple[str, ...] = ()

    def __len__(self) -> int:
        return sum(len(texts) for texts in self.routes.values()) + len(self.no_route)

    def plus(self, other: RouteExamples) -> RouteExamples:
        """Both sets, this one's texts first, without repeats."""
        names = [*self.routes, *(name for name in other.routes if name not in self.routes)]
        return RouteExamples(
            routes={
                name: unique([*self.routes.get(name, ()), *other.routes.get(name, ())])
                for name in names
            },
            no_route=unique([*self.no_route, *other.no_route]),
        )

    def for_routes(self, names: Iterable[str]) -> RouteExamples:
        """Only the routes in `names`: examples of a route that no longer exists are kept out."""
        kept = set(names)
        return RouteExamples(
            routes={name: texts for name, texts in self.routes.items() if name in kept},
            no_route=self.no_route,
        )


def normalised(text: str) -> str:
    """What two texts share when they are the same example: case and spacing do not count."""
    return " ".join(text.lower().split())


def unique(texts: Iterable[str]) -> tuple[str, ...]:
    """Stripped, non-empty texts in first-seen order; case and spacing do not make a new text."""
    kept: dict[str, str] = {}
    for text in texts:
        stripped = text.strip()
        if stripped:
            kept.setdefault(normalised(stripped), stripped)
    return tuple(kept.values())
