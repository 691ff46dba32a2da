"""Turning a configured model into a request target, and the pooled HTTP clients that reach it."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

import aiohttp

from turnout.config import Config
from turnout.config.schema import ModelProvider
from turnout.providers.registry import (
    ANTHROPIC_VERSION,
    AZURE_API_VERSION,
    INTERFACES,
    PROVIDERS,
    Api,
    ProviderSpec,
)

_ENDPOINTS: dict[Api, str] = {
    "openai_chat": "/chat/completions",
    "anthropic_messages": "/messages",
    "openai_responses": "/responses",
}


class TargetError(Exception):
    """A candidate model that cannot be called (no key, unsupported provider); never holds secrets."""


@dataclass(frozen=True, slots=True)
class Target:
    model_id: str  # the configured `provider/model`
    model: str  # the name the provider knows it by
    api: Api
    url: str
    headers: dict[str, str]
    timeout: aiohttp.ClientTimeout


def _spec(provider: ModelProvider) -> ProviderSpec:
    if provider.provider_interface:
        api = INTERFACES.get(provider.provider_interface)
        if api is None:
            raise TargetError(
                f"provider_interface '{provider.provider_interface}' is not supported"
            )
        return ProviderSpec(api, None)
    spec = PROVIDERS.get(provider.provider)
    if spec is None:
        raise TargetError(f"provider '{provider.provider}' is not supported for proxying yet")
    return spec


def _base_url(provider: ModelProvider, spec: ProviderSpec) -> str:
    """A configured base URL without a path means the API's usual `/v1` root, as in Plano."""
    if provider.base_url is None:
        if spec.base_url is None:
            raise TargetError(f"{provider.model} needs a base_url")
        return spec.base_url
    configured = str(provider.base_url).rstrip("/")
    return configured if urlsplit(configured).path else configured + "/v1"


def _url(provider: ModelProvider, spec: ProviderSpec, model: str, api: Api) -> str:
    base = _base_url(provider, spec)
    if spec.auth == "api-key":  # Azure: one deployment per model, the API version in the query
        return f"{base.removesuffix('/v1')}/openai/deployments/{model}/chat/completions?api-version={AZURE_API_VERSION}"
    return base + _ENDPOINTS[api]


def _auth_headers(spec: ProviderSpec, key: str) -> dict[str, str]:
    if spec.auth == "x-api-key":
        return {"x-api-key": key}
    if spec.auth == "api-key":
        return {"api-key": key}
    return {"authorization": f"Bearer {key}"}


def target_for(
    config: Config, model_id: str, client_key: str | None, client_api: str = "openai_chat"
) -> Target:
    """How to call `model_id` for a client of `client_api`; `client_key` is the caller's own
    credential, for passthrough_auth. A provider that also speaks the client's API is called in
    it, so nothing needs translating."""
    provider = config.provider_for(model_id)
    if provider is None:
        raise TargetError(f"{model_id} is not a configured model")
    spec = _spec(provider)
    model = model_id.partition("/")[2]
    key = client_key if provider.passthrough_auth else provider.access_key
    headers = dict(provider.headers)
    if key:
        headers.update(_auth_headers(spec, key))
    elif spec.base_url is not None and provider.base_url is None:
        raise TargetError(f"no API key for {model_id}: its access_key variable is not set")
    if spec.api == "anthropic_messages":
        headers.setdefault("anthropic-version", ANTHROPIC_VERSION)
    if provider.http_host:
        headers["host"] = provider.http_host
    api: Api = (
        "openai_responses" if client_api == "openai_responses" and spec.responses else spec.api
    )
    timeout = aiohttp.ClientTimeout(
        sock_connect=provider.timeouts.connect, sock_read=provider.timeouts.read
    )
    return Target(model_id, model, api, _url(provider, spec, model, api), headers, timeout)


class UpstreamPool:
    """One pooled HTTP session per upstream origin, reused by every request to it.

    aiohttp rather than httpx: measured here (bench/proxy/client_cost.py), an httpx call costs
    4–25× more CPU and grows with concurrency, which capped the proxy's throughput.
    """

    def __init__(self) -> None:
        self._sessions: dict[str, aiohttp.ClientSession] = {}
        self.closed = False

    def session_for(self, url: str) -> aiohttp.ClientSession:
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        session = self._sessions.get(origin)
        if session is None:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=512, ttl_dns_cache=300),
                auto_decompress=False,  # bytes are relayed as the upstream sent them
                skip_auto_headers=("User-Agent",),
            )
            self._sessions[origin] = session
        return session

    async def aclose(self) -> None:
        self.closed = True
        for session in self._sessions.values():
            await session.close()
        self._sessions.clear()
