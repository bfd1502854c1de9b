"""In-memory figures of the traffic: Prometheus metrics, a JSON summary, and provider health.

`observe(record)` runs once per request on the event loop, so it only bumps
counters and appends to bounded deques; percentiles are computed when asked.
"""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily
from prometheus_client.exposition import choose_encoder

from .record import Interaction

# Bounded label values: a client chooses the model string, so unknown ones share one label.
MAX_MODEL_LABELS = 200
LATENCY_SAMPLES = 4096
HEALTH_WINDOW = 100  # recent upstream outcomes per provider
_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1)


@dataclass
class ProviderHealth:
    """What recent real calls say about one provider (no probes: they would cost money)."""

    outcomes: deque[bool] = field(default_factory=lambda: deque(maxlen=HEALTH_WINDOW))
    last_success: float | None = None
    last_error: float | None = None
    last_error_message: str | None = None

    def error_rate(self) -> float:
        return (self.outcomes.count(False) / len(self.outcomes)) if self.outcomes else 0.0

    def as_dict(self) -> dict[str, Any]:
        rate = self.error_rate()
        return {
            "healthy": rate < 0.5,
            "status": "unknown" if not self.outcomes else ("healthy" if rate < 0.5 else "failing"),
            "note": "no recent traffic; assumed healthy" if not self.outcomes else None,
            "last_success": _iso(self.last_success),
            "last_error": _iso(self.last_error),
            "last_error_message": self.last_error_message,
            "error_rate": round(rate, 4),
            "recent_calls": len(self.outcomes),
        }


class Metrics:
    """Counters and histograms for /metrics, the dashboard and /health."""

    def __init__(self, providers: list[str], quota_rejections: Callable[[], int] = lambda: 0,
                 connections: Callable[[], dict[str, int]] = lambda: {"open": 0, "limit": 0, "refused": 0}) -> None:
        self.started = time.time()
        self.quota_rejections = quota_rejections  # the quota counts its own refusals
        self.connections = connections  # so does the server, its connections
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter("gateway_requests", "Requests by provider, model and status.", ["provider", "model", "status"], registry=r)
        self.requests_by_key = Counter("gateway_key_requests", "Requests by virtual key name.", ["key"], registry=r)
        self.duration = Histogram("gateway_request_duration_seconds", "Time from request to last byte.", ["provider"], buckets=_BUCKETS, registry=r)
        self.ttft = Histogram("gateway_time_to_first_token_seconds", "Time to the first byte of a streamed reply.", ["provider"], buckets=_BUCKETS, registry=r)
        self.overhead = Histogram("gateway_overhead_seconds", "The gateway's own time per request (as x-gateway-overhead-ms).", buckets=_OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter("gateway_tokens", "Tokens by provider, model and type.", ["provider", "model", "type"], registry=r)
        self.cost = Counter("gateway_cost_usd", "Estimated cost in US dollars.", ["provider", "model"], registry=r)
        r.register(_CountedElsewhere("gateway_quota_rejections", "Requests refused by a key's quota.", quota_rejections))
        r.register(_CountedElsewhere("gateway_connections_refused", "Client connections refused at MAX_CLIENT_CONNECTIONS.",
                                     lambda: connections()["refused"]))
        Gauge("gateway_open_connections", "Client connections open now.", registry=r).set_function(
            lambda: connections()["open"])
        self.uptime = Gauge("gateway_uptime_seconds", "Seconds since start.", registry=r)
        self.uptime.set_function(lambda: time.time() - self.started)
        self.providers = {name: ProviderHealth() for name in providers}
        self._models: set[str] = set()
        self._durations: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._ttfts: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self._overheads: deque[float] = deque(maxlen=LATENCY_SAMPLES)
        self.total = 0
        self.by_provider: Tally[str] = Tally()
        self.by_status: Tally[str] = Tally()
        self.by_key: Tally[str] = Tally()
        self.token_totals: Tally[str] = Tally()
        self.cost_total = 0.0
        self.duration_sum_ms = 0.0
        self.last_updated: float | None = None
        # labels() hashes and validates its arguments on every call; the children are cached by label tuple.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def _model_label(self, model: str | None) -> str:
        if not model:
            return "none"
        if model in self._models:
            return model
        if len(self._models) >= MAX_MODEL_LABELS:
            return "other"
        self._models.add(model)
        return model

    def observe(self, record: Interaction) -> None:
        """Count one finished interaction."""
        provider = record.provider or "none"
        model = self._model_label(record.model)
        status = str(record.status)
        self._child(self.requests, provider, model, status).inc()
        if record.key_name:
            self._child(self.requests_by_key, record.key_name).inc()
            self.by_key[record.key_name] += 1
        seconds = record.duration_ms / 1000
        self._child(self.duration, provider).observe(seconds)
        if record.overhead_ms is not None:
            self.overhead.observe(record.overhead_ms / 1000)
            self._overheads.append(record.overhead_ms)
        if record.stream and record.ttfb_ms is not None and record.status < 400:
            self._child(self.ttft, provider).observe(record.ttfb_ms / 1000)
            self._ttfts.append(record.ttfb_ms)
        usage = record.usage
        if usage is not None:
            for kind, count in (("prompt", usage.prompt_tokens), ("completion", usage.completion_tokens),
                                ("cached", usage.cached_tokens), ("cache_write", usage.cache_write_tokens)):
                if count:
                    self._child(self.tokens, provider, model, kind).inc(count)
                    self.token_totals[kind] += count
        if record.cost_usd:
            self._child(self.cost, provider, model).inc(record.cost_usd)
            self.cost_total += record.cost_usd
        self.total += 1
        self.by_provider[provider] += 1
        self.by_status[status] += 1
        self.duration_sum_ms += record.duration_ms
        self._durations.append(record.duration_ms)
        self.last_updated = time.time()
        if record.upstream_ms is not None and record.provider in self.providers:
            self._provider_outcome(self.providers[record.provider], record)

    def _provider_outcome(self, health: ProviderHealth, record: Interaction) -> None:
        # A 4xx is the client's doing (or a 499: the client left); 5xx, 502 and 504 say the provider failed.
        failed = record.status >= 500
        health.outcomes.append(not failed)
        if failed:
            health.last_error = record.ts
            health.last_error_message = (record.error_message or record.error_type or str(record.status))[:200]
        elif record.status < 400:
            health.last_success = record.ts

    def snapshot(self) -> dict[str, Any]:
        """The JSON form of /metrics."""
        return {
            "total_requests": self.total,
            "requests_by_provider": dict(self.by_provider),
            "requests_by_status": dict(self.by_status),
            "requests_by_key": dict(self.by_key),
            "average_response_ms": round(self.duration_sum_ms / self.total, 3) if self.total else 0.0,
            "latency_ms": percentiles(self._durations),
            "time_to_first_token_ms": percentiles(self._ttfts),
            "overhead_ms": percentiles(self._overheads),
            "tokens": {kind: self.token_totals.get(kind, 0) for kind in ("prompt", "completion", "cached", "cache_write")},
            "cost_usd": round(self.cost_total, 6),
            "quota_rejections": self.quota_rejections(),
            "connections": self.connections(),
            "uptime_s": round(time.time() - self.started, 3),
            "last_updated": _iso(self.last_updated),
        }

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The Prometheus text (or OpenMetrics, by Accept) and its content type."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


class _CountedElsewhere:
    """A counter another part keeps (the quota, the server), exposed as <name>_total."""

    def __init__(self, name: str, documentation: str, read: Callable[[], int]) -> None:
        self.name, self.documentation, self.read = name, documentation, read

    def describe(self) -> Iterator[CounterMetricFamily]:
        # The registry asks at registration, when the part counting may not exist yet.
        yield CounterMetricFamily(self.name, self.documentation)

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(self.name, self.documentation, value=self.read())


def percentiles(samples: deque[float]) -> dict[str, float | None]:
    """p50/p95/p99 of recent samples (None when there are none)."""
    if not samples:
        return {"p50": None, "p95": None, "p99": None}
    ordered = sorted(samples)
    last = len(ordered) - 1
    return {name: round(ordered[min(last, int(q * len(ordered)))], 3) for name, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99))}


def _iso(stamp: float | None) -> str | None:
    if stamp is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(stamp)) + f".{int(stamp * 1000) % 1000:03d}Z"
