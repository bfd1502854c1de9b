"""The /health report: provider health from real traffic, database health from a cached check."""

from __future__ import annotations

import time
from dataclasses import asdict, is_dataclass
from typing import Any

from . import __version__
from .context import Context

DATABASE_CHECK_EVERY_S = 5.0


class HealthCheck:
    """Builds the /health document; asks the database at most once per DATABASE_CHECK_EVERY_S."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self._database: dict[str, Any] = {"healthy": True, "checked": None}
        self._checked_at = 0.0

    async def _database_health(self) -> dict[str, Any]:
        now = time.monotonic()
        store = self.ctx.store
        if store is not None and now - self._checked_at >= DATABASE_CHECK_EVERY_S:
            self._checked_at = now
            health = await store.health()
            self._database = asdict(health) if is_dataclass(health) else dict(health)
        database = dict(self._database)
        recorder = self.ctx.recorder
        if recorder is not None:
            database["writer"] = recorder.stats()
        return database

    async def report(self) -> tuple[int, dict[str, Any]]:
        """(HTTP status, document): 200 for healthy and degraded, 503 when the gateway cannot serve."""
        ctx = self.ctx
        database = await self._database_health()
        providers = {name: health.as_dict() for name, health in ctx.metrics.providers.items()} if ctx.metrics else {}
        writer = database.get("writer") or {}
        if ctx.shutting_down or not database.get("healthy", False):
            status = "unhealthy"
        elif any(not p["healthy"] for p in providers.values()) or writer.get("dropped") or writer.get("failed_batches"):
            status = "degraded"
        else:
            status = "healthy"
        document = {
            "status": status,
            "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "version": __version__,
            "uptime_s": round(time.time() - ctx.started_at, 3),
            "in_flight": ctx.in_flight,
            "connections": ctx.connections.stats() if ctx.connections is not None else None,
            "shutting_down": ctx.shutting_down,
            "providers": providers,
            "database": database,
        }
        return (503 if status == "unhealthy" else 200), document
