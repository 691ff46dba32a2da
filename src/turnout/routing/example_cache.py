"""The route example cache: a YAML file operators can read and edit.

It holds the examples an LLM wrote for the routes (valid while the routes' names and
descriptions and the writing model stay the same, which its `key` records) and the corrections
sent as feedback (kept whatever the key, since a person decided them).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from hashlib import sha256
from pathlib import Path
from typing import Any, Protocol

import yaml

from turnout.routing.examples import RouteExamples, unique

HEADER = (
    "# turnout route examples: written by `turnout routes bootstrap`, corrected through\n"
    "# POST /routing/v1/feedback. Edit freely; `key` ties `routes` and `no_route` to the route\n"
    "# descriptions and model they were written for, and `feedback` is kept whatever the key.\n"
)


class CacheError(ValueError):
    """The cache file cannot be read as a cache; the message names the file and the problem."""


class DescribedRoute(Protocol):
    name: str
    description: str


@dataclass(frozen=True, slots=True)
class CacheFile:
    key: str | None = None
    model: str | None = None
    bootstrapped: RouteExamples = field(default_factory=RouteExamples)
    feedback: RouteExamples = field(default_factory=RouteExamples)

    def examples_for(self, key: str | None) -> RouteExamples:
        """The corrections, then the written examples when they were written for `key`."""
        if key is not None and key == self.key:
            return self.feedback.plus(self.bootstrapped)
        return self.feedback


def cache_key(routes: Sequence[DescribedRoute], model: str) -> str:
    """Changes when a route is added, removed, renamed or redescribed, or the model changes."""
    digest = sha256(model.encode("utf-8"))
    for route in routes:
        digest.update(
            b"\0" + route.name.encode("utf-8") + b"\0" + route.description.encode("utf-8")
        )
    return digest.hexdigest()


def read_cache(path: Path) -> CacheFile:
    """The file's contents; a file that does not exist yet is an empty cache."""
    try:
        raw = yaml.safe_load(path.read_text("utf-8"))
    except FileNotFoundError:
        return CacheFile()
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise CacheError(f"{path}: cannot be read ({type(exc).__name__})") from exc
    if raw is None:
        return CacheFile()
    if not isinstance(raw, dict):
        raise CacheError(f"{path}: expected a mapping at the top level")
    return CacheFile(
        key=_optional_text(raw, "key", path),
        model=_optional_text(raw, "model", path),
        bootstrapped=_examples(raw, path, ""),
        feedback=_examples(raw.get("feedback") or {}, path, "feedback."),
    )


def write_cache(path: Path, cache: CacheFile) -> None:
    """Replaces the file at once: a reader sees the old file or the new one, never a part."""
    body: dict[str, Any] = {
        "key": cache.key,
        "model": cache.model,
        **_plain(cache.bootstrapped),
        "feedback": _plain(cache.feedback),
    }
    text = HEADER + yaml.safe_dump(body, sort_keys=False, allow_unicode=True, width=100)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(text)
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _plain(examples: RouteExamples) -> dict[str, Any]:
    return {
        "routes": {name: list(texts) for name, texts in examples.routes.items()},
        "no_route": list(examples.no_route),
    }


def _optional_text(raw: dict[str, Any], name: str, path: Path) -> str | None:
    value = raw.get(name)
    if value is not None and not isinstance(value, str):
        raise CacheError(f"{path}: `{name}` must be text")
    return value


def _texts(value: object, path: Path, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(text, str) for text in value):
        raise CacheError(f"{path}: `{where}` must be a list of texts")
    return unique(value)


def _examples(raw: object, path: Path, prefix: str) -> RouteExamples:
    if not isinstance(raw, dict):
        raise CacheError(f"{path}: `{prefix.rstrip('.')}` must be a mapping")
    routes = raw.get("routes") or {}
    if not isinstance(routes, dict):
        raise CacheError(f"{path}: `{prefix}routes` must map route names to lists of texts")
    return RouteExamples(
        routes={
            str(name): _texts(texts, path, f"{prefix}routes.{name}")
            for name, texts in routes.items()
        },
        no_route=_texts(raw.get("no_route"), path, f"{prefix}no_route"),
    )
