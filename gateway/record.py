"""The interaction record: handlers fill it; the store, the JSON log and metrics read it."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field


@dataclass(slots=True)
class Usage:
    """Token counts of one reply, in OpenAI's terms.

    `prompt_tokens` includes cached and cache-write tokens (as OpenAI counts them);
    the two are kept apart as well because they are priced differently.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # input tokens read from the provider's prompt cache
    cache_write_tokens: int = 0  # input tokens written to the prompt cache (Anthropic)

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(slots=True)
class Interaction:
    """One request through the gateway, rejected ones included."""

    method: str
    path: str
    endpoint: str  # "chat", "messages", "count_tokens", "models", ...
    client_ip: str = ""
    # 128 random bits as hex, like uuid4().hex at a quarter of its cost (it is made on every request).
    id: str = field(default_factory=lambda: os.urandom(16).hex())
    ts: float = field(default_factory=time.time)  # arrival, seconds since the epoch (UTC)
    key_name: str | None = None  # a key's name or masked form; never the full key
    provider: str | None = None
    model: str | None = None
    stream: bool = False
    status: int = 0  # the outcome: the HTTP status, or 499/502/504 when a stream ended badly after its 200
    duration_ms: float = 0.0
    ttfb_ms: float | None = None  # arrival to the first byte sent to the client
    upstream_ms: float | None = None  # time spent waiting on the provider
    overhead_ms: float | None = None  # the gateway's own time (duration minus upstream wait)
    usage: Usage | None = None
    cost_usd: float | None = None
    error_type: str | None = None
    error_message: str | None = None
    request: str | None = None  # the request body as received (JSON text)
    response: str | None = None  # the reply body, or the assembled reply of a stream (JSON text)
    incomplete: bool = False  # a stream that ended without its terminator
    quota_counted: bool = False  # admitted against the key's quota
    retries: int = 0  # provider calls sent again (see UPSTREAM_RETRIES)
