"""The price table: lookups and costs recomputed by hand for known requests."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from gateway.pricing import PriceTable
from gateway.record import Usage


@pytest.fixture(scope="module")
def prices() -> PriceTable:
    return PriceTable.load()


# (model, usage, cost by hand in USD)
GOLDEN = [
    # gpt-4o: 800 fresh x $2.50 + 200 cached x $1.25 + 500 out x $10 = 2000 + 250 + 5000 = $0.00725
    ("gpt-4o", Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200), 0.00725),
    # a dated snapshot resolves to its family
    ("gpt-4o-2024-08-06", Usage(prompt_tokens=1000, completion_tokens=500, cached_tokens=200), 0.00725),
    # ...unless it is priced itself: the May 2024 snapshot is $5 / $15: 5000 + 1500 = $0.0065
    ("gpt-4o-2024-05-13", Usage(prompt_tokens=1000, completion_tokens=100), 0.0065),
    # gpt-4o-mini: 10,000 x $0.15 + 2,000 x $0.60 = 1500 + 1200 = $0.0027
    ("gpt-4o-mini-2024-07-18", Usage(prompt_tokens=10_000, completion_tokens=2_000), 0.0027),
    # gpt-4.1-nano: 1,000,000 fresh x $0.10 + 1,000,000 cached x $0.025 = $0.125
    ("gpt-4.1-nano", Usage(prompt_tokens=2_000_000, completion_tokens=0, cached_tokens=1_000_000), 0.125),
    # o4-mini: 1,500 x $1.10 + 500 cached x $0.275 + 3,000 (reasoning included) x $4.40 = 1650 + 137.5 + 13200
    ("o4-mini", Usage(prompt_tokens=2000, completion_tokens=3000, cached_tokens=500), 0.0149875),
    # gpt-5: 9,000 x $1.25 + 1,000 x $0.125 + 1,000 x $10 = 11250 + 125 + 10000 = $0.021375
    ("gpt-5-2025-08-07", Usage(prompt_tokens=10_000, completion_tokens=1000, cached_tokens=1000), 0.021375),
    # o1-pro has no cached price: cached tokens pay full input, 1,000 x $150 + 100 x $600 = $0.21
    ("o1-pro", Usage(prompt_tokens=1000, completion_tokens=100, cached_tokens=400), 0.21),
    # claude-sonnet-4-5: 500 fresh x $3 + 1,000 read x $0.30 + 1,500 written x $3.75 + 200 out x $15
    #   = 1500 + 300 + 5625 + 3000 = $0.010425
    ("claude-sonnet-4-5-20250929", Usage(prompt_tokens=3000, completion_tokens=200, cached_tokens=1000,
                                         cache_write_tokens=1500), 0.010425),
    # claude-opus-4-1: 100 x $15 + 2,000 written x $18.75 + 50 x $75 = 1500 + 37500 + 3750 = $0.04275
    ("claude-opus-4-1-20250805", Usage(prompt_tokens=2100, completion_tokens=50, cache_write_tokens=2000), 0.04275),
    # claude-opus-4-5 is a third of that price: 100 x $5 + 2,000 x $6.25 + 50 x $25 = 500 + 12500 + 1250
    ("claude-opus-4-5-20251101", Usage(prompt_tokens=2100, completion_tokens=50, cache_write_tokens=2000), 0.01425),
    # claude-haiku-4-5: 1,000 x $1 + 4,000 read x $0.10 + 300 x $5 = 1000 + 400 + 1500 = $0.0029
    ("claude-haiku-4-5-20251001", Usage(prompt_tokens=5000, completion_tokens=300, cached_tokens=4000), 0.0029),
    # claude-3-5-haiku: 1,000 x $0.80 + 1,000 x $4 = $0.0048
    ("claude-3-5-haiku-latest", Usage(prompt_tokens=1000, completion_tokens=1000), 0.0048),
    # an alias: claude-opus-4-0 is claude-opus-4, 1,000 x $15 + 1,000 x $75 = $0.09
    ("claude-opus-4-0", Usage(prompt_tokens=1000, completion_tokens=1000), 0.09),
    # claude-sonnet-4 (May 2025 snapshot): 1,000,000 x $3 = $3
    ("claude-sonnet-4-20250514", Usage(prompt_tokens=1_000_000, completion_tokens=0), 3.0),
]


@pytest.mark.parametrize(("model", "usage", "expected"), GOLDEN, ids=[g[0] for g in GOLDEN])
def test_golden_costs(prices: PriceTable, model: str, usage: Usage, expected: float) -> None:
    assert prices.cost(model, usage) == pytest.approx(expected, rel=1e-12)


def test_unknown_model_or_usage_costs_none_not_zero(prices: PriceTable) -> None:
    assert prices.cost("gpt-17-ultra", Usage(10, 10)) is None
    assert prices.cost("claude-sonnet-4-5-extra", Usage(10, 10)) is None  # not a date suffix
    assert prices.cost(None, Usage(10, 10)) is None
    assert prices.cost("gpt-4o", None) is None
    assert prices.cost("gpt-4o", Usage()) == 0.0  # known price, no tokens: genuinely free


def test_lookup_is_case_insensitive_and_strips_only_date_suffixes(prices: PriceTable) -> None:
    assert prices.price("GPT-4o") == prices.price("gpt-4o") == prices.price("gpt-4o-2024-11-20")
    assert prices.price("claude-3-7-sonnet-20250219") == prices.price("claude-3-7-sonnet")
    assert prices.price("gpt-4o-mini") != prices.price("gpt-4o")


def test_more_cached_than_prompt_tokens_never_charges_negative(prices: PriceTable) -> None:
    # 0 fresh + 200 cached x $1.25 = $0.00025
    assert prices.cost("gpt-4o", Usage(prompt_tokens=100, completion_tokens=0, cached_tokens=200)) == pytest.approx(0.00025)


def test_packaged_table_is_dated_and_sane(prices: PriceTable) -> None:
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prices.updated) and prices.source
    assert len(prices) >= 30
    data = json.loads((Path(__file__).resolve().parent.parent / "gateway" / "prices.json").read_text())
    for name in data["models"]:
        price = prices.price(name)
        assert 0 < price.input <= price.output, name
        assert price.cached_input <= price.input <= price.cache_write, name


def test_bad_price_file_names_the_model(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text(json.dumps({"models": {"m": {"input": "cheap", "output": 1}}}))
    with pytest.raises(ValueError, match="model 'm': input must be a number"):
        PriceTable.load(tmp_path / "p.json")
    (tmp_path / "p.json").write_text(json.dumps({"models": {"m": {"input": 1, "output": 2}}, "aliases": {"a": "x"}}))
    with pytest.raises(ValueError, match="alias 'a' points to unknown model 'x'"):
        PriceTable.load(tmp_path / "p.json")
    (tmp_path / "p.json").write_text(json.dumps({"models": {"m": {"input": 1, "output": 2}}}))
    assert PriceTable.load(tmp_path / "p.json").cost("m-20250101", Usage(1_000_000, 1_000_000)) == 3.0
