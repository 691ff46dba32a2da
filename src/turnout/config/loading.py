"""From a file to a validated Config: read, parse YAML, substitute the environment, migrate, validate.

Every problem found on the way is collected, each at the key path the user wrote, and raised
together as one ConfigError, so a file is fixed in one pass rather than one error at a time.
Values are never echoed in messages: any of them may be a secret.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from turnout.config.env import substitute
from turnout.config.migration import Migration, migrate
from turnout.config.schema import Config, Loc, Routes, RoutingPreference

_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_MESSAGES = {"missing": "required key is missing", "extra_forbidden": "unknown key"}
_ROUTES: TypeAdapter[list[RoutingPreference]] = TypeAdapter(Routes)


class ConfigError(ValueError):
    """A configuration turnout cannot use. `problems` holds every problem found, one a line,
    each `key.path: message`."""

    def __init__(self, problems: list[str], source: str = "<string>") -> None:
        super().__init__("\n".join(problems))
        self.problems = problems
        self.source = source


def load_config(path: str | os.PathLike[str], env: Mapping[str, str] | None = None) -> Config:
    """Load the config file at `path`, resolving `$VAR`s from `env` (default: the process environment)."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([f"{source}: file not found"], source) from None
    except UnicodeDecodeError:
        raise ConfigError([f"{source}: not UTF-8 text"], source) from None
    except OSError as exc:
        raise ConfigError([f"{source}: cannot read the file ({exc.strerror})"], source) from None
    return parse_config(text, env, source)


def parse_config(
    document: str | Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    source: str = "<string>",
) -> Config:
    """Validate a config given as YAML text or as already-parsed data; `source` names it in messages."""
    data = _parse_yaml(document, source) if isinstance(document, str) else document
    if not isinstance(data, Mapping):
        found = "the file is empty" if data is None else f"found {type(data).__name__}"
        raise ConfigError([f"{source}: the top level must be a mapping of keys ({found})"], source)

    problems: list[tuple[Loc, str]] = []
    warnings: list[tuple[Loc, str]] = []
    data = _substitute_env(data, os.environ if env is None else env, problems, warnings)
    reported = {format_path(loc) for loc, _ in problems}
    migration = migrate(data)
    config, invalid = _validate(migration)
    problems += migration.problems
    # A value left as `$VAR` is already reported; its type error would only repeat it.
    problems += [(loc, message) for loc, message in invalid if format_path(loc) not in reported]
    if problems or config is None:
        raise ConfigError(_lines(problems, data), source)

    warnings += migration.warnings
    warnings += [(migration.user_loc(loc), message) for loc, message in config.findings()]
    config._warnings = _lines(warnings, data)
    return config


def parse_routing_preferences(
    raw: object, where: str = "routing_preferences"
) -> list[RoutingPreference]:
    """Validate routes given in a request body, shaped as the config's `routing_preferences`.

    Their models are not checked against the configured ones: the client calls them itself.
    Problems are reported at key paths under `where`.
    """
    try:
        return _ROUTES.validate_python(raw)
    except ValidationError as exc:
        problems = [f"{format_path(tuple(e['loc']), where)}: {_message(e)}" for e in exc.errors()]
        raise ConfigError(problems, where) from None


def format_path(loc: Loc, root: str = "") -> str:
    """`("routing_preferences", 1, "models", 0)` -> `routing_preferences[1].models[0]`."""
    path = root
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif _PLAIN_KEY.fullmatch(part):
            path += f".{part}" if path else part
        else:
            path += f"[{json.dumps(part)}]"
    return path


def _validate(migration: Migration) -> tuple[Config | None, list[tuple[Loc, str]]]:
    """The config, or None and its problems, at the key paths the user wrote."""
    try:
        return Config.model_validate(migration.data), []
    except ValidationError as exc:
        errors = exc.errors()
    broken = {error["loc"][0] for error in errors if error["loc"]}
    if not broken & Config.cross_referenced:
        # Cross-references are checked once every section is valid, but need only these
        # sections: check them now, without the broken ones, to report everything at once.
        try:
            Config.model_validate({k: v for k, v in migration.data.items() if k not in broken})
        except ValidationError as exc:
            errors += exc.errors()
    return None, [(migration.user_loc(tuple(error["loc"])), _message(error)) for error in errors]


def _lines(findings: list[tuple[Loc, str]], data: Mapping[str, Any]) -> list[str]:
    """`key.path: message` lines, ordered by where their top-level key is in the file."""
    position: dict[object, int] = {key: index for index, key in enumerate(data)}
    ordered = sorted(
        findings, key=lambda finding: position.get(finding[0][0], -1) if finding[0] else -1
    )
    return [f"{format_path(loc)}: {message}" if loc else message for loc, message in ordered]


def _message(error: ErrorDetails) -> str:
    return _MESSAGES.get(error["type"], error["msg"])


def _substitute_env(
    data: Mapping[str, Any],
    env: Mapping[str, str],
    problems: list[tuple[Loc, str]],
    warnings: list[tuple[Loc, str]],
) -> dict[str, Any]:
    """Resolve `$VAR`s in the sections turnout reads (Plano-only sections are left as written).

    A provider's `access_key` may be missing: routing works without keys, so the key becomes
    None and the provider fails only when called.
    """
    resolved: dict[str, Any] = {}
    for key, value in data.items():
        if key in Config.plano_only:
            resolved[key] = value
            continue
        resolved[key], missing = substitute(value, env, (key,))
        for variable in missing:
            if not _is_access_key(variable.loc):
                problems.append((variable.loc, f"environment variable {variable.name} is not set"))
                continue
            provider = resolved[key][variable.loc[1]]
            provider["access_key"] = None
            model = provider.get("model")
            calls = f"calls to {model if isinstance(model, str) else 'it'} will fail until it is"
            warnings.append(
                (variable.loc, f"environment variable {variable.name} is not set; {calls}")
            )
    return resolved


def _is_access_key(loc: Loc) -> bool:
    return (
        len(loc) == 3
        and loc[0] in ("model_providers", "llm_providers")
        and isinstance(loc[1], int)
        and loc[2] == "access_key"
    )


class _Loader(yaml.SafeLoader):
    """YAML's safe loader, refusing duplicate keys (PyYAML would keep the last one silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: dict[Hashable, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, Hashable) and key in seen:
                first = seen[key]
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key '{key}' (first at line {first.line + 1})",
                    key_node.start_mark,
                )
            if isinstance(key, Hashable):
                seen[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _parse_yaml(text: str, source: str) -> object:
    try:
        return yaml.load(text, Loader=_Loader)  # a SafeLoader: builds plain data only
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([f"{source}, {_yaml_problem(exc)}"], source) from None
    except yaml.YAMLError as exc:
        raise ConfigError([f"{source}: {exc}"], source) from None


def _yaml_problem(exc: yaml.MarkedYAMLError) -> str:
    # What is wrong and where, never the offending text: it could be a secret.
    problem = f"{_position(exc.problem_mark)}: {exc.problem}"
    if exc.context and exc.context_mark:
        problem += f" ({exc.context} at {_position(exc.context_mark)})"
    return problem


def _position(mark: yaml.Mark | None) -> str:
    return f"line {mark.line + 1}, column {mark.column + 1}" if mark else "an unknown position"
