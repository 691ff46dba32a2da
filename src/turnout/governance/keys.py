"""Client keys: who is calling, and what they may use.

Keys are compared as sha256 digests with `hmac.compare_digest`, so neither the comparison's
timing nor turnout's memory holds the plain secret longer than it takes to hash it.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from turnout.apis.errors import RequestError
from turnout.config import Config
from turnout.config.governance import ClientKey

MAX_KEY_LENGTH = 512  # longer is not a key; refusing it bounds the work an anonymous caller causes


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated client key, with its permissions resolved to configured model ids."""

    name: str
    models: frozenset[str] | None  # None: any model
    routes: frozenset[str] | None  # None: any route
    settings: ClientKey

    def may_use_model(self, model_id: str) -> bool:
        return self.models is None or model_id in self.models

    def may_use_route(self, route: str) -> bool:
        return self.routes is None or route in self.routes


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogatepass")).digest()


def presented_key(headers: Mapping[str, str]) -> str | None:
    """The key a client sent: `Authorization: Bearer` (OpenAI's SDKs) or `x-api-key` (Anthropic's)."""
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class KeyRing:
    """The configured client keys; empty means the gateway is open to anyone who can reach it."""

    def __init__(self, config: Config) -> None:
        self._keys: list[tuple[bytes, Caller]] = [
            (_digest_of(key), _caller(config, key)) for key in config.governance.client_keys
        ]

    @property
    def is_open(self) -> bool:
        return not self._keys

    def authenticate(self, headers: Mapping[str, str]) -> Caller | None:
        """The caller, None on an open gateway; a missing or unknown key is a 401."""
        if self.is_open:
            return None
        presented = presented_key(headers)
        if presented is None:
            raise _unauthorized(
                "Missing API key: send it as `Authorization: Bearer <key>` or `x-api-key`."
            )
        if len(presented) > MAX_KEY_LENGTH:
            raise _unauthorized("Invalid API key.")
        digest = _digest(presented)
        found = None
        for expected, caller in self._keys:  # every key compared, found or not: no early exit
            if hmac.compare_digest(digest, expected):
                found = caller
        if found is None:
            raise _unauthorized("Invalid API key.")
        return found


def _digest_of(key: ClientKey) -> bytes:
    if key.key is not None:
        return _digest(key.key)
    assert key.key_sha256 is not None  # the schema requires one of the two
    return bytes.fromhex(key.key_sha256)


def _caller(config: Config, key: ClientKey) -> Caller:
    return Caller(
        name=key.name,
        models=_resolved(config, key.models),
        routes=None if key.routes is None else frozenset(key.routes),
        settings=key,
    )


def _resolved(config: Config, models: Iterable[str] | None) -> frozenset[str] | None:
    if models is None:
        return None
    return frozenset(config.resolve_model(model) or model for model in models)


def _unauthorized(message: str) -> RequestError:
    return RequestError(
        message, status=401, kind="authentication_error", rejection="authentication"
    )


def forbidden_model(caller: Caller, model: str) -> RequestError:
    return RequestError(
        f"The key '{caller.name}' may not use the model '{model}'.",
        status=403,
        kind="permission_error",
        param="model",
        rejection="permission",
    )
