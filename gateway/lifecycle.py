"""Start and stop the gateway: every lifetime (database, writer, HTTP client, server) in one place.

serve() (the CLI) and the tests use the same `start` and `Gateway.stop`, so what
the tests run is what production runs.
"""

from __future__ import annotations

import asyncio
import secrets
import logging
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from tornado.netutil import bind_sockets

from .app import ROOT, make_app
from .config import Config
from .context import Context
from .health import HealthCheck
from .jsonlog import JsonLogSink
from .keys import KeyRing
from .listener import CappedHTTPServer, connection_cap
from .metrics import Metrics
from .pricing import PriceTable
from .providers import build_registry
from .quota import SlidingWindowQuota
from .recorder import Recorder
from .store import Store
from .upstream import Upstream

log = logging.getLogger(__name__)

MIGRATIONS = ROOT / "migrations"


PRUNE_EVERY_S = 3600.0


@dataclass
class Gateway:
    """A running gateway: its context, its server, the port it listens on and its background parts."""

    ctx: Context
    server: CappedHTTPServer
    port: int
    json_log: JsonLogSink
    pruner: asyncio.Task[None]
    stopped: bool = False

    async def stop(self, grace: float | None = None) -> None:
        """Stop accepting, let in-flight requests finish (bounded), flush the records, close everything."""
        if self.stopped:
            return
        self.stopped = True
        ctx = self.ctx
        ctx.shutting_down = True
        self.server.stop()
        deadline = time.monotonic() + (ctx.config.shutdown_grace if grace is None else grace)
        while ctx.in_flight > 0 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        if ctx.in_flight:
            log.warning("shutdown: %d requests still in flight after the grace period; closing them", ctx.in_flight)
        await self.server.close_all_connections()
        self.pruner.cancel()
        await asyncio.wait([self.pruner])  # lets a prune cut short roll back before the final batch
        # Each part closes even if another fails: a dead database must not keep the writer or client open.
        for part in (ctx.recorder, self.json_log, ctx.store):
            if part is not None:
                try:
                    await part.close()
                except Exception:
                    log.exception("shutdown: closing %s failed", type(part).__name__)
        ctx.upstream.close()


async def start(config: Config, keys: KeyRing, *, environ: Mapping[str, str] | None = None,
                clock: Callable[[], float] = time.time) -> Gateway:
    """Open the database, start the writer, build the context and listen. Raises on a bad database."""
    store = await Store.open(str(config.database_path), MIGRATIONS)
    recorder: Recorder | None = None
    try:
        quota = SlidingWindowQuota(window_s=config.quota_window_s, clock=clock)
        quota.seed(await store.quota_timestamps(clock() - config.quota_window_s))
        json_log = JsonLogSink(path=config.log_file if config.log_to_file else None, stream=sys.stdout)
        recorder = Recorder([store, json_log])
        recorder.start()
        upstream = Upstream(
            connect_timeout=config.connect_timeout,
            idle_timeout=config.request_timeout,
            max_concurrency=config.max_upstream_concurrency,
            overload_wait=config.overload_wait,
            max_response_bytes=config.max_response_bytes,
        )
        ctx = Context(
            config=config,
            keys=keys,
            quota=quota,
            upstream=upstream,
            providers=build_registry(config),
            prices=PriceTable.load(),
            store=store,
            recorder=recorder,
            admin_key=config.admin_key or secrets.token_urlsafe(24),
            environ=environ or {},
        )
        ctx.metrics = Metrics(list(ctx.providers), quota_rejections=lambda: quota.rejections,
                              connections=lambda: ctx.connections.stats())
        ctx.health = HealthCheck(ctx)
        ctx.record_sinks += [recorder.submit, ctx.metrics.observe]
        server = CappedHTTPServer(
            make_app(ctx),
            max_connections=connection_cap(config.max_client_connections, config.max_upstream_concurrency),
            xheaders=False,
            decompress_request=False,
            # Tornado's own cap closes the connection with a 400; ours answers 413 first (ProxyHandler).
            max_body_size=config.max_request_bytes * 4,
            idle_connection_timeout=config.header_timeout,
            body_timeout=config.header_timeout,
        )
        ctx.connections = server
        sockets = bind_sockets(config.port, config.host)
        server.add_sockets(sockets)
        port = sockets[0].getsockname()[1]
        pruner = asyncio.ensure_future(_prune_periodically(store, config.retention_days, clock))
        return Gateway(ctx=ctx, server=server, port=port, json_log=json_log, pruner=pruner)
    except BaseException:
        # A failed start must not leave the database thread (or the writer) keeping the process alive.
        if recorder is not None:
            await recorder.close()
        await store.close()
        raise


async def _prune_periodically(store: Store, retention_days: int, clock: Callable[[], float]) -> None:
    """Delete interactions older than the retention, at start and hourly, off the request path (no VACUUM)."""
    while True:
        try:
            removed = await store.prune(clock() - retention_days * 86400)
            if removed:
                log.info("pruned %d interactions older than %d days", removed, retention_days)
        except Exception as exc:  # a failing database is reported by /health; keep trying
            log.warning("pruning old interactions failed: %s", exc)
        await asyncio.sleep(PRUNE_EVERY_S)


def describe_start(gateway: Gateway) -> str:
    """The lines printed at start; a generated admin key is shown here, once, and nowhere else."""
    ctx = gateway.ctx
    config = ctx.config
    host = "localhost" if config.host in ("0.0.0.0", "::", "127.0.0.1") else config.host
    lines = [f"llm-gateway listening on http://{config.host}:{gateway.port} "
             f"({len(ctx.keys)} virtual keys, database {Path(config.database_path)}, "
             f"up to {gateway.server.max_connections} client connections)"]
    if config.admin_key is None:
        lines.append(f"GATEWAY_ADMIN_KEY is unset; this run's admin key opens the dashboard: "
                     f"http://{host}:{gateway.port}/dashboard?token={ctx.admin_key}")
    else:
        lines.append(f"dashboard: http://{host}:{gateway.port}/dashboard (admin key from GATEWAY_ADMIN_KEY)")
    return "\n".join(lines)
