"""Model prices: the bundled catalogue, lookups by id, bare name and dated variant, overrides."""

from __future__ import annotations

from importlib.resources import files

import pytest
import yaml

from turnout.governance.pricing import Price, PriceTable, load_prices


@pytest.fixture(scope="module")
def table() -> PriceTable:
    return PriceTable.bundled()


REQUIRED = [
    "openai/gpt-4o",
    "openai/gpt-4o-mini",
    "openai/gpt-4.1",
    "openai/gpt-4.1-mini",
    "openai/gpt-4.1-nano",
    "openai/o3",
    "openai/o4-mini",
    "openai/o3-mini",
    "anthropic/claude-sonnet-4",
    "anthropic/claude-opus-4",
    "anthropic/claude-3-5-haiku",
    "anthropic/claude-3-7-sonnet",
    "anthropic/claude-haiku-4-5",
    "anthropic/claude-sonnet-4-5",
    "gemini/gemini-2.5-pro",
    "gemini/gemini-2.5-flash",
    "mistral/mistral-large",
    "deepseek/deepseek-chat",
    "groq/llama-3.3-70b-versatile",
]


def test_the_catalogue_is_well_formed():
    text = files("turnout.governance").joinpath("data/prices.yaml").read_text("utf-8")
    raw = yaml.safe_load(text)
    assert "override" in text and "2026" in text  # says when it was checked, and what to do
    prices = load_prices(text)
    assert len(prices) == len(raw)
    for model_id, price in prices.items():
        provider, _, model = model_id.partition("/")
        assert provider and model and model == model.lower(), model_id
        assert 0 < price.input_per_mtok <= price.output_per_mtok < 200, model_id


@pytest.mark.parametrize("model_id", REQUIRED)
def test_common_models_have_prices(table: PriceTable, model_id: str):
    assert table.price_of(model_id) is not None


@pytest.mark.parametrize(
    ("model_id", "expected"),
    [
        ("openai/gpt-4o", Price(2.50, 10.00)),
        ("gpt-4o", Price(2.50, 10.00)),  # bare
        ("GPT-4o", Price(2.50, 10.00)),
        ("gpt-4o-2024-08-06", Price(2.50, 10.00)),  # dated
        ("openai/gpt-4o-mini-2024-07-18", Price(0.15, 0.60)),  # not gpt-4o's price
        ("o3-mini-2025-01-31", Price(1.10, 4.40)),
        ("anthropic/claude-sonnet-4-20250514", Price(3.00, 15.00)),  # the demo config's id
        ("claude-3-5-haiku-latest", Price(0.80, 4.00)),
        ("claude-3-5-haiku@20241022", Price(0.80, 4.00)),  # Vertex AI's form
        ("claude-opus-4-1-20250805", Price(15.00, 75.00)),  # not claude-opus-4 by accident
        ("gemini-2.5-flash-preview-04-17", Price(0.30, 2.50)),
        ("mistral/mistral-large-latest", Price(0.50, 1.50)),
        ("mistral/mistral-large-2411", Price(2.00, 6.00)),  # its own entry wins
        ("azure_openai/gpt-4o", Price(2.50, 10.00)),  # another provider serving the model
        ("openrouter/openai/gpt-4.1", Price(2.00, 8.00)),  # a reseller's id
    ],
)
def test_lookups(table: PriceTable, model_id: str, expected: Price):
    assert table.price_of(model_id) == expected


@pytest.mark.parametrize(
    "model_id",
    [
        "openai/gpt-99",
        "unknown-model",
        "gpt-4",  # not gpt-4o, not gpt-4.1
        "ollama/llama-3.3-70b-versatile",  # self-hosted: no list price
        "vllm/gpt-4o",
        "",
    ],
)
def test_unknown_models_have_no_price(table: PriceTable, model_id: str):
    assert table.price_of(model_id) is None
    assert table.cost(model_id, 1000, 1000) is None


def test_cost(table: PriceTable):
    assert table.cost("openai/gpt-4o", 1_000_000, 0) == pytest.approx(2.50)
    assert table.cost("openai/gpt-4o", 2000, 500) == pytest.approx(0.005 + 0.005)
    assert table.cost("gpt-4o-mini", 0, 0) == 0
    assert table.cost("gpt-4o-mini", -5, 10) == pytest.approx(10 * 0.60 / 1e6)


def test_overrides_replace_and_extend():
    table = PriceTable.bundled(
        {
            "openai/gpt-4o": Price(1.0, 2.0),
            "vllm/my-llama": Price(0.0, 0.0),
            "acme/widget-1": Price(4.0, 8.0),
        }
    )
    assert table.price_of("openai/gpt-4o") == Price(1.0, 2.0)
    assert table.price_of("gpt-4o-2024-08-06") == Price(1.0, 2.0)
    assert table.cost("vllm/my-llama", 10_000, 10_000) == 0.0  # free, not unknown
    assert table.price_of("widget-1") == Price(4.0, 8.0)
    assert table.price_of("openai/gpt-4o-mini") == Price(0.15, 0.60)  # the rest is kept
    assert PriceTable.bundled().price_of("openai/gpt-4o") == Price(2.50, 10.00)


def test_a_bare_name_two_providers_price_differently_is_ambiguous():
    table = PriceTable(
        {
            "groq/llama-3.3-70b": Price(0.59, 0.79),
            "together_ai/llama-3.3-70b": Price(0.88, 0.88),
            "deepseek/deepseek-chat": Price(0.28, 0.42),
            "openrouter/deepseek-chat": Price(0.28, 0.42),
        }
    )
    assert table.price_of("llama-3.3-70b") is None
    assert table.price_of("groq/llama-3.3-70b") == Price(0.59, 0.79)
    assert table.price_of("deepseek-chat") == Price(0.28, 0.42)  # same price: no ambiguity


def test_bad_prices_are_refused():
    with pytest.raises(ValueError):
        Price(-1.0, 1.0)
    with pytest.raises(ValueError):
        Price(float("nan"), 1.0)
    with pytest.raises(ValueError, match="bad entry"):
        load_prices("gpt-4o: {input_per_mtok: 1, output_per_mtok: 2}")
    with pytest.raises(TypeError):
        load_prices("- a list")
