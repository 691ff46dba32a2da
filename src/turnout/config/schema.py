"""What a valid configuration is: Plano's keys, turnout's extensions, and how entries refer to each other.

Every mapping is a `Section`: keys it does not declare are errors, so a typo such as
`descripton` surfaces at load time instead of silently dropping a setting. Plano keys that
turnout accepts but does not act on are declared too, listed in `plano_only`, and reported
as warnings by the loader.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated, Any, ClassVar, Literal, TypeAlias
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from turnout.providers.registry import PROVIDERS

Loc: TypeAlias = tuple[str | int, ...]
"""A key path into the configuration, as pydantic reports error locations."""

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


def _fail(problems: Iterable[tuple[Loc, str]]) -> None:
    """Raise every problem at once, each at its own key path under the model being validated.

    pydantic merges a ValidationError raised in a validator into the enclosing one, so
    cross-entry rules report as precisely as type errors do.
    """
    errors = [
        InitErrorDetails(type=PydanticCustomError("invalid_config", message), loc=loc, input=None)
        for loc, message in problems
    ]
    if errors:
        raise ValidationError.from_exception_data("turnout config", errors)


def _repeats(keys: Iterable[object]) -> Iterator[int]:
    """Indexes of the keys already seen earlier in the sequence."""
    seen: set[object] = set()
    for index, key in enumerate(keys):
        if key in seen:
            yield index
        seen.add(key)


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


def _not_empty(items: list[str]) -> list[str]:
    if not items:
        raise PydanticCustomError("empty", "must not be empty")
    return items


def _model_id(value: str) -> str:
    provider, _, model = value.partition("/")
    if not provider.strip() or not model.strip():
        raise PydanticCustomError(
            "model_id",
            "expected '<provider>/<model>', or '<provider>/*' for all of a provider's models",
        )
    return value


def _http_url(value: str) -> str:
    # The value is never echoed: a URL can carry credentials.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "must be an http:// or https:// URL with a host name")
    return value


def _supported_version(value: str) -> str:
    if not _VERSION.fullmatch(value):
        raise PydanticCustomError(
            "version",
            f"unsupported version '{value}'; turnout reads Plano config versions v0.1 to v0.4",
        )
    return value


Text = Annotated[str, AfterValidator(_not_blank)]
Port = Annotated[int, Field(ge=1, le=65535)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]


class Section(BaseModel):
    """One mapping of the config file; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    plano_only: ClassVar[frozenset[str]] = frozenset()
    """Plano keys accepted for compatibility that turnout does not act on."""

    def _ignored_keys(self, loc: Loc = ()) -> Iterator[Loc]:
        """Key paths, under this section, of everything present that turnout ignores."""
        for name, field in type(self).model_fields.items():
            if name not in self.model_fields_set:
                continue
            here = (*loc, field.alias or name)
            if name in self.plano_only:
                yield here
            else:
                yield from _ignored_in(getattr(self, name), here)
        for key in self.model_extra or {}:
            yield (*loc, key)


def _ignored_in(value: object, loc: Loc) -> Iterator[Loc]:
    if isinstance(value, Section):
        yield from value._ignored_keys(loc)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _ignored_in(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _ignored_in(item, (*loc, key))


class SelectionPolicy(Section):
    """How a route orders its models before they are tried (Plano's `selection_policy`)."""

    prefer: Literal["none", "cheapest", "fastest", "random", "long_context_quality"]


class RoutingPreference(Section):
    """A route: a kind of request described in plain language, and the models to serve it, best first."""

    plano_only = frozenset({"skills"})

    name: Text
    description: str = ""
    models: Annotated[list[Text], AfterValidator(_not_empty)]
    examples: list[Text] = []  # turnout extension: sample requests that belong to this route
    selection_policy: SelectionPolicy | None = None
    skills: Any = None

    @model_validator(mode="after")
    def _described(self) -> RoutingPreference:
        # Plano requires a description; turnout also accepts a route known only by its examples.
        if not self.description.strip() and not self.examples:
            _fail([(("description",), "a route needs a description or examples")])
        return self


def _unique_names(routes: list[RoutingPreference]) -> list[RoutingPreference]:
    # The router answers with a route name, so two routes with one name could not be told apart.
    _fail(
        ((index, "name"), f"duplicate route name '{routes[index].name}'")
        for index in _repeats(route.name for route in routes)
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
        _fail(problems)
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
    _fail(((i, "type"), "only one model listener is supported") for i in model_listeners[1:])
    return listeners


class SessionCache(Section):
    """Where pinned routing decisions are kept: in process, or in Redis to share them across replicas."""

    type: Literal["memory", "redis"] = "memory"
    url: str | None = None
    tenant_header: str | None = None

    @model_validator(mode="after")
    def _redis_has_url(self) -> SessionCache:
        if self.type == "redis" and not self.url:
            _fail([(("url",), "required when type is redis")])
        return self


class EmbeddedRouterSettings(Section):
    """The in-process embedding router (turnout extension, `routing.embedded`)."""

    threads: Annotated[int, Field(ge=1)] = 1


class LlmRouterSettings(Section):
    """Calling the LLM router named by `overrides.llm_routing_model` (turnout extension, `routing.llm`)."""

    timeout_seconds: Annotated[float, Field(gt=0)] = 1.0  # then the embedded router decides
    failures_to_open: Annotated[int, Field(ge=1)] = 3  # failures in a row that open the breaker
    cooldown_seconds: Annotated[float, Field(gt=0)] = 30.0  # skip the router this long, then probe


class Routing(Section):
    """Plano's `routing` section (session pinning), plus turnout's router settings."""

    plano_only = frozenset({"llm_provider", "model", "model_provider"})

    session_ttl_seconds: Annotated[int, Field(ge=1)] = 600
    session_max_entries: Annotated[int, Field(ge=1, le=10000)] = 10000
    session_cache: SessionCache = SessionCache()
    embedded: EmbeddedRouterSettings = EmbeddedRouterSettings()
    llm: LlmRouterSettings = LlmRouterSettings()
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


class RateLimitSelector(Section):
    key: Text
    value: str


class TokenLimit(Section):
    tokens: Annotated[int, Field(ge=0)]
    unit: Literal["second", "minute", "hour", "day"]


class RateLimit(Section):
    """A token budget for one model, per value of a request header (Plano's `ratelimits` entry)."""

    model: Text
    selector: RateLimitSelector
    limit: TokenLimit


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
            "filters",
            "endpoints",
            "system_prompt",
            "prompt_targets",
            "prompt_guards",
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
    filters: Any = None
    endpoints: Any = None
    system_prompt: Any = None
    prompt_targets: Any = None
    prompt_guards: Any = None
    mode: Any = None
    state_storage: Any = None
    model_metrics_sources: Any = None
    skills: Any = None

    cross_referenced: ClassVar[frozenset[str]] = frozenset(
        {"model_providers", "model_aliases", "routing_preferences"}
    )
    """The sections `_references` reads; it can run whenever these are valid."""

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
            for i in _repeats(provider.model for provider in self.model_providers)
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
        _fail(problems)
        return self

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
            if self.resolve_model(limit.model) is None:
                notes.append(
                    (
                        ("ratelimits", i, "model"),
                        f"unknown model '{limit.model}'; this limit never applies",
                    )
                )
        return notes
