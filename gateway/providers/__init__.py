"""Provider modules behind one interface, looked up by name; handlers never import a provider module."""

from __future__ import annotations

from ..config import Config
from .base import Provider


def build_registry(config: Config) -> dict[str, Provider]:
    """One instance of each provider, keyed by the name keys.json uses."""
    from .anthropic import AnthropicProvider
    from .openai import OpenAIProvider

    return {
        "openai": OpenAIProvider(config.openai_base_url),
        "anthropic": AnthropicProvider(config.anthropic_base_url),
    }
