"""llm-gateway: one OpenAI-compatible endpoint for OpenAI and Anthropic, with virtual keys, quotas and a dashboard."""

__version__ = "0.1.0"
