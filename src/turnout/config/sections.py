"""The building blocks of the configuration schema: strict sections, key paths, and errors that
name them.

Every mapping is a `Section`: keys it does not declare are errors, so a typo such as
`descripton` surfaces at load time instead of silently dropping a setting. Plano keys that
turnout accepts but does not act on are declared too, listed in `plano_only`, and reported
as warnings by the loader.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Annotated, ClassVar, TypeAlias
from urllib.parse import urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

Loc: TypeAlias = tuple[str | int, ...]
"""A key path into the configuration, as pydantic reports error locations."""


def fail(problems: Iterable[tuple[Loc, str]]) -> None:
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


def repeats(keys: Iterable[object]) -> Iterator[int]:
    """Indexes of the keys already seen earlier in the sequence."""
    seen: set[object] = set()
    for index, key in enumerate(keys):
        if key in seen:
            yield index
        seen.add(key)


def not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


def not_empty(items: list[str]) -> list[str]:
    if not items:
        raise PydanticCustomError("empty", "must not be empty")
    return items


def http_url(value: str) -> str:
    # The value is never echoed: a URL can carry credentials.
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise PydanticCustomError("url", "must be an http:// or https:// URL with a host name")
    return value


Text = Annotated[str, AfterValidator(not_blank)]
Port = Annotated[int, Field(ge=1, le=65535)]
HttpUrl = Annotated[str, AfterValidator(http_url)]


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
