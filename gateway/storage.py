"""What a store returns, the interface it implements, and rows made from records; store.py is SQLite's.

Handlers and the dashboard depend on these, not on SQL: a PostgreSQL store would
implement `InteractionStore` in a module of its own without touching them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol

from gateway.jsonlog import FIELDS, interaction_to_dict
from gateway.record import Interaction

_F = {name: i for i, name in enumerate(FIELDS)}
_INT64 = (-(2**63), 2**63 - 1)
_SURROGATE = re.compile("[\ud800-\udfff]")


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


def row_from_interaction(record: Interaction) -> tuple:
    """The record as a row of `interactions` (FIELDS order), NULs replaced: SQL text stops at (or refuses) NUL."""
    row = tuple(interaction_to_dict(record).values())
    if any(type(v) is str and "\x00" in v for v in row):
        row = tuple(v.replace("\x00", "\ufffd") if type(v) is str else v for v in row)
    return row


def sanitise_row(row: tuple) -> tuple:
    """A second chance for a refused row: lone surrogates -> U+FFFD, out-of-range ints -> NULL, odd types -> text."""
    out = []
    for v in row:
        if v is not None and not isinstance(v, (str, int, float, bytes)):
            v = str(v)
        if isinstance(v, str):
            v = _SURROGATE.sub("\ufffd", v)
        elif isinstance(v, int) and not _INT64[0] <= v <= _INT64[1]:
            v = None
        out.append(v)
    return tuple(out)


def daily_totals(rows: list[tuple]) -> Iterator[tuple]:
    """Per (day, key, provider, model) of the rows: the increments of the daily usage totals.

    '' stands for a missing key, provider or model. A generator, so that a store can run it
    lazily (SQLite's executemany runs it in the database thread, after the rows were built).
    """
    totals: dict[tuple, list] = {}
    for r in rows:
        group = (r[_F["ts"]][:10], r[_F["key"]] or "", r[_F["provider"]] or "", r[_F["model"]] or "")
        t = totals.setdefault(group, [0, 0, 0, 0, 0, 0, 0.0, 0])
        cost = r[_F["cost_usd"]]
        t[0] += 1
        t[1] += r[_F["status"]] >= 400
        t[2] += r[_F["prompt_tokens"]] or 0
        t[3] += r[_F["completion_tokens"]] or 0
        t[4] += r[_F["cached_tokens"]] or 0
        t[5] += r[_F["cache_write_tokens"]] or 0
        t[6] += cost or 0.0
        t[7] += cost is None and (r[_F["total_tokens"]] or 0) > 0
    for group, t in totals.items():
        yield group + tuple(t)
