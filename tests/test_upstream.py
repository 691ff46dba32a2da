"""How each configured provider is called: URL, credentials, headers, timeouts."""

from __future__ import annotations

import pytest

from turnout.config import parse_config
from turnout.providers.upstream import TargetError, target_for


def config(providers: str):
    return parse_config(f"version: v0.4.0\nmodel_providers:\n{providers}", env={"K": "sk-test"})


@pytest.mark.parametrize(
    ("entry", "url", "auth"),
    [
        (
            "openai/gpt-4o",
            "https://api.openai.com/v1/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
        (
            "anthropic/claude-sonnet-4-6",
            "https://api.anthropic.com/v1/messages",
            ("x-api-key", "sk-test"),
        ),
        (
            "groq/llama-3.3-70b",
            "https://api.groq.com/openai/v1/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
        (
            "gemini/gemini-2.5-flash",
            "https://generativelanguage.googleapis.com/v1beta/openai/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
        (
            "mistral/mistral-large",
            "https://api.mistral.ai/v1/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
        (
            "deepseek/deepseek-chat",
            "https://api.deepseek.com/v1/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
        ("xai/grok-4", "https://api.x.ai/v1/chat/completions", ("authorization", "Bearer sk-test")),
        (
            "together_ai/meta-llama/Llama-3-70b",
            "https://api.together.xyz/v1/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
        (
            "openrouter/openai/gpt-4o",
            "https://openrouter.ai/api/v1/chat/completions",
            ("authorization", "Bearer sk-test"),
        ),
    ],
)
def test_hosted_providers_use_their_public_api(entry: str, url: str, auth: tuple[str, str]) -> None:
    target = target_for(config(f"  - model: {entry}\n    access_key: $K\n"), entry, None)
    assert target.url == url
    assert target.headers[auth[0]] == auth[1]
    assert target.model == entry.partition("/")[2]


def test_anthropic_gets_its_version_header() -> None:
    target = target_for(
        config("  - model: anthropic/claude-haiku-4-5\n    access_key: $K\n"),
        "anthropic/claude-haiku-4-5",
        None,
    )
    assert target.headers["anthropic-version"] == "2023-06-01"
    assert target.api == "anthropic_messages"


def test_a_base_url_without_a_path_means_the_v1_root() -> None:
    cfg = config(
        "  - model: vllm/arch-router\n    base_url: http://router:8000\n"
        "  - model: ollama/llama3\n    base_url: http://ollama:11434/custom/v1\n"
    )
    assert target_for(cfg, "vllm/arch-router", None).url == "http://router:8000/v1/chat/completions"
    assert (
        target_for(cfg, "ollama/llama3", None).url
        == "http://ollama:11434/custom/v1/chat/completions"
    )
    assert "authorization" not in target_for(cfg, "vllm/arch-router", None).headers


def test_azure_uses_deployment_urls_and_the_api_key_header() -> None:
    cfg = config(
        "  - model: azure_openai/gpt-4o\n    base_url: https://acme.openai.azure.com\n    access_key: $K\n"
    )
    target = target_for(cfg, "azure_openai/gpt-4o", None)
    assert target.url.startswith(
        "https://acme.openai.azure.com/openai/deployments/gpt-4o/chat/completions?api-version="
    )
    assert target.headers["api-key"] == "sk-test"


def test_any_openai_compatible_server_via_provider_interface() -> None:
    cfg = config(
        "  - model: acme/chat-1\n    base_url: https://llm.acme.dev/api\n    provider_interface: openai\n    access_key: $K\n"
    )
    target = target_for(cfg, "acme/chat-1", None)
    assert (target.api, target.url) == ("openai_chat", "https://llm.acme.dev/api/chat/completions")


def test_wildcard_providers_serve_any_model_of_theirs() -> None:
    cfg = config("  - model: openai/*\n    access_key: $K\n")
    assert target_for(cfg, "openai/o3", None).model == "o3"


def test_passthrough_auth_forwards_the_clients_key_not_the_configured_one() -> None:
    cfg = config("  - model: openai/gpt-4o\n    passthrough_auth: true\n")
    assert (
        target_for(cfg, "openai/gpt-4o", "sk-client").headers["authorization"] == "Bearer sk-client"
    )


def test_extra_headers_http_host_and_timeouts() -> None:
    cfg = config(
        "  - model: openai/gpt-4o\n    access_key: $K\n    headers: {x-team: search}\n"
        "    http_host: api.internal\n    timeouts: {connect: 2, read: 30}\n"
    )
    target = target_for(cfg, "openai/gpt-4o", None)
    assert target.headers["x-team"] == "search" and target.headers["host"] == "api.internal"
    assert (target.timeout.sock_connect, target.timeout.sock_read) == (2, 30)


def test_a_hosted_model_without_its_key_is_refused_without_naming_secrets() -> None:
    cfg = parse_config(
        "version: v0.4.0\nmodel_providers:\n  - model: openai/gpt-4o\n    access_key: $MISSING\n",
        env={},
    )
    with pytest.raises(TargetError, match="no API key for openai/gpt-4o"):
        target_for(cfg, "openai/gpt-4o", None)


def test_unsupported_providers_are_refused_clearly() -> None:
    cfg = config(
        "  - model: amazon_bedrock/claude\n    base_url: https://bedrock.example\n    access_key: $K\n"
    )
    with pytest.raises(TargetError, match="not supported"):
        target_for(cfg, "amazon_bedrock/claude", None)
