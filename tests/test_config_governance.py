"""The governance keys of the config: client keys, limits, budgets, guardrails and filters;
each mistake reported at its key path when the file loads, never with a secret in it."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from test_config import base, problems_of

from turnout.config import parse_config

SECRET = "tk-0123456789abcdef-secret"


def key(**fields: Any) -> dict[str, Any]:
    return {"governance": {"client_keys": [{"name": "team", "key": SECRET, **fields}]}}


def test_a_complete_governance_section_loads() -> None:
    config = parse_config(
        base(
            governance={
                "storage": {
                    "type": "redis",
                    "url": "redis://redis:6379/0",
                    "on_unavailable": "deny",
                },
                "client_keys": [
                    {
                        "name": "team",
                        "key": "$TEAM_KEY",
                        "models": ["gpt-4o-mini"],
                        "routes": ["code"],
                        "ratelimits": [{"requests": 60, "unit": "minute"}],
                        "budget": {"daily_usd": 5, "monthly_usd": 100},
                    },
                    {"name": "ops", "key_sha256": hashlib.sha256(b"x").hexdigest()},
                ],
                "prices": {"openai/gpt-4o": {"input_per_mtok": 2.5, "output_per_mtok": 10}},
                "guardrails": {
                    "pii": {"action": "redact", "kinds": ["email", "card"]},
                    "prompt_injection": {"action": "log", "threshold": 0.7},
                    "size": {"max_input_tokens": 1000, "max_messages": 10},
                },
            },
            ratelimits=[
                {
                    "model": "*",
                    "selector": {"key": "x-user", "value": "*"},
                    "limit": {"tokens": 1000, "unit": "hour", "count": "input"},
                }
            ],
        ),
        env={"TEAM_KEY": SECRET},
    )
    governance = config.governance
    assert governance.client_keys[0].key == SECRET
    assert governance.client_keys[0].models == ["gpt-4o-mini"]
    assert governance.guardrails.pii is not None and governance.guardrails.pii.kinds == [
        "email",
        "card",
    ]
    assert config.ratelimits[0].limit.count == "input"
    assert config.warnings == []


@pytest.mark.parametrize(
    ("limit", "problem"),
    [
        ({"requests": 0, "unit": "minute"}, "ratelimits[0].limit.requests: "),
        ({"tokens": -5, "unit": "minute"}, "ratelimits[0].limit.tokens: "),
        ({"requests": 1, "tokens": 1, "unit": "minute"}, "give either `requests` or `tokens`"),
        ({"unit": "minute"}, "give either `requests` or `tokens`"),
        ({"requests": 1, "unit": "week"}, "ratelimits[0].limit.unit: "),
    ],
)
def test_zero_negative_or_ambiguous_limits_are_errors(limit: dict, problem: str) -> None:
    problems = problems_of(base(ratelimits=[{"model": "*", "limit": limit}]))
    assert any(problem in p for p in problems), problems


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"key": None}, "governance.client_keys[0]: give either `key`"),
        ({"key_sha256": "abc"}, "governance.client_keys[0]: give either `key`"),
        ({"key": None, "key_sha256": "XYZ"}, "key_sha256: must be 64 lowercase hexadecimal"),
        ({"key": "short"}, "governance.client_keys[0].key: must be at least 16 characters"),
        ({"models": ["openai/gpt-5"]}, "client_keys[0].models[0]: unknown model 'openai/gpt-5'"),
        ({"routes": ["nope"]}, "client_keys[0].routes[0]: unknown route 'nope'"),
        ({"budget": {"daily_usd": 0}}, "client_keys[0].budget.daily_usd: "),
        (
            {"ratelimits": [{"requests": -1, "unit": "day"}]},
            "client_keys[0].ratelimits[0].requests",
        ),
    ],
)
def test_client_key_mistakes_are_errors_at_their_key_path(fields: dict, problem: str) -> None:
    problems = problems_of(base(**key(**fields)))
    assert any(problem in p for p in problems), problems
    assert not any(SECRET in p for p in problems)


def test_a_missing_key_variable_is_an_error() -> None:
    problems = problems_of(base(**key(key="$TEAM_KEY_UNSET")), env={})
    assert any(
        "client_keys[0].key: environment variable TEAM_KEY_UNSET is not set" in p for p in problems
    )


def test_duplicate_key_names_and_secrets_are_errors() -> None:
    document = base(
        governance={
            "client_keys": [
                {"name": "a", "key": SECRET},
                {"name": "a", "key": SECRET},
            ]
        }
    )
    problems = problems_of(document)
    assert any("client_keys[1].name: duplicate client key name 'a'" in p for p in problems)
    assert any("client_keys[1].key: the same secret as an earlier key" in p for p in problems)


def test_passthrough_auth_cannot_be_combined_with_client_keys() -> None:
    document = base(**key())
    document["model_providers"][0]["passthrough_auth"] = True
    problems = problems_of(document)
    assert any("model_providers[0].passthrough_auth: cannot be used with" in p for p in problems)


def test_filter_chains_name_http_filters_that_exist() -> None:
    document = base(
        filters=[
            {"id": "guard", "url": "http://guard:1/", "type": "http"},
            {"id": "mcp_guard", "url": "http://guard:2/"},
        ],
        listeners=[
            {"type": "model", "port": 12000, "filter_chain": ["guard", "missing", "mcp_guard"]}
        ],
    )
    problems = problems_of(document)
    assert "listeners[0].filter_chain[1]: unknown filter 'missing'" in problems
    assert any("filter_chain[2]: filter 'mcp_guard' is an MCP filter" in p for p in problems)


@pytest.mark.parametrize(
    ("guardrails", "problem"),
    [
        ({"pii": {"action": "hide"}}, "guardrails.pii.action: "),
        ({"pii": {"kinds": ["passport"]}}, "guardrails.pii.kinds[0]: "),
        ({"prompt_injection": {"action": "redact"}}, "guardrails.prompt_injection.action: "),
        ({"prompt_injection": {"threshold": 1.5}}, "guardrails.prompt_injection.threshold: "),
        ({"size": {"max_messages": 0}}, "guardrails.size.max_messages: "),
    ],
)
def test_guardrail_mistakes_are_errors(guardrails: dict, problem: str) -> None:
    problems = problems_of(base(governance={"guardrails": guardrails}))
    assert any(problem in p for p in problems), problems


def test_redis_storage_needs_a_redis_url() -> None:
    problems = problems_of(base(governance={"storage": {"type": "redis", "url": "http://x"}}))
    assert any(
        "governance.storage.url: a redis:// or rediss:// URL is required" in p for p in problems
    )
