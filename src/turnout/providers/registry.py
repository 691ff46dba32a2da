"""Provider ids turnout can call: their API, default base URL and how they take a key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Api = Literal["openai_chat", "anthropic_messages", "openai_responses"]
Auth = Literal["bearer", "x-api-key", "api-key"]


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    api: Api
    base_url: str | None  # None: the config must give one (self-hosted, per-tenant)
    auth: Auth = "bearer"
    responses: bool = False  # also serves the Responses API at /responses


PROVIDERS: dict[str, ProviderSpec] = {
    "openai": ProviderSpec("openai_chat", "https://api.openai.com/v1", responses=True),
    "anthropic": ProviderSpec("anthropic_messages", "https://api.anthropic.com/v1", "x-api-key"),
    "azure_openai": ProviderSpec("openai_chat", None, "api-key"),
    "gemini": ProviderSpec(
        "openai_chat", "https://generativelanguage.googleapis.com/v1beta/openai"
    ),
    "mistral": ProviderSpec("openai_chat", "https://api.mistral.ai/v1"),
    "groq": ProviderSpec("openai_chat", "https://api.groq.com/openai/v1"),
    "deepseek": ProviderSpec("openai_chat", "https://api.deepseek.com/v1"),
    "xai": ProviderSpec("openai_chat", "https://api.x.ai/v1"),
    "together_ai": ProviderSpec("openai_chat", "https://api.together.xyz/v1"),
    "fireworks": ProviderSpec("openai_chat", "https://api.fireworks.ai/inference/v1"),
    "openrouter": ProviderSpec("openai_chat", "https://openrouter.ai/api/v1"),
    "ollama": ProviderSpec("openai_chat", None),
    "vllm": ProviderSpec("openai_chat", None),
    # Plano's router models (Arch-Router, Plano-Orchestrator), self-hosted; `arch` is the old name.
    "plano": ProviderSpec("openai_chat", None),
    "arch": ProviderSpec("openai_chat", None),
}

INTERFACES: dict[str, Api] = {"openai": "openai_chat", "anthropic": "anthropic_messages"}
AZURE_API_VERSION = "2024-10-21"
ANTHROPIC_VERSION = "2023-06-01"
