"""What a valid configuration is: Plano's keys, turnout's extensions, and how entries refer to each
other. The section machinery is in sections.py; turnout's governance keys in governance.py."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)
from pydantic_core import PydanticCustomError

from turnout.config.governance import Filter, Governance, PromptGuards, RateLimit
from turnout.config.sections import (
    HttpUrl,
    Loc,
    Port,
    Section,
    Text,
    fail,
    not_empty,
    repeats,
)
from turnout.providers.registry import PROVIDERS

CURRENT_VERSION = "v0.4.0"
DEFAULT_MODEL_PORT = 12000  # Plano's model listener port when none is configured
DEFAULT_MAX_BODY_BYTES = 8 * 1024 * 1024

# Plano's provider prefixes (SUPPORTED_PROVIDERS in katanemo/plano cli/planoai/config_generator.py;
# `arch` is the pre-rename spelling of `plano`), plus the ones turnout's registry can call. Any
# other prefix needs base_url and provider_interface; these need a base_url because they have
# no public endpoint.
PROVIDERS_NEEDING_BASE_URL = frozenset(
    {"azure_openai", "ollama", "qwen", "amazon_bedrock", "plano", "arch"}
) | frozenset(name for name, spec in PROVIDERS.items() if spec.base_url is None)
KNOWN_PROVIDERS = (
    PROVIDERS_NEEDING_BASE_URL
    | frozenset(PROVIDERS)
    | frozenset(
        {
            "openai",
            "anthropic",
            "deepseek",
            "groq",
            "mistral",
            "gemini",
            "together_ai",
            "xai",
            "moonshotai",
            "zhipu",
            "xiaomi",
            "chatgpt",
            "digitalocean",
            "vercel",
            "openrouter",
        }
    )
)

_VERSION = re.compile(r"v?0\.[1-4](\.\d+)?(-[0-9A-Za-z.]+)?")


def _model_id(value: str) -> str:
    provider, _, model = value.partition("/")
    if not provider.strip() or not model.strip():
        raise PydanticCustomError(
            "model_id",
            "expected '<provider>/<model>', or '<provider>/*' for all of a provider's models",
        )
    return value


def _supported_version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise PydanticCustomError(
            "version",
            f"unsupported version '{value}'; turnout reads Plano config versions v0.1 to v0.4",
        )
    return value


class SelectionPolicy(Section):
    """How a route orders its models before they are tried (Plano's `selection_policy`)."""

    prefer: Literal["none", "cheapest", "fastest", "random", "long_context_quality"]


class RoutingPreference(Section):
    """A route: a kind of request described in plain language, and the models to serve it, best first."""

    plano_only = frozenset({"skills"})

    name: Text
    description: str = ""
    models: Annotated[list[Text], AfterValidator(not_empty)]
    examples: list[Text] = []  # turnout extension: sample requests that belong to this route
    selection_policy: SelectionPolicy | None = None
    skills: Any = None

    @model_validator(mode="after")
    def _described(self) -> RoutingPreference:
        # Plano requires a description; turnout also accepts a route known only by its examples.
        if not self.description.strip() and not self.examples:
            fail([(("description",), "a route needs a description or examples")])
        return self


def _unique_names(routes: list[RoutingPreference]) -> list[RoutingPreference]:
    # The router answers with a route name, so two routes with one name could not be told apart.
    fail(
        ((index, "name"), f"duplicate route name '{routes[index].name}'")
        for index in repeats(route.name for route in routes)
    )
    return routes


Routes = Annotated[list[RoutingPreference], AfterValidator(_unique_names)]
"""A list of routes, in the config or in a request body: names must be unique."""


class UpstreamTimeouts(Section):
    """How long to wait for an upstream (turnout extension `model_providers[].timeouts`), seconds."""

    connect: Annotated[float, Field(gt=0)] = 5.0
    read: Annotated[float, Field(gt=0)] = 120.0  # between bytes, so also the wait for the first one


class ModelProvider(Section):
    """One upstream model, `<provider>/<model>`; `<provider>/*` stands for every model of a provider."""

    plano_only = frozenset({"capabilities"})

    model: Annotated[str, AfterValidator(_model_id)]
    name: str | None = None
    access_key: str | None = None
    default: bool = False
    base_url: HttpUrl | None = None
    provider_interface: str | None = None
    passthrough_auth: bool = False
    http_host: str | None = None
    headers: dict[str, str] = {}
    timeouts: UpstreamTimeouts = UpstreamTimeouts()  # turnout extension
    capabilities: Any = None

    @property
    def provider(self) -> str:
        return self.model.partition("/")[0]

    @property
    def model_name(self) -> str:
        return self.model.partition("/")[2]

    @property
    def is_wildcard(self) -> bool:
        return self.model_name == "*"

    @model_validator(mode="after")
    def _callable(self) -> ModelProvider:
        # Plano's rules, so that a file one of them accepts means the same to the other.
        problems: list[tuple[Loc, str]] = []
        if self.provider not in KNOWN_PROVIDERS and not (self.base_url and self.provider_interface):
            problems.append(
                (
                    ("model",),
                    f"unknown provider '{self.provider}': set base_url and provider_interface to use it",
                )
            )
        elif self.provider in PROVIDERS_NEEDING_BASE_URL and not self.base_url:
            problems.append((("base_url",), f"required for provider '{self.provider}'"))
        if self.is_wildcard and self.default:
            problems.append((("default",), "a wildcard provider cannot be the default"))
        fail(problems)
        return self


class ModelAlias(Section):
    """A name clients may send in place of a configured model (Plano's `model_aliases` entry)."""

    target: Text


class Listener(Section):
    """An entry point. turnout serves the `type: model` listener; Plano's prompt and agent listeners are ignored."""

    plano_only = frozenset(
        {"address", "timeout", "router", "max_retries", "agents", "input_filters", "output_filters"}
    )

    type: Literal["model", "prompt", "agent"]
    name: str | None = None
    port: Port | None = None
    max_body_bytes: Annotated[int, Field(gt=0)] = DEFAULT_MAX_BODY_BYTES  # turnout extension
    filter_chain: list[Text] = []  # ids of `filters` each request passes through, in order
    output_filter_chain: list[Text] = []  # turnout extension: the same for responses
    address: Any = None  # `turnout up --host` decides where to listen
    timeout: Any = None
    router: Any = None
    max_retries: Any = None
    agents: Any = None
    input_filters: Any = None
    output_filters: Any = None

    def _ignored_keys(self, loc: Loc = ()) -> Iterator[Loc]:
        if self.type != "model":
            return iter([loc])
        return super()._ignored_keys(loc)


def _one_model_listener(listeners: list[Listener]) -> list[Listener]:
    model_listeners = [i for i, listener in enumerate(listeners) if listener.type == "model"]
    fail(((i, "type"), "only one model listener is supported") for i in model_listeners[1:])
    return listeners


class SessionCache(Section):
    """Where pinned routing decisions are kept: in process, or in Redis to share them across replicas."""

    type: Literal["memory", "redis"] = "memory"
    url: str | None = None
    tenant_header: str | None = None

    @model_validator(mode="after")
    def _redis_has_url(self) -> SessionCache:
        if self.type == "redis" and not self.url:
            fail([(("url",), "required when type is redis")])
        return self


class EmbeddedRouterSettings(Section):
    """The in-process embedding router (turnout extension, `routing.embedded`)."""

    threads: Annotated[int, Field(ge=1)] = 1


class LlmRouterSettings(Section):
    """Calling the LLM router named by `overrides.llm_routing_model` (turnout extension, `routing.llm`)."""

    timeout_seconds: Annotated[float, Field(gt=0)] = 1.0  # then the embedded router decides
    failures_to_open: Annotated[int, Field(ge=1)] = 3  # failures in a row that open the breaker
    cooldown_seconds: Annotated[float, Field(gt=0)] = 30.0  # skip the router this long, then probe


class Bootstrap(Section):
    """The route example cache (turnout extension, `routing.bootstrap`): examples an LLM wrote from
    the route descriptions, plus corrections sent to `/routing/v1/feedback`."""

    cache_path: Text
    model: Text | None = None  # a configured model that writes the examples; None: never build
    per_route: Annotated[int, Field(ge=1, le=200)] = 25
    no_route: Annotated[int, Field(ge=0, le=400)] = 40
    timeout_seconds: Annotated[float, Field(gt=0)] = 300.0


class Cascade(Section):
    """Ask the LLM router only when the embedded router is unsure (turnout extension)."""

    min_confidence: Annotated[float, Field(ge=0, le=1)]


class Routing(Section):
    """Plano's `routing` section (session pinning), plus turnout's router settings."""

    plano_only = frozenset({"llm_provider", "model", "model_provider"})

    session_ttl_seconds: Annotated[int, Field(ge=1)] = 600
    session_max_entries: Annotated[int, Field(ge=1, le=10000)] = 10000
    session_cache: SessionCache = SessionCache()
    embedded: EmbeddedRouterSettings = EmbeddedRouterSettings()
    llm: LlmRouterSettings = LlmRouterSettings()
    no_route_examples: list[Text] = []  # requests that must get no route
    bootstrap: Bootstrap | None = None
    cascade: Cascade | None = None
    llm_provider: Any = None
    model: Any = None
    model_provider: Any = None


class Overrides(Section):
    """Plano's global overrides. turnout reads `llm_routing_model` and its own
    `llm_routing_prompt`; any other key is accepted and ignored, because Plano's own schema leaves
    this section open."""

    model_config = ConfigDict(extra="allow")

    llm_routing_model: str | None = None
    # turnout extension: the router model's prompt format, when its name does not tell
    llm_routing_prompt: Literal["arch_router_v1", "plano_orchestrator_v1"] | None = None


class Observability(Section):
    """turnout's own telemetry settings (turnout extension, `observability`)."""

    access_log: bool = True  # one JSON line per request on stdout
    metrics: bool = True  # Prometheus metrics (off: nothing counted, metrics_path not served)
    metrics_path: str = "/metrics"  # Prometheus exposition on the model listener's port
    record_content: bool = False  # prompt and answer text in trace spans (off: never recorded)


class SpanAttributes(Section):
    header_prefixes: list[str] = []
    static: dict[str, str] = {}


class Tracing(Section):
    """OpenTelemetry export (Plano's `tracing`)."""

    plano_only = frozenset({"trace_arch_internal", "exporters"})

    random_sampling: Annotated[int, Field(ge=0, le=100)] | None = None
    opentracing_grpc_endpoint: str | None = None
    span_attributes: SpanAttributes | None = None
    trace_arch_internal: Any = None
    exporters: Any = None


@dataclass(frozen=True, slots=True)
class _ModelIndex:
    """Lookup tables over the providers, for turning the names clients send into configured ids."""

    ids: frozenset[str]
    by_bare_name: dict[str, list[str]]
    wildcard_providers: frozenset[str]

    @classmethod
    def of(cls, providers: list[ModelProvider]) -> _ModelIndex:
        by_bare_name: dict[str, list[str]] = {}
        for provider in providers:
            if not provider.is_wildcard:
                by_bare_name.setdefault(provider.model_name, []).append(provider.model)
        return cls(
            ids=frozenset(p.model for p in providers if not p.is_wildcard),
            by_bare_name=by_bare_name,
            wildcard_providers=frozenset(p.provider for p in providers if p.is_wildcard),
        )

    def resolve(self, name: str) -> str | None:
        if name in self.ids:
            return name
        matches = self.by_bare_name.get(name, [])
        if len(matches) == 1:
            return matches[0]
        provider, _, model = name.partition("/")
        if model and model != "*" and provider in self.wildcard_providers:
            return name
        return None


class Config(Section):
    """A validated configuration: a Plano config file, plus turnout's extensions.

    Build it with `load_config` or `parse_config`, which also fill `warnings`.
    """

    model_config = ConfigDict(coerce_numbers_to_str=True)  # `version: 0.4` reads as a YAML float

    plano_only = frozenset(
        {
            "agents",
            "endpoints",
            "system_prompt",
            "prompt_targets",
            "mode",
            "state_storage",
            "model_metrics_sources",
            "skills",
        }
    )

    version: Annotated[str, AfterValidator(_supported_version)] | None = None
    listeners: Annotated[list[Listener], AfterValidator(_one_model_listener)] = []
    model_providers: list[ModelProvider] = []
    routing_preferences: Routes = []
    aliases: dict[str, ModelAlias] = Field(default={}, alias="model_aliases")
    overrides: Overrides = Overrides()
    routing: Routing = Routing()
    ratelimits: list[RateLimit] = []
    tracing: Tracing | None = None
    agents: Any = None
    filters: list[Filter] = []
    endpoints: Any = None
    system_prompt: Any = None
    prompt_targets: Any = None
    prompt_guards: PromptGuards | None = None
    governance: Governance = Governance()  # turnout extension
    observability: Observability = Observability()  # turnout extension
    mode: Any = None
    state_storage: Any = None
    model_metrics_sources: Any = None
    skills: Any = None

    cross_referenced: ClassVar[frozenset[str]] = frozenset(
        {"model_providers", "model_aliases", "routing_preferences", "filters"}
    )
    """The sections `_references` looks names up in; it can run whenever these are valid (a
    section that only refers to them, dropped when broken, refers to nothing)."""

    _warnings: list[str] = PrivateAttr(default_factory=list)

    @property
    def warnings(self) -> list[str]:
        """Non-fatal findings, each `key.path: message`."""
        return list(self._warnings)

    @property
    def model_aliases(self) -> dict[str, str]:
        """Each alias and the configured model id it stands for."""
        return {
            alias: self._models.resolve(entry.target) or entry.target
            for alias, entry in self.aliases.items()
        }

    @property
    def model_listener(self) -> Listener | None:
        return next((listener for listener in self.listeners if listener.type == "model"), None)

    @property
    def model_port(self) -> int:
        listener = self.model_listener
        return listener.port if listener and listener.port else DEFAULT_MODEL_PORT

    @property
    def max_body_bytes(self) -> int:
        listener = self.model_listener
        return listener.max_body_bytes if listener else DEFAULT_MAX_BODY_BYTES

    @property
    def embedded_router(self) -> EmbeddedRouterSettings:
        return self.routing.embedded

    @property
    def default_model(self) -> str | None:
        """The provider marked `default: true`, else the first configured model that is not the
        router model."""
        marked = next((p.model for p in self.model_providers if p.default), None)
        router = self.llm_router_model
        return marked or next((m for m in self.model_ids() if m != router), None)

    @property
    def llm_router_model(self) -> str | None:
        """The configured model the LLM router runs on, when `overrides.llm_routing_model` names one."""
        name = self.overrides.llm_routing_model
        return self.resolve_model(name) if name else None

    def model_ids(self) -> list[str]:
        """Configured model ids in file order; `provider/*` wildcards are not ids."""
        return [provider.model for provider in self.model_providers if not provider.is_wildcard]

    def provider_for(self, model_id: str) -> ModelProvider | None:
        """The provider entry that serves a resolved model id: its own, else its `provider/*`."""
        exact = next((p for p in self.model_providers if p.model == model_id), None)
        wildcard = f"{model_id.partition('/')[0]}/*"
        return exact or next((p for p in self.model_providers if p.model == wildcard), None)

    def resolve_model(self, name: str) -> str | None:
        """The configured `provider/model` a client's model name stands for, or None.

        Tried in order: a configured id, an alias, a bare model id that exactly one provider
        serves, then any model of a provider configured as `provider/*`.
        """
        alias = self.aliases.get(name)
        if alias is not None and name not in self._models.ids:
            name = alias.target
        return self._models.resolve(name)

    @cached_property
    def _models(self) -> _ModelIndex:
        return _ModelIndex.of(self.model_providers)

    @model_validator(mode="after")
    def _references(self) -> Config:
        # Rules across entries: each must hold for the file to mean one thing.
        problems: list[tuple[Loc, str]] = [
            (("model_providers", i, "model"), f"duplicate model '{self.model_providers[i].model}'")
            for i in repeats(provider.model for provider in self.model_providers)
        ]
        defaults = [i for i, provider in enumerate(self.model_providers) if provider.default]
        problems += [
            (("model_providers", i, "default"), "more than one provider has default: true")
            for i in defaults[1:]
        ]
        for alias, entry in self.aliases.items():
            if problem := self._model_problem(entry.target, self._models.resolve(entry.target)):
                problems.append((("model_aliases", alias, "target"), problem))
        for r, route in enumerate(self.routing_preferences):
            for m, model in enumerate(route.models):
                if problem := self._model_problem(model, self.resolve_model(model)):
                    problems.append((("routing_preferences", r, "models", m), problem))
        problems += self._governance_problems()
        problems += self._routing_problems()
        fail(problems)
        return self

    def _governance_problems(self) -> Iterator[tuple[Loc, str]]:
        route_names = {route.name for route in self.routing_preferences}
        for k, key in enumerate(self.governance.client_keys):
            here = ("governance", "client_keys", k)
            for m, model in enumerate(key.models or []):
                if problem := self._model_problem(model, self.resolve_model(model)):
                    yield (*here, "models", m), problem
            for r, route in enumerate(key.routes or []):
                if route not in route_names:
                    yield (*here, "routes", r), f"unknown route '{route}'"
        if self.governance.client_keys:
            for i, provider in enumerate(self.model_providers):
                if provider.passthrough_auth:
                    yield (
                        ("model_providers", i, "passthrough_auth"),
                        "cannot be used with governance.client_keys: the client's key is turnout's",
                    )
        filters = {f.id: f for f in self.filters}
        for i, listener in enumerate(self.listeners):
            for chain in ("filter_chain", "output_filter_chain"):
                for f, filter_id in enumerate(getattr(listener, chain)):
                    loc = ("listeners", i, chain, f)
                    if filter_id not in filters:
                        yield loc, f"unknown filter '{filter_id}'"
                    elif filters[filter_id].type != "http":
                        yield (
                            loc,
                            f"filter '{filter_id}' is an MCP filter; turnout calls http filters (type: http)",
                        )

    def _routing_problems(self) -> Iterator[tuple[Loc, str]]:
        writer = self.routing.bootstrap.model if self.routing.bootstrap else None
        if writer is not None and (
            problem := self._model_problem(writer, self.resolve_model(writer))
        ):
            yield ("routing", "bootstrap", "model"), problem
        if self.routing.cascade is not None and self.llm_router_model is None:
            yield (
                ("routing", "cascade"),
                "needs an LLM router: set overrides.llm_routing_model to a configured model",
            )

    def _model_problem(self, name: str, resolved: str | None) -> str | None:
        if resolved is not None:
            return None
        if name.endswith("/*"):
            return f"'{name}' is a wildcard; name one of its models"
        matches = self._models.by_bare_name.get(name, [])
        if len(matches) > 1:
            return f"ambiguous model '{name}': {' or '.join(matches)}"
        return f"unknown model '{name}'"

    def findings(self) -> list[tuple[Loc, str]]:
        """Non-fatal observations about this config, each at its key path (the loader's `warnings`)."""
        notes: list[tuple[Loc, str]] = []
        if self.version is None:
            notes.append((("version",), f"not set; read as {CURRENT_VERSION} (Plano requires it)"))
        notes += [(loc, "not used by turnout; ignored") for loc in self._ignored_keys()]
        for i, provider in enumerate(self.model_providers):
            if provider.passthrough_auth and provider.access_key:
                notes.append(
                    (
                        ("model_providers", i, "access_key"),
                        "not sent: passthrough_auth forwards the client's Authorization header instead",
                    )
                )
        router = self.overrides.llm_routing_model
        if router is not None and self.resolve_model(router) is None:
            notes.append(
                (
                    ("overrides", "llm_routing_model"),
                    f"'{router}' is not a configured model; turnout routes with its embedded router instead",
                )
            )
        for i, limit in enumerate(self.ratelimits):
            if limit.model != "*" and self.resolve_model(limit.model) is None:
                notes.append(
                    (
                        ("ratelimits", i, "model"),
                        f"unknown model '{limit.model}'; this limit never applies",
                    )
                )
        return notes
