"""What a store returns and the interface it implements; gateway/store.py implements it in SQLite.

Handlers and the dashboard depend on these, not on SQL: a PostgreSQL store would
implement `InteractionStore` in a module of its own without touching them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from gateway.record import Interaction


@dataclass(slots=True, frozen=True)
class InteractionRow:
    """One row of `interactions`; the fields are the table's columns."""

    id: str
    ts: str
    key: str | None
    provider: str | None
    model: str | None
    method: str
    path: str
    endpoint: str
    stream: bool
    status: int
    duration_ms: float
    ttfb_ms: float | None
    upstream_ms: float | None
    overhead_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    total_tokens: int | None
    cached_tokens: int | None
    cache_write_tokens: int | None
    cost_usd: float | None
    error_type: str | None
    error_message: str | None
    client_ip: str | None
    incomplete: bool
    quota_counted: bool
    truncated: bool
    request: str | None
    response: str | None



@dataclass(slots=True, frozen=True)
class UsageRow:
    """Totals for one group over a window; group fields not asked for are None."""

    key: str | None
    provider: str | None
    model: str | None
    day: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cached_tokens: int
    cache_write_tokens: int
    cost_usd: float  # sum of the known costs
    unpriced: int  # requests with tokens whose model had no price


@dataclass(slots=True, frozen=True)
class TimeBucket:
    """Requests in [start, start + bucket_s); durations are None for an empty bucket."""

    start: float
    requests: int
    errors: int
    avg_ms: float | None
    p50_ms: float | None
    p95_ms: float | None


@dataclass(slots=True, frozen=True)
class DistinctValues:
    """Keys, providers and models seen, for filter dropdowns."""

    keys: list[str]
    providers: list[str]
    models: list[str]


@dataclass(slots=True, frozen=True)
class StoreHealth:
    """What /health reports about the store."""

    healthy: bool
    path: str
    last_error: str | None
    rows_written: int
    failed_writes: int  # rows lost: failed batches plus rows dropped alone
    dropped_rows: int  # rows the database refused even after sanitising


class InteractionStore(Protocol):
    """What handlers, the recorder and the dashboard need from a store (SQLite today)."""

    async def write_batch(self, records: list[Interaction]) -> None:
        """Persist a batch (the Recorder's sink interface); raise if nothing could be written."""

    async def quota_timestamps(self, since: float) -> dict[str, list[float]]:
        """Per key, epoch seconds of its quota-counted requests since `since`, oldest first."""

    async def usage(self, since: float, until: float | None = None,
                    group_by: tuple[str, ...] = ("key", "model")) -> list[UsageRow]:
        """Totals per group (some of key, provider, model, day) over [since, until)."""

    async def recent(self, *, limit: int = 50, offset: int = 0, key: str | None = None,
                     provider: str | None = None, model: str | None = None,
                     status: int | str | None = None, include_bodies: bool = False) -> list[InteractionRow]:
        """Newest first, filtered; status is a code or "2xx"/"3xx"/"4xx"/"5xx"/"error"."""

    async def get(self, id: str) -> InteractionRow | None:
        """One interaction by id, bodies included."""

    async def timeseries(self, since: float, bucket_s: int, until: float | None = None) -> list[TimeBucket]:
        """Per bucket of bucket_s seconds from since to until (now): requests, errors, durations."""

    async def distinct_values(self) -> DistinctValues:
        """Keys, providers and models seen, for filter dropdowns."""

    async def prune(self, older_than: float) -> int:
        """Delete interactions older than `older_than`; returns how many."""

    async def health(self) -> StoreHealth:
        """A cheap, cached health report."""

    async def close(self) -> None:
        """Flush and release everything."""
