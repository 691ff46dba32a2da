"""Older Plano config shapes, rewritten in memory to the v0.4.0 shape the schema describes.

- `llm_providers` is the old name of `model_providers`.
- `listeners` as a mapping (`egress_traffic`, `ingress_traffic`) is the legacy listener form.
- v0.3.0 declared routes inside each provider (`routing_preferences: [{name, description}]`);
  v0.4.0 declares them at the top level with the list of `models` that serve them.

Each rewrite records where the moved data came from, so problems found later are reported
at the key path the user wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from turnout.config.schema import Loc

_LEGACY_LISTENERS = {"egress_traffic": "model", "ingress_traffic": "prompt"}


@dataclass
class Migration:
    """The rewritten config, where its moved parts came from, and what the rewrite found."""

    data: dict[str, Any]
    origins: dict[Loc, Loc] = field(default_factory=dict)
    problems: list[tuple[Loc, str]] = field(default_factory=list)
    warnings: list[tuple[Loc, str]] = field(default_factory=list)

    def user_loc(self, loc: Loc) -> Loc:
        """The key path, as the user wrote the file, of a path into the rewritten config."""
        for length in range(len(loc), 0, -1):
            origin = self.origins.get(loc[:length])
            if origin is not None:
                return (*origin, *loc[length:])
        return loc


def migrate(config: Mapping[str, Any]) -> Migration:
    """Rewrite `config` (not modified) to the v0.4.0 shape."""
    migration = Migration(dict(config))
    _rename_llm_providers(migration)
    _listeners_as_list(migration)
    _lift_provider_routes(migration)
    return migration


def _rename_llm_providers(migration: Migration) -> None:
    data = migration.data
    if "llm_providers" not in data:
        return
    providers = data.pop("llm_providers")
    if "model_providers" in data:
        migration.problems.append(
            (("llm_providers",), "use model_providers or its old name llm_providers, not both")
        )
        return
    data["model_providers"] = providers
    migration.origins[("model_providers",)] = ("llm_providers",)
    migration.warnings.append(
        (("llm_providers",), "old name of model_providers; read as model_providers")
    )


def _listeners_as_list(migration: Migration) -> None:
    listeners = migration.data.get("listeners")
    if not isinstance(listeners, Mapping):
        return
    entries: list[object] = []
    for key, section in listeners.items():
        listener_type = _LEGACY_LISTENERS.get(key)
        if listener_type is None:
            migration.problems.append((("listeners", key), "unknown key"))
            continue
        migration.origins[("listeners", len(entries))] = ("listeners", key)
        if isinstance(section, Mapping):
            # message_format had one legal value, openai; turnout speaks every format anyway.
            section = {"type": listener_type, "name": key, **section}
            section.pop("message_format", None)
        entries.append(section)
    migration.data["listeners"] = entries
    migration.warnings.append(
        (("listeners",), "legacy egress_traffic/ingress_traffic form; read as a list of listeners")
    )


def _lift_provider_routes(migration: Migration) -> None:
    providers = migration.data.get("model_providers")
    top_level = migration.data.get("routing_preferences", [])
    if not isinstance(providers, list) or not isinstance(top_level, list):
        return
    lifter = _RouteLifter(migration, list(top_level))
    providers_key = migration.user_loc(("model_providers",))
    rewritten: list[object] = []
    for i, provider in enumerate(providers):
        if isinstance(provider, Mapping) and "routing_preferences" in provider:
            where = (*providers_key, i, "routing_preferences")
            lifter.lift(provider["routing_preferences"], provider.get("model"), where)
            provider = {
                key: value for key, value in provider.items() if key != "routing_preferences"
            }
        rewritten.append(provider)
    if lifter.found_any:
        migration.data["model_providers"] = rewritten
        migration.data["routing_preferences"] = lifter.routes


class _RouteLifter:
    """Collects v0.3.0 per-provider routes into top-level ones: one route per name, whose
    `models` are the providers that declared it, in file order. As in Plano, a top-level
    route of the same name wins."""

    def __init__(self, migration: Migration, routes: list[object]) -> None:
        self.migration = migration
        self.routes = routes
        self.top_level_names = {
            route["name"]
            for route in routes
            if isinstance(route, Mapping) and isinstance(route.get("name"), str)
        }
        self.by_name: dict[str, dict[str, Any]] = {}
        self.found_any = False

    def lift(self, declared: object, model: object, where: Loc) -> None:
        """Lift one provider's `routing_preferences`, found at `where`."""
        if not self.found_any:
            self.found_any = True
            self.migration.warnings.append(
                (
                    where,
                    "per-provider routes are Plano's v0.3.0 form; read as top-level routing_preferences",
                )
            )
        if not isinstance(declared, list):
            self.migration.problems.append(
                (where, "expected a list of routes, each with a name and a description")
            )
        elif isinstance(model, str) and model.endswith("/*"):
            self.migration.problems.append(
                (where, "a wildcard provider cannot serve routes; name one of its models")
            )
        elif isinstance(model, str):  # otherwise the provider itself is reported
            for j, route in enumerate(declared):
                self._add(route, model, (*where, j))

    def _add(self, route: object, model: str, origin: Loc) -> None:
        name = route.get("name") if isinstance(route, Mapping) else None
        if not isinstance(route, Mapping) or not isinstance(name, str):
            # Malformed: validation reports it where it was written.
            self._append(
                {**route, "models": [model]} if isinstance(route, Mapping) else route, origin
            )
        elif name in self.top_level_names:
            self.migration.warnings.append(
                (origin, f"route '{name}' is also defined at the top level, which wins")
            )
        elif name not in self.by_name:
            self.by_name[name] = {**route, "models": [model]}
            self._append(self.by_name[name], origin)
        else:
            merged = self.by_name[name]
            if route.get("description") != merged.get("description"):
                self.migration.problems.append(
                    (
                        (*origin, "description"),
                        f"route '{name}' was declared before with a different description",
                    )
                )
            if model not in merged["models"]:
                merged["models"].append(model)

    def _append(self, route: object, origin: Loc) -> None:
        self.migration.origins[("routing_preferences", len(self.routes))] = origin
        self.routes.append(route)
