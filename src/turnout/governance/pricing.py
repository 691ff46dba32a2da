"""List prices per model, for cost in traces and budgets: a bundled catalogue
(`data/prices.yaml`) that the config's `governance.prices` overrides or extends.

Lookups accept `provider/model` ids and bare model ids, and fall back from dated snapshots
(`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`, `claude-3-5-haiku@20241022`) and `-latest`
aliases to the model they belong to.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

import yaml

# a date or version stamp at the end of a model id: -2024-08-06, -20250514, @20241022, -0613,
# -latest, -preview-04-17, -v1:0 (Bedrock)
_SUFFIX = re.compile(
    r"(?:[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest|preview(?:-\d{2}-\d{2})?|exp)|-v\d+(?::\d+)?)$"
)


# providers whose models run on the operator's own hardware
SELF_HOSTED = frozenset({"ollama", "vllm", "plano", "arch"})


@dataclass(frozen=True, slots=True)
class Price:
    input_per_mtok: float  # USD per million input tokens
    output_per_mtok: float  # USD per million output tokens

    def __post_init__(self) -> None:
        if not (self.input_per_mtok >= 0 and self.output_per_mtok >= 0):
            raise ValueError("prices must be >= 0")

    def cost(self, input_tokens: int, output_tokens: int) -> float:
        return (
            max(0, input_tokens) * self.input_per_mtok
            + max(0, output_tokens) * self.output_per_mtok
        ) / 1_000_000


def _candidates(model_id: str) -> list[str]:
    """The id itself, then with its date/version suffixes removed one at a time."""
    names = [model_id]
    while (shorter := _SUFFIX.sub("", names[-1])) != names[-1] and shorter:
        names.append(shorter)
    return names


class PriceTable:
    def __init__(self, prices: Mapping[str, Price]) -> None:
        self._full: dict[str, Price] = {}
        self._bare: dict[str, Price] = {}
        self._ambiguous: set[str] = set()
        for model_id, price in prices.items():
            self._full[model_id.lower()] = price
        for model_id, price in self._full.items():
            bare = model_id.partition("/")[2] or model_id
            if bare in self._bare and self._bare[bare] != price:
                self._ambiguous.add(bare)  # two providers list it at different prices
            self._bare.setdefault(bare, price)

    @classmethod
    def bundled(cls, overrides: Mapping[str, Price] | None = None) -> PriceTable:
        """The bundled catalogue, with `overrides` (the config's prices) replacing or adding
        entries by `provider/model` id."""
        prices = load_prices(
            files("turnout.governance").joinpath("data/prices.yaml").read_text("utf-8")
        )
        prices.update(overrides or {})
        return cls(prices)

    def __len__(self) -> int:
        return len(self._full)

    def price_of(self, model_id: str) -> Price | None:
        """The price of `openai/gpt-4o`; of a bare `gpt-4o` (when only one provider lists it, or
        all at one price); of a dated variant such as `gpt-4o-2024-08-06`; of a model another
        provider resells (`azure_openai/gpt-4o`, `openrouter/openai/gpt-4o`); None when unknown
        and for self-hosted providers (ollama, vllm) without their own entry."""
        model_id = model_id.strip().lower()
        provider, _, bare = model_id.partition("/")
        if bare:
            for name in _candidates(bare):
                if (price := self._full.get(f"{provider}/{name}")) is not None:
                    return price
            if provider in SELF_HOSTED:
                return None  # your own hardware: no list price unless the config gives one
            if (
                "/" in bare
            ):  # a reseller's id for another provider's model: openrouter/openai/gpt-4o
                return self.price_of(bare)
            model_id = bare  # another provider serving the same model (azure_openai/gpt-4o...)
        for name in _candidates(model_id):
            if name in self._ambiguous:
                return None
            if (price := self._bare.get(name)) is not None:
                return price
        return None

    def cost(self, model_id: str, input_tokens: int, output_tokens: int) -> float | None:
        """USD for that many tokens at the model's list price; None when its price is unknown."""
        price = self.price_of(model_id)
        return None if price is None else price.cost(input_tokens, output_tokens)


def load_prices(text: str) -> dict[str, Price]:
    """Parse the catalogue: `provider/model: {input_per_mtok: x, output_per_mtok: y}` entries."""
    data: Any = yaml.safe_load(text) or {}
    if not isinstance(data, dict):
        raise TypeError("prices.yaml: the top level must be a mapping")
    prices: dict[str, Price] = {}
    for model_id, entry in data.items():
        if not isinstance(model_id, str) or "/" not in model_id or not isinstance(entry, dict):
            raise ValueError(f"prices.yaml: bad entry {model_id!r}")
        prices[model_id] = Price(float(entry["input_per_mtok"]), float(entry["output_per_mtok"]))
    return prices
