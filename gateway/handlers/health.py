"""GET /health (for load balancers) and GET /metrics (JSON, or Prometheus text by Accept)."""

from __future__ import annotations

from .base import BaseHandler


class HealthHandler(BaseHandler):
    """Cheap: in-memory figures plus a cached database check."""

    recorded = False

    async def get(self) -> None:
        status, document = await self.ctx.health.report()
        self.set_status(status)
        self.set_header("Cache-Control", "no-store")
        self.finish(document)


class MetricsHandler(BaseHandler):
    """JSON by default; Prometheus exposition (or OpenMetrics) when the scraper asks for text."""

    recorded = False

    def get(self) -> None:
        accept = self.request.headers.get("Accept", "")
        metrics = self.ctx.metrics
        if "text/plain" in accept or "openmetrics" in accept:
            body, content_type = metrics.exposition(accept)
            self.set_header("Content-Type", content_type)
            self.finish(body)
            return
        self.finish(metrics.snapshot())
