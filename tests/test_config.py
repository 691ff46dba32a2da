"""Configuration: Plano compatibility, turnout's extensions, and every problem reported at its key path."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from turnout.config import (
    Config,
    ConfigError,
    ModelProvider,
    RoutingPreference,
    load_config,
    parse_config,
    parse_routing_preferences,
)

CONFIGS = Path(__file__).parent / "configs"
SHARED_SUITES = Path(__file__).resolve().parents[2] / "shared" / "data" / "routing"
KEYS = {
    "OPENAI_API_KEY": "sk-openai",
    "ANTHROPIC_API_KEY": "sk-anthropic",
    "MISTRAL_API_KEY": "sk-mistral",
}

SEED_DEMO = """\
version: v0.4.0
listeners:
  - type: model
    name: model_listener
    port: 12000
model_providers:
  - model: openai/gpt-4o-mini
    access_key: $OPENAI_API_KEY
    default: true
  - model: openai/gpt-4o
    access_key: $OPENAI_API_KEY
  - model: anthropic/claude-sonnet-4-20250514
    access_key: $ANTHROPIC_API_KEY
routing_preferences:
  - name: complex_reasoning
    description: complex reasoning tasks, multi-step analysis, or detailed explanations
    models: [openai/gpt-4o, openai/gpt-4o-mini]
  - name: code_generation
    description: generating new code, writing functions, or creating boilerplate
    models: [anthropic/claude-sonnet-4-20250514, openai/gpt-4o]
"""


def base(**sections: Any) -> dict[str, Any]:
    """A small valid config as data, with `sections` replacing or adding top-level keys."""
    config: dict[str, Any] = {
        "version": "v0.4.0",
        "model_providers": [
            {"model": "openai/gpt-4o-mini", "access_key": "k", "default": True},
            {"model": "openai/gpt-4o", "access_key": "k"},
            {"model": "anthropic/claude-sonnet-4-0", "access_key": "k"},
        ],
        "routing_preferences": [
            {"name": "code", "description": "writing code", "models": ["openai/gpt-4o"]},
        ],
    }
    config.update(sections)
    return config


def problems_of(document: str | dict[str, Any], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_config(document, env=env if env is not None else KEYS)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return caught.value.problems


# --- Plano files load unchanged -------------------------------------------------------------


def test_seed_demo_loads_unchanged() -> None:
    config = parse_config(SEED_DEMO, env=KEYS)

    assert isinstance(config, Config)
    assert config.warnings == []
    assert config.model_port == 12000
    assert config.default_model == "openai/gpt-4o-mini"
    assert config.model_ids() == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-20250514",
    ]
    assert [route.name for route in config.routing_preferences] == [
        "complex_reasoning",
        "code_generation",
    ]
    route = config.routing_preferences[1]
    assert isinstance(route, RoutingPreference)
    assert route.description == "generating new code, writing functions, or creating boilerplate"
    assert route.models == ["anthropic/claude-sonnet-4-20250514", "openai/gpt-4o"]
    assert route.examples == []
    provider = config.model_providers[2]
    assert isinstance(provider, ModelProvider)
    assert (provider.model, provider.provider, provider.model_name) == (
        "anthropic/claude-sonnet-4-20250514",
        "anthropic",
        "claude-sonnet-4-20250514",
    )
    assert provider.access_key == "sk-anthropic"
    assert provider.base_url is None and provider.default is False
    assert config.embedded_router.threads == 1
    assert config.max_body_bytes == 8 * 1024 * 1024


@pytest.mark.parametrize("suite", ["seed", "clinc-dev", "general-dev"])
def test_shared_eval_suites_load(suite: str) -> None:
    config = load_config(SHARED_SUITES / suite / "routes.yaml", env={"EVAL_KEY": "k"})

    assert config.warnings == []
    assert config.routing_preferences
    assert all(
        config.resolve_model(m) for route in config.routing_preferences for m in route.models
    )


def test_load_config_reads_the_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(SEED_DEMO)
    monkeypatch.setenv("OPENAI_API_KEY", "from-env")
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)

    config = load_config(path)

    assert config.model_providers[0].access_key == "from-env"
    assert config.model_providers[2].access_key is None


def test_plano_full_reference_shape_loads_and_reports_what_turnout_ignores() -> None:
    config = load_config(CONFIGS / "plano_full.yaml", env=KEYS)

    assert config.model_port == 12001
    assert config.model_aliases == {"fast-llm": "openai/gpt-4o-mini", "smart-llm": "openai/gpt-4o"}
    assert config.routing_preferences[0].selection_policy is not None
    assert config.routing_preferences[0].selection_policy.prefer == "cheapest"
    assert config.routing.session_cache.type == "redis"
    assert (config.routing.session_ttl_seconds, config.routing.session_max_entries) == (300, 5000)
    assert config.ratelimits[0].limit.tokens == 100000 and config.ratelimits[0].limit.unit == "hour"
    assert config.tracing is not None and config.tracing.random_sampling == 100
    assert config.model_providers[3].headers == {"X-Team": "platform"}
    assert config.model_providers[3].http_host == "llm.internal.example.com"
    assert config.prompt_guards is not None
    assert config.prompt_guards.jailbreak_message == "I can't help with that."
    assert [f.id for f in config.filters] == ["input_guards"]
    assert config.warnings == [
        "agents: not used by turnout; ignored",
        "model_providers[6].capabilities: not used by turnout; ignored",
        "listeners[0]: not used by turnout; ignored",
        "listeners[1].address: not used by turnout; ignored",
        "listeners[1].timeout: not used by turnout; ignored",
        "listeners[1].input_filters: not used by turnout; ignored",
        "listeners[2]: not used by turnout; ignored",
        "endpoints: not used by turnout; ignored",
        "system_prompt: not used by turnout; ignored",
        "prompt_targets: not used by turnout; ignored",
        "overrides.upstream_connect_timeout: not used by turnout; ignored",
        (
            "overrides.llm_routing_model: 'Plano-Orchestrator' is not a configured model;"
            " turnout routes with its embedded router instead"
        ),
        "state_storage: not used by turnout; ignored",
        "tracing.trace_arch_internal: not used by turnout; ignored",
    ]


def test_sections_turnout_ignores_are_not_substituted() -> None:
    # state_storage carries $DB_PASSWORD, which is not set: Plano's business, not an error here.
    config = load_config(CONFIGS / "plano_full.yaml", env=KEYS)

    assert (
        config.state_storage["connection_string"]
        == "postgresql://plano:$DB_PASSWORD@localhost:5432/plano"
    )


# --- Plano's older shapes -------------------------------------------------------------------


def test_archgw_v030_file_is_migrated_in_memory() -> None:
    config = load_config(CONFIGS / "archgw_v030.yaml", env=KEYS)

    assert config.model_port == 12500
    assert [p.model for p in config.model_providers] == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o",
        "anthropic/claude-3-5-sonnet-latest",
    ]
    assert [(r.name, r.description, r.models) for r in config.routing_preferences] == [
        (
            "code understanding",
            "understanding and explaining existing code",
            ["openai/gpt-4o", "anthropic/claude-3-5-sonnet-latest"],
        ),
        (
            "code generation",
            "generating new code, functions or boilerplate",
            ["anthropic/claude-3-5-sonnet-latest"],
        ),
    ]
    assert config.warnings == [
        "listeners: legacy egress_traffic/ingress_traffic form; read as a list of listeners",
        "listeners.egress_traffic.timeout: not used by turnout; ignored",
        "llm_providers: old name of model_providers; read as model_providers",
        (
            "llm_providers[1].routing_preferences: per-provider routes are Plano's v0.3.0 form;"
            " read as top-level routing_preferences"
        ),
    ]


def test_llm_providers_and_model_providers_together_is_an_error() -> None:
    data = base(llm_providers=[{"model": "openai/gpt-4o"}])

    assert problems_of(data) == [
        "llm_providers: use model_providers or its old name llm_providers, not both"
    ]


def test_errors_under_llm_providers_name_the_key_the_user_wrote() -> None:
    data = base()
    data["llm_providers"] = data.pop("model_providers")
    data["llm_providers"][1]["default"] = "perhaps"

    assert problems_of(data) == [
        "llm_providers[1].default: Input should be a valid boolean, unable to interpret input"
    ]


def test_v030_routes_with_conflicting_descriptions_are_an_error() -> None:
    data = base(routing_preferences=[])
    data["model_providers"][0]["routing_preferences"] = [
        {"name": "code", "description": "writing code"}
    ]
    data["model_providers"][1]["routing_preferences"] = [
        {"name": "code", "description": "reading code"}
    ]

    assert problems_of(data) == [
        (
            "model_providers[1].routing_preferences[0].description: route 'code' was declared before"
            " with a different description"
        )
    ]


def test_v030_route_problems_are_reported_where_the_route_was_written() -> None:
    data = base(routing_preferences=[])
    data["model_providers"][2]["routing_preferences"] = [{"name": "code", "descripton": "typo"}]

    assert problems_of(data) == [
        "model_providers[2].routing_preferences[0].descripton: unknown key",
    ]


def test_malformed_v030_routes_are_reported_where_they_were_written() -> None:
    data = base()
    data["model_providers"][0]["routing_preferences"] = "code"
    data["model_providers"][1]["routing_preferences"] = [{"name": 5, "description": "x"}]

    assert problems_of(data) == [
        "model_providers[0].routing_preferences: expected a list of routes, each with a name and a description",
        "model_providers[1].routing_preferences[0].name: Input should be a valid string",
    ]


def test_v030_top_level_route_of_the_same_name_wins() -> None:
    data = base()
    data["model_providers"][2]["routing_preferences"] = [{"name": "code", "description": "other"}]

    config = parse_config(data)

    assert [(r.name, r.models) for r in config.routing_preferences] == [("code", ["openai/gpt-4o"])]
    assert (
        "model_providers[2].routing_preferences[0]: route 'code' is also defined at the top level, which wins"
        in (config.warnings)
    )


def test_v030_routes_on_a_wildcard_provider_are_an_error() -> None:
    data = base(
        model_providers=[
            {"model": "openai/*", "routing_preferences": [{"name": "a", "description": "b"}]}
        ]
    )
    data["routing_preferences"] = []

    assert problems_of(data) == [
        "model_providers[0].routing_preferences: a wildcard provider cannot serve routes; name one of its models"
    ]


def test_legacy_listener_problems_name_the_legacy_key() -> None:
    data = base(listeners={"egress_traffic": {"port": 0}, "ingres_traffic": {}})

    assert problems_of(data) == [
        "listeners.ingres_traffic: unknown key",
        "listeners.egress_traffic.port: Input should be greater than or equal to 1",
    ]


# --- version ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "version", ["v0.1", "v0.1.0", "0.1-beta", "0.2.0", "v0.3.0", "v0.4.0", "v0.4.2", 0.4]
)
def test_plano_versions_are_accepted(version: object) -> None:
    config = parse_config(base(version=version))

    assert config.version == str(version)
    assert config.warnings == []


@pytest.mark.parametrize("version", ["v0.5.0", "v1.0", "latest"])
def test_unsupported_version_is_an_error(version: str) -> None:
    assert problems_of(base(version=version)) == [
        f"version: unsupported version '{version}'; turnout reads Plano config versions v0.1 to v0.4"
    ]


def test_missing_version_is_read_as_current_with_a_warning() -> None:
    data = base()
    del data["version"]

    assert parse_config(data).warnings == ["version: not set; read as v0.4.0 (Plano requires it)"]


# --- environment variables -----------------------------------------------------------------


def test_variables_are_substituted_in_every_string() -> None:
    data = base(listeners=[{"type": "model", "name": "${LISTENER}", "port": "$PORT"}])
    data["model_providers"].append(
        {
            "model": "ollama/llama3",
            "base_url": "http://${OLLAMA_HOST}:11434",
            "headers": {"X-Cost": "$$5 per $UNIT"},
        }
    )
    data["routing_preferences"][0]["description"] = "code in $LANGUAGE"
    env = {
        "LISTENER": "edge",
        "PORT": "8080",
        "OLLAMA_HOST": "gpu-1",
        "UNIT": "call",
        "LANGUAGE": "Rust",
    }

    config = parse_config(data, env=env)

    assert config.model_listener is not None and config.model_listener.name == "edge"
    assert config.model_port == 8080
    assert config.model_providers[3].base_url == "http://gpu-1:11434"
    assert config.model_providers[3].headers == {"X-Cost": "$5 per call"}
    assert config.routing_preferences[0].description == "code in Rust"


def test_missing_variable_is_an_error_at_its_key_path() -> None:
    data = base(listeners=[{"type": "model", "port": "${PORT}"}])
    data["routing_preferences"][0]["description"] = "code in $LANGUAGE"

    assert problems_of(data, env={}) == [  # in file order: listeners were added last
        "routing_preferences[0].description: environment variable LANGUAGE is not set",
        "listeners[0].port: environment variable PORT is not set",
    ]


def test_missing_access_key_variable_is_a_warning_and_no_key() -> None:
    config = parse_config(SEED_DEMO, env={"ANTHROPIC_API_KEY": "sk-anthropic"})

    assert [p.access_key for p in config.model_providers] == [None, None, "sk-anthropic"]
    assert config.warnings == [
        (
            "model_providers[0].access_key: environment variable OPENAI_API_KEY is not set;"
            " calls to openai/gpt-4o-mini will fail until it is"
        ),
        (
            "model_providers[1].access_key: environment variable OPENAI_API_KEY is not set;"
            " calls to openai/gpt-4o will fail until it is"
        ),
    ]


# --- Plano's other keys --------------------------------------------------------------------


def test_model_aliases_resolve_to_configured_ids() -> None:
    config = parse_config(
        base(
            model_aliases={"fast": {"target": "gpt-4o-mini"}, "smart": {"target": "openai/gpt-4o"}}
        )
    )

    assert config.model_aliases == {"fast": "openai/gpt-4o-mini", "smart": "openai/gpt-4o"}
    assert config.resolve_model("fast") == "openai/gpt-4o-mini"


def test_alias_with_unknown_target_is_an_error() -> None:
    assert problems_of(base(model_aliases={"fast": {"target": "openai/gpt-5"}})) == [
        "model_aliases.fast.target: unknown model 'openai/gpt-5'"
    ]


def test_llm_routing_model_naming_a_configured_provider_gives_no_warning() -> None:
    data = base(overrides={"llm_routing_model": "Arch-Router"})
    data["model_providers"].append(
        {"model": "ollama/Arch-Router", "base_url": "http://localhost:11434"}
    )

    config = parse_config(data)

    assert config.overrides.llm_routing_model == "Arch-Router"
    assert config.resolve_model("Arch-Router") == "ollama/Arch-Router"
    assert config.warnings == []


def test_ratelimit_on_an_unknown_model_is_a_warning() -> None:
    limit = {
        "model": "openai/gpt-5",
        "selector": {"key": "x-user", "value": "*"},
        "limit": {"tokens": 10, "unit": "minute"},
    }

    assert parse_config(base(ratelimits=[limit])).warnings == [
        "ratelimits[0].model: unknown model 'openai/gpt-5'; this limit never applies"
    ]


def test_passthrough_auth_with_an_access_key_is_a_warning() -> None:
    data = base()
    data["model_providers"][1]["passthrough_auth"] = True

    assert parse_config(data).warnings == [
        "model_providers[1].access_key: not sent: passthrough_auth forwards the client's Authorization header instead"
    ]


def test_turnout_extensions() -> None:
    data = base(
        listeners=[{"type": "model", "port": 9000, "max_body_bytes": 1024}],
        routing={"embedded": {"threads": 4}},
    )
    data["routing_preferences"].append(
        {"name": "greeting", "models": ["openai/gpt-4o-mini"], "examples": ["hi there"]}
    )

    config = parse_config(data)

    assert (config.model_port, config.max_body_bytes, config.embedded_router.threads) == (
        9000,
        1024,
        4,
    )
    assert config.routing_preferences[1].examples == ["hi there"]
    assert config.routing_preferences[1].description == ""


def test_defaults_without_listeners() -> None:
    config = parse_config({"version": "v0.4.0"})

    assert (config.model_port, config.max_body_bytes, config.default_model) == (
        12000,
        8 * 1024 * 1024,
        None,
    )
    assert config.routing.session_cache.type == "memory"


def test_observability_metrics_is_on_by_default_and_a_boolean() -> None:
    assert parse_config(base()).observability.metrics is True
    assert parse_config(base(observability={"metrics": False})).observability.metrics is False
    # Read as every boolean of the file is (access_log, record_content...): "false", "no", "off"
    # and 0 are false. $VARs become strings, so this is what makes `metrics: $VAR` work.
    from_env = base(observability={"metrics": "$TURNOUT_METRICS"})
    assert parse_config(from_env, env={"TURNOUT_METRICS": "false"}).observability.metrics is False
    assert parse_config(base(observability={"metrics": "no"})).observability.metrics is False


# --- model resolution ----------------------------------------------------------------------


def test_resolve_model() -> None:
    data = base(model_aliases={"fast": {"target": "gpt-4o-mini"}})
    data["model_providers"] += [
        {"model": "mistral/*", "access_key": "k"},
        {"model": "azure_openai/gpt-4o", "base_url": "https://example.openai.azure.com"},
    ]
    config = parse_config(data)

    assert config.resolve_model("openai/gpt-4o") == "openai/gpt-4o"
    assert config.resolve_model("gpt-4o-mini") == "openai/gpt-4o-mini"
    assert config.resolve_model("claude-sonnet-4-0") == "anthropic/claude-sonnet-4-0"
    assert config.resolve_model("gpt-4o") is None  # openai's and azure's: ambiguous
    assert config.resolve_model("fast") == "openai/gpt-4o-mini"
    assert config.resolve_model("mistral/mistral-large-latest") == "mistral/mistral-large-latest"
    assert config.resolve_model("mistral/*") is None
    assert config.resolve_model("mistral-large-latest") is None
    assert config.resolve_model("openai/gpt-5") is None
    assert config.model_ids() == [
        "openai/gpt-4o-mini",
        "openai/gpt-4o",
        "anthropic/claude-sonnet-4-0",
        "azure_openai/gpt-4o",
    ]


def test_default_model_is_the_marked_provider_else_the_first_concrete_one() -> None:
    data = base()
    data["model_providers"][0]["default"] = False
    data["model_providers"][2]["default"] = True
    assert parse_config(data).default_model == "anthropic/claude-sonnet-4-0"

    data = base(
        model_providers=[{"model": "mistral/*"}, {"model": "openai/gpt-4o"}], routing_preferences=[]
    )
    assert parse_config(data).default_model == "openai/gpt-4o"


# --- routes --------------------------------------------------------------------------------


def test_unknown_route_model_is_an_error() -> None:
    data = base()
    data["routing_preferences"].append(
        {"name": "chat", "description": "chat", "models": ["openai/gpt-5"]}
    )

    assert problems_of(data) == ["routing_preferences[1].models[0]: unknown model 'openai/gpt-5'"]


def test_aliases_bare_ids_and_wildcards_count_as_configured_route_models() -> None:
    data = base(model_aliases={"fast": {"target": "openai/gpt-4o-mini"}})
    data["model_providers"].append({"model": "mistral/*", "access_key": "k"})
    data["routing_preferences"][0]["models"] = [
        "fast",
        "claude-sonnet-4-0",
        "mistral/codestral-latest",
    ]

    assert parse_config(data).routing_preferences[0].models == [
        "fast",
        "claude-sonnet-4-0",
        "mistral/codestral-latest",
    ]


def test_route_model_that_is_a_wildcard_or_ambiguous_is_an_error() -> None:
    data = base()
    data["model_providers"] += [
        {"model": "mistral/*"},
        {"model": "azure_openai/gpt-4o", "base_url": "https://example.openai.azure.com"},
    ]
    data["routing_preferences"][0]["models"] = ["mistral/*", "gpt-4o"]

    assert problems_of(data) == [
        "routing_preferences[0].models[0]: 'mistral/*' is a wildcard; name one of its models",
        "routing_preferences[0].models[1]: ambiguous model 'gpt-4o': openai/gpt-4o or azure_openai/gpt-4o",
    ]


def test_route_rules() -> None:
    routes = [
        {"name": "code", "description": "writing code", "models": ["openai/gpt-4o"]},
        {"name": "code", "description": "more code", "models": ["openai/gpt-4o"]},
        {"name": " ", "description": "blank name", "models": ["openai/gpt-4o"]},
        {"name": "empty", "description": "no models", "models": []},
        {"name": "vague", "description": "", "models": ["openai/gpt-4o"]},
        {"name": "typo", "descripton": "x", "models": ["openai/gpt-4o"]},
        {
            "name": "policy",
            "description": "x",
            "models": ["openai/gpt-4o"],
            "selection_policy": {"prefer": "best"},
        },
    ]

    assert problems_of(base(routing_preferences=routes)) == [
        "routing_preferences[2].name: must not be empty",
        "routing_preferences[3].models: must not be empty",
        "routing_preferences[4].description: a route needs a description or examples",
        "routing_preferences[5].descripton: unknown key",
        (
            "routing_preferences[6].selection_policy.prefer: Input should be 'none', 'cheapest', 'fastest',"
            " 'random' or 'long_context_quality'"
        ),
    ]
    assert problems_of(base(routing_preferences=routes[:2])) == [
        "routing_preferences[1].name: duplicate route name 'code'"
    ]


# --- providers -----------------------------------------------------------------------------


def test_provider_rules() -> None:
    providers = [
        {"model": "openai/gpt-4o", "default": True},
        {
            "model": "gpt-4o-mini",
            "provider_interface": "openai",
            "base_url": "http://localhost:8000",
        },
        {"model": "acme/llm-1"},
        {"model": "acme/llm-2", "base_url": "http://acme.local", "provider_interface": "openai"},
        {"model": "ollama/llama3"},
        {"model": "openai/*", "default": True},
        {"model": "openai/o3", "base_url": "ftp://example.com"},
        {"model": "openai/o4", "acess_key": "k"},
    ]

    assert problems_of(base(model_providers=providers, routing_preferences=[])) == [
        "model_providers[1].model: expected '<provider>/<model>', or '<provider>/*' for all of a provider's models",
        "model_providers[2].model: unknown provider 'acme': set base_url and provider_interface to use it",
        "model_providers[4].base_url: required for provider 'ollama'",
        "model_providers[5].default: a wildcard provider cannot be the default",
        "model_providers[6].base_url: must be an http:// or https:// URL with a host name",
        "model_providers[7].acess_key: unknown key",
    ]


def test_duplicate_models_and_defaults_are_errors() -> None:
    providers = [
        {"model": "openai/gpt-4o", "default": True},
        {"model": "openai/gpt-4o-mini", "default": True},
        {"model": "openai/gpt-4o"},
    ]

    assert problems_of(base(model_providers=providers, routing_preferences=[])) == [
        "model_providers[2].model: duplicate model 'openai/gpt-4o'",
        "model_providers[1].default: more than one provider has default: true",
    ]


# --- listeners and numbers ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sections", "problem"),
    [
        (
            {"listeners": [{"type": "model", "port": 0}]},
            "listeners[0].port: Input should be greater than or equal to 1",
        ),
        (
            {"listeners": [{"type": "model", "port": -1}]},
            "listeners[0].port: Input should be greater than or equal to 1",
        ),
        (
            {"listeners": [{"type": "model", "port": 70000}]},
            "listeners[0].port: Input should be less than or equal to 65535",
        ),
        (
            {"listeners": [{"type": "model", "max_body_bytes": 0}]},
            "listeners[0].max_body_bytes: Input should be greater than 0",
        ),
        ({"listeners": [{"type": "model", "prot": 1}]}, "listeners[0].prot: unknown key"),
        ({"listeners": [{"name": "x"}]}, "listeners[0].type: required key is missing"),
        (
            {"listeners": [{"type": "model"}, {"type": "model", "port": 12001}]},
            "listeners[1].type: only one model listener is supported",
        ),
        (
            {"routing": {"embedded": {"threads": 0}}},
            "routing.embedded.threads: Input should be greater than or equal to 1",
        ),
        ({"routing": {"embedded": {"thread": 2}}}, "routing.embedded.thread: unknown key"),
        (
            {"routing": {"session_cache": {"type": "redis"}}},
            "routing.session_cache.url: required when type is redis",
        ),
        (
            {"routing": {"session_max_entries": 20000}},
            "routing.session_max_entries: Input should be less than or equal to 10000",
        ),
        (
            {"model_providers": {"model": "openai/gpt-4o"}},
            "model_providers: Input should be a valid list",
        ),
        ({"routing_preference": []}, "routing_preference: unknown key"),
        (
            {"observability": {"metrics": "perhaps"}},
            "observability.metrics: Input should be a valid boolean, unable to interpret input",
        ),
        (
            {"observability": {"metrics": ["off"]}},
            "observability.metrics: Input should be a valid boolean",
        ),
        ({"observability": {"metric": False}}, "observability.metric: unknown key"),
    ],
)
def test_wrong_values_are_reported_at_their_key_path(
    sections: dict[str, Any], problem: str
) -> None:
    data = base(**sections)
    if "model_providers" in sections:
        data["routing_preferences"] = []

    assert problems_of(data) == [problem]


def test_every_problem_is_collected_in_one_error() -> None:
    data = base(
        model_aliases={"fast": {"target": "nope"}},
        listeners=[{"type": "model", "port": "$PORT"}],
        routing={"embedded": {"threads": 0}},
    )
    data["model_providers"].append({"model": "openai/gpt-4o", "default": True})
    data["routing_preferences"][0]["models"].append("openai/gpt-5")

    assert problems_of(data, env={}) == [
        "model_providers[3].model: duplicate model 'openai/gpt-4o'",
        "model_providers[3].default: more than one provider has default: true",
        "routing_preferences[0].models[1]: unknown model 'openai/gpt-5'",
        "model_aliases.fast.target: unknown model 'nope'",
        "listeners[0].port: environment variable PORT is not set",
        "routing.embedded.threads: Input should be greater than or equal to 1",
    ]


# --- files and YAML ------------------------------------------------------------------------


def test_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path / "missing.yaml")

    assert caught.value.problems == [f"{tmp_path / 'missing.yaml'}: file not found"]


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)

    assert caught.value.problems[0].startswith(f"{tmp_path}: cannot read the file (")


def test_yaml_syntax_error_names_line_and_column(tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(
        "version: v0.4.0\nmodel_providers:\n  - model: openai/gpt-4o\n    access_key: x: y\n"
    )

    with pytest.raises(ConfigError) as caught:
        load_config(path)

    assert caught.value.problems == [
        f"{path}, line 4, column 18: mapping values are not allowed here"
    ]


def test_duplicate_yaml_keys_are_an_error() -> None:
    text = (
        "version: v0.4.0\nrouting_preferences: []\nmodel_providers: []\nrouting_preferences: []\n"
    )

    assert problems_of(text) == [
        "<string>, line 4, column 1: duplicate key 'routing_preferences' (first at line 2)"
    ]


def test_yaml_merge_keys_still_work() -> None:
    config = parse_config(
        "version: v0.4.0\nmodel_providers:\n  - &p {model: openai/gpt-4o, access_key: k}\n"
        "  - <<: *p\n    model: openai/gpt-4o-mini\n"
    )

    assert config.model_ids() == ["openai/gpt-4o", "openai/gpt-4o-mini"]
    assert config.model_providers[1].access_key == "k"


@pytest.mark.parametrize(
    ("text", "found"),
    [("", "the file is empty"), ("- a\n- b\n", "found list"), ("just text", "found str")],
)
def test_top_level_must_be_a_mapping(text: str, found: str) -> None:
    assert problems_of(text) == [f"<string>: the top level must be a mapping of keys ({found})"]


# --- secrets -------------------------------------------------------------------------------


def test_secrets_never_appear_in_errors_or_warnings() -> None:
    secret = "sk-live-DO-NOT-LEAK"
    env = {"KEY": secret}
    bad = base(
        model_providers=[
            {"model": "openai/gpt-4o", "access_key": "$KEY", "passthrough_auth": True},
            {"model": "openai/gpt-4o-mini", "access_key": ["$KEY"]},
            {"model": "openai/o3", "base_url": f"ftp://user:{secret}@host"},
            {"model": "openai/o4", "headers": {"Authorization": 7}, "access_key": "$KEY"},
        ],
        routing_preferences=[],
    )

    problems = problems_of(bad, env=env)
    good = parse_config(
        base(model_providers=bad["model_providers"][:1], routing_preferences=[]), env=env
    )

    assert len(problems) == 3
    assert good.model_providers[0].access_key == secret
    assert good.warnings
    assert secret not in "\n".join(problems + good.warnings)


def test_yaml_errors_do_not_echo_the_offending_text() -> None:
    problems = problems_of('model_providers:\n  - access_key: "sk-secret\\q"\n')

    assert problems == [
        (
            "<string>, line 2, column 28: found unknown escape character 'q'"
            " (while scanning a double-quoted scalar at line 2, column 17)"
        )
    ]


# --- routing preferences from a request body ------------------------------------------------


def test_request_routing_preferences_are_validated_without_the_config() -> None:
    routes = parse_routing_preferences(
        [
            {
                "name": "code",
                "description": "writing code",
                "models": ["openai/gpt-5", "my-local-model"],
            },
            {"name": "greetings", "models": ["openai/gpt-4o-mini"], "examples": ["hello!"]},
        ]
    )

    assert [(r.name, r.models) for r in routes] == [
        ("code", ["openai/gpt-5", "my-local-model"]),
        ("greetings", ["openai/gpt-4o-mini"]),
    ]


def test_request_routing_preferences_problems_are_under_where() -> None:
    raw = [
        {"name": "a", "description": "x", "models": ["m"]},
        {"name": "a", "description": "y", "models": ["m"]},
        {"name": "", "description": "z", "models": ["m"]},
        {"name": "b", "models": ["m"]},
        {"name": "c", "description": "w", "models": []},
        {"name": "d", "description": "v", "model": ["m"]},
    ]

    with pytest.raises(ConfigError) as caught:
        parse_routing_preferences(raw, where="body.routing_preferences")

    assert caught.value.problems == [
        "body.routing_preferences[2].name: must not be empty",
        "body.routing_preferences[3].description: a route needs a description or examples",
        "body.routing_preferences[4].models: must not be empty",
        "body.routing_preferences[5].models: required key is missing",
        "body.routing_preferences[5].model: unknown key",
    ]
    with pytest.raises(ConfigError) as caught:
        parse_routing_preferences(raw[:2])
    assert caught.value.problems == ["routing_preferences[1].name: duplicate route name 'a'"]


def test_request_routing_preferences_must_be_a_list() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_routing_preferences({"name": "a"})

    assert caught.value.problems == ["routing_preferences: Input should be a valid list"]


# --- route evidence and the cascade (routing.bootstrap, routing.cascade) --------------------


def with_router(**routing: Any) -> dict[str, Any]:
    """The small config with an LLM router model configured and `routing` set."""
    data = base(overrides={"llm_routing_model": "openai/gpt-4o-mini"}, routing=routing)
    return data


def test_routing_no_route_examples_bootstrap_and_cascade_load() -> None:
    config = parse_config(
        with_router(
            no_route_examples=["what's the capital of France?", "tell me a joke"],
            bootstrap={"cache_path": "route-examples.yaml", "model": "gpt-4o", "per_route": 10},
            cascade={"min_confidence": 0.6},
        )
    )

    assert config.routing.no_route_examples == ["what's the capital of France?", "tell me a joke"]
    assert config.routing.bootstrap is not None
    assert (config.routing.bootstrap.model, config.routing.bootstrap.per_route) == ("gpt-4o", 10)
    assert config.routing.cascade is not None
    assert config.routing.cascade.min_confidence == 0.6
    assert config.warnings == []


def test_routing_evidence_and_cascade_are_off_by_default() -> None:
    config = parse_config(base())
    assert config.routing.no_route_examples == []
    assert (config.routing.bootstrap, config.routing.cascade) == (None, None)


@pytest.mark.parametrize("min_confidence", [0, 1, 0.0, 1.0])
def test_the_cascade_bounds_are_accepted(min_confidence: float) -> None:
    config = parse_config(with_router(cascade={"min_confidence": min_confidence}))
    assert config.routing.cascade is not None
    assert config.routing.cascade.min_confidence == min_confidence


@pytest.mark.parametrize(
    ("bootstrap", "problem"),
    [
        (
            {"cache_path": "c.yaml", "model": "openai/gpt-5"},
            "routing.bootstrap.model: unknown model 'openai/gpt-5'",
        ),
        (
            {"cache_path": "c.yaml", "model": "openai/*"},
            "routing.bootstrap.model: 'openai/*' is a wildcard; name one of its models",
        ),
        (
            {"cache_path": "c.yaml", "per_route": 0},
            "routing.bootstrap.per_route: Input should be greater than or equal to 1",
        ),
        (
            {"cache_path": "c.yaml", "per_route": 201},
            "routing.bootstrap.per_route: Input should be less than or equal to 200",
        ),
        (
            {"cache_path": "c.yaml", "no_route": -1},
            "routing.bootstrap.no_route: Input should be greater than or equal to 0",
        ),
        ({"model": "gpt-4o"}, "routing.bootstrap.cache_path: required key is missing"),
        ({"cache_path": ""}, "routing.bootstrap.cache_path: must not be empty"),
    ],
)
def test_bootstrap_problems_are_reported_at_their_key_path(
    bootstrap: dict[str, Any], problem: str
) -> None:
    assert problems_of(base(routing={"bootstrap": bootstrap})) == [problem]


def test_a_bootstrap_model_may_be_an_alias() -> None:
    data = base(
        model_aliases={"writer": {"target": "openai/gpt-4o"}},
        routing={"bootstrap": {"cache_path": "c.yaml", "model": "writer"}},
    )
    assert parse_config(data).routing.bootstrap is not None


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"llm_routing_model": "openai/gpt-5"},  # named, but not a configured model
    ],
)
def test_a_cascade_needs_an_llm_router(overrides: dict[str, Any]) -> None:
    data = base(overrides=overrides, routing={"cascade": {"min_confidence": 0.5}})

    problems = problems_of(data)

    assert [p.split(":", 1)[0] for p in problems] == ["routing.cascade"]
    assert "overrides.llm_routing_model" in problems[0]


@pytest.mark.parametrize(
    ("cascade", "problem"),
    [
        (
            {"min_confidence": -0.1},
            "routing.cascade.min_confidence: Input should be greater than or equal to 0",
        ),
        (
            {"min_confidence": 1.5},
            "routing.cascade.min_confidence: Input should be less than or equal to 1",
        ),
        ({}, "routing.cascade.min_confidence: required key is missing"),
        (
            {"min_confidence": 0.5, "max_confidence": 0.9},
            "routing.cascade.max_confidence: unknown key",
        ),
    ],
)
def test_cascade_problems_are_reported_at_their_key_path(
    cascade: dict[str, Any], problem: str
) -> None:
    assert problems_of(with_router(cascade=cascade)) == [problem]


@pytest.mark.parametrize("value", ["just one", [""], [3]])
def test_no_route_examples_must_be_a_list_of_texts(value: object) -> None:
    problems = problems_of(base(routing={"no_route_examples": value}))
    assert len(problems) == 1
    assert problems[0].startswith("routing.no_route_examples")


def test_a_client_key_may_be_an_admin() -> None:
    key = "k" * 32
    data = base(
        governance={
            "client_keys": [
                {"name": "ops", "key": "$OPS_KEY", "admin": True},
                {"name": "app", "key": "$APP_KEY"},
            ]
        }
    )

    config = parse_config(data, env={"OPS_KEY": key, "APP_KEY": "a" * 32})

    assert [k.admin for k in config.governance.client_keys] == [True, False]
    assert problems_of(
        base(governance={"client_keys": [{"name": "ops", "key": "$K", "admin": "sometimes"}]}),
        env={"K": key},
    ) == [
        "governance.client_keys[0].admin: Input should be a valid boolean, unable to interpret input"
    ]
