"""The price table: USD per million tokens per model, read from prices.json, and a request's cost."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from gateway.record import Usage

DEFAULT_PATH = Path(__file__).with_name("prices.json")

# Snapshot suffixes: OpenAI's -2024-08-06, Anthropic's -20250929, and the -latest aliases.
_SUFFIX = re.compile(r"-(\d{4}-\d{2}-\d{2}|\d{8}|latest)$")


@dataclass(slots=True, frozen=True)
class ModelPrice:
    """USD per million tokens of each kind for one model."""

    input: float
    output: float
    cached_input: float  # input tokens read from the prompt cache
    cache_write: float  # input tokens written to the prompt cache


class PriceTable:
    """Model name -> ModelPrice, with date-suffixed snapshots resolved to their family."""

    def __init__(self, models: dict[str, ModelPrice], *, aliases: dict[str, str] | None = None,
                 updated: str = "", source: str = "") -> None:
        self._models = {name.lower(): price for name, price in models.items()}
        self._aliases = {a.lower(): t.lower() for a, t in (aliases or {}).items()}
        self.updated = updated
        self.source = source

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceTable:
        """Read a prices.json (the packaged one by default); ValueError names a bad entry."""
        path = Path(path) if path is not None else DEFAULT_PATH
        data = json.loads(path.read_text(encoding="utf-8"))
        models = {}
        for name, entry in data.get("models", {}).items():
            models[name] = _parse_price(path, name, entry)
        aliases = data.get("aliases", {})
        for alias, target in aliases.items():
            if target not in models:
                raise ValueError(f"{path}: alias {alias!r} points to unknown model {target!r}")
        return cls(models, aliases=aliases, updated=data.get("updated", ""), source=data.get("source", ""))

    def price(self, model: str) -> ModelPrice | None:
        """The model's prices: exact name, then an alias, then the name without its date suffix."""
        name = model.lower()
        for candidate in (name, _SUFFIX.sub("", name)):
            candidate = self._aliases.get(candidate, candidate)
            if candidate in self._models:
                return self._models[candidate]
        return None

    def cost(self, model: str | None, usage: Usage | None) -> float | None:
        """USD for one request; None when the model's price (or the usage) is unknown, never a made-up 0."""
        if model is None or usage is None:
            return None
        price = self.price(model)
        if price is None:
            return None
        # prompt_tokens includes the cached and cache-write tokens; a provider that reports
        # more cached than prompt tokens gets no negative charge.
        uncached = max(0, usage.prompt_tokens - usage.cached_tokens - usage.cache_write_tokens)
        return (uncached * price.input
                + usage.cached_tokens * price.cached_input
                + usage.cache_write_tokens * price.cache_write
                + usage.completion_tokens * price.output) / 1e6

    def __len__(self) -> int:
        return len(self._models)


def _parse_price(path: Path, name: str, entry: object) -> ModelPrice:
    if not isinstance(entry, dict):
        raise ValueError(f"{path}: model {name!r}: expected an object of prices")
    values = {}
    for field in ("input", "output", "cached_input", "cache_write"):
        value = entry.get(field)
        if value is None and field in ("cached_input", "cache_write"):
            value = entry["input"] if isinstance(entry.get("input"), (int, float)) else None  # no discount
        if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
            raise ValueError(f"{path}: model {name!r}: {field} must be a number >= 0, got {value!r}")
        values[field] = float(value)
    return ModelPrice(**values)
