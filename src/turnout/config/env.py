"""`$VAR` and `${VAR}` references in config values, resolved from an environment.

Keys live in the environment, not in the file, so one config serves every deployment.
`$$` writes a literal `$`. There are no defaults (`${VAR:-x}`): a missing variable is
reported, and the caller decides whether that is an error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from turnout.config.schema import Loc

_REFERENCE = re.compile(
    r"\$(?:(?P<escaped>\$)|\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


@dataclass(frozen=True, slots=True)
class MissingVariable:
    """A reference to a variable the environment lacks, and the key path where it was written."""

    loc: Loc
    name: str


def substitute(
    value: object, env: Mapping[str, str], loc: Loc = ()
) -> tuple[object, list[MissingVariable]]:
    """Return a copy of `value` with the references in every string replaced, and the missing ones.

    `value` is parsed YAML (mappings, lists, scalars); mapping keys are left as written, and so
    is each reference to a missing variable.
    """
    missing: list[MissingVariable] = []
    return _substitute(value, env, loc, missing), missing


def _substitute(
    value: object, env: Mapping[str, str], loc: Loc, missing: list[MissingVariable]
) -> object:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            if match["escaped"]:
                return "$"
            name = match["braced"] or match["bare"]
            if name in env:
                return env[name]
            missing.append(MissingVariable(loc, name))
            return match[0]

        return _REFERENCE.sub(replace, value)
    if isinstance(value, Mapping):
        return {key: _substitute(item, env, (*loc, key), missing) for key, item in value.items()}
    if isinstance(value, list):
        return [_substitute(item, env, (*loc, index), missing) for index, item in enumerate(value)]
    return value
