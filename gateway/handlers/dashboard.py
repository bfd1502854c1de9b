"""The operator dashboard: overview, keys, interactions and one interaction, and the JSON the pages poll.

Every page is rendered on the server and reads fine with JavaScript off; the script
in static/ only redraws the charts and swaps in fresh fragments from /dashboard/data.json.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict
from typing import Any
from urllib.parse import urlencode

from markupsafe import escape

from ..context import Context
from ..errors import InvalidRequest, NotFound
from .admin import DashboardHandler, format_when

HOUR_S = 3600
DAY_S = 86400
LATEST_ROWS = 10
PAGE_SIZE = 50
MAX_PAGE = 10_000
STATUS_CHOICES = [("error", "Errors (4xx, 5xx)"), ("2xx", "2xx"), ("4xx", "4xx"), ("5xx", "5xx")] + [
    (str(code), str(code)) for code in (400, 401, 403, 404, 413, 429, 499, 500, 502, 503, 504)]
_STATUS_CLASSES = {"error", "2xx", "3xx", "4xx", "5xx"}


# --- what the pages show --------------------------------------------------------------------

async def overview_data(ctx: Context) -> dict[str, Any]:
    """Figures for the overview: traffic over the last hour and day, latency, usage, provider health, latest rows."""
    now = time.time()
    store = ctx.store
    hour = _series(await store.timeseries(now - HOUR_S, 60, until=now), 60)
    day = _series(await store.timeseries(now - DAY_S, HOUR_S, until=now), HOUR_S)
    by_provider = await store.usage(now - DAY_S, group_by=("provider",))
    latest = await store.recent(limit=LATEST_ROWS)
    snapshot = ctx.metrics.snapshot() if ctx.metrics is not None else {}
    no_figures = {"p50": None, "p95": None, "p99": None}
    return {
        "generated_at": _iso(now),
        "hour": hour,
        "day": day,
        "latency_ms": snapshot.get("latency_ms", no_figures),
        "ttft_ms": snapshot.get("time_to_first_token_ms", no_figures),
        "overhead_ms": snapshot.get("overhead_ms", no_figures),
        "usage_24h": _usage_totals(by_provider),
        "providers": _providers(ctx, {u.provider: u for u in by_provider}),
        "quota_rejections": ctx.quota.rejections,
        "uptime_s": now - ctx.started_at,
        "latest": [_row_summary(row) for row in latest],
    }


async def keys_data(ctx: Context) -> list[dict[str, Any]]:
    """Per key, by label only: requests in the quota window against its limit, tokens, cost, last use."""
    now = time.time()
    store = ctx.store
    window_s = ctx.quota.window_s
    in_window = {u.key: u for u in await store.usage(now - window_s, group_by=("key",))}
    in_day = {u.key: u for u in await store.usage(now - DAY_S, group_by=("key",))}
    config = ctx.config
    out = []
    for key in ctx.keys.labels():
        window, day = in_window.get(key.label), in_day.get(key.label)
        last = await store.recent(limit=1, key=key.label)
        out.append({
            "label": key.label,
            "provider": key.provider,
            "models": sorted(key.models) if key.models is not None else None,
            "quota_limit": (key.quota_limit or config.quota_limit) if config.quota_enabled else None,
            "used": ctx.quota.used(key.label),
            "tokens": (window.prompt_tokens + window.completion_tokens) if window else 0,
            "cost_usd": window.cost_usd if window else 0.0,
            "requests_24h": day.requests if day else 0,
            "errors_24h": day.errors if day else 0,
            "last_used": last[0].ts if last else None,
        })
    return out


def _series(buckets: list[Any], bucket_s: int) -> dict[str, Any]:
    requests = sum(b.requests for b in buckets)
    errors = sum(b.errors for b in buckets)
    return {
        "bucket_s": bucket_s,
        "requests": requests,
        "errors": errors,
        "error_rate": errors / requests if requests else None,
        "buckets": [{"start": b.start, "requests": b.requests, "errors": b.errors,
                     "p50_ms": b.p50_ms, "p95_ms": b.p95_ms} for b in buckets],
    }


def _usage_totals(rows: list[Any]) -> dict[str, Any]:
    names = ("requests", "errors", "prompt_tokens", "completion_tokens", "cached_tokens", "cache_write_tokens",
             "cost_usd", "unpriced")
    totals: dict[str, Any] = {name: sum(getattr(r, name) for r in rows) for name in names}
    totals["total_tokens"] = totals["prompt_tokens"] + totals["completion_tokens"]
    return totals


def _providers(ctx: Context, usage: dict[str | None, Any]) -> list[dict[str, Any]]:
    health = ctx.metrics.providers if ctx.metrics is not None else {}
    out = []
    for name in sorted(set(ctx.providers) | set(health)):
        figures = health[name].as_dict() if name in health else {
            "status": "unknown", "error_rate": 0.0, "recent_calls": 0, "last_success": None,
            "last_error": None, "last_error_message": None}
        day = usage.get(name)
        out.append({"name": name, **figures, "requests_24h": day.requests if day else 0,
                    "errors_24h": day.errors if day else 0})
    return out


def _row_summary(row: Any) -> dict[str, Any]:
    """A row without its bodies, for tables and the JSON."""
    summary = asdict(row)
    summary.pop("request", None)
    summary.pop("response", None)
    return summary


def _body_view(text: str | None, truncated: bool) -> dict[str, Any]:
    """A recorded body pretty-printed; a truncated one (stored as a JSON wrapper) shown as its raw head."""
    if text is None:
        return {"text": None, "truncated": False}
    try:
        document = json.loads(text)
    except ValueError:
        return {"text": text, "truncated": False}
    if truncated and isinstance(document, dict) and document.get("truncated") is True and "head" in document:
        head = str(document["head"])
        return {"text": head, "truncated": True, "original_bytes": document.get("original_bytes"),
                "kept_bytes": len(head.encode("utf-8", "surrogatepass"))}
    return {"text": json.dumps(document, indent=2, ensure_ascii=False), "truncated": False}


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


# --- handlers ---------------------------------------------------------------------------------

class RootHandler(DashboardHandler):
    """GET / (and /dashboard/): to the overview, keeping any query (e.g. ?token=)."""

    public = True

    def get(self) -> None:
        query = self.request.query
        self.redirect("/dashboard" + ("?" + query if query else ""))


class OverviewHandler(DashboardHandler):
    """The overview page."""

    async def get(self) -> None:
        self.render_page("overview.html", data=await overview_data(self.ctx))


class KeysHandler(DashboardHandler):
    """Every virtual key by its label, with its quota use, tokens and cost."""

    async def get(self) -> None:
        self.render_page("keys.html", keys=await keys_data(self.ctx), window_s=self.ctx.quota.window_s,
                         quota_enabled=self.ctx.config.quota_enabled)


class InteractionsHandler(DashboardHandler):
    """Interactions, newest first, filtered by key, provider, model and status, a page at a time."""

    async def get(self) -> None:
        filters = {name: self.get_query_argument(name, "").strip() for name in ("key", "provider", "model", "status")}
        status = filters["status"].lower()
        if status and not (status in _STATUS_CLASSES or (status.isdigit() and len(status) == 3)):
            raise InvalidRequest(f"status filter {filters['status']!r}: expected a code such as 429, or 2xx, 4xx, 5xx, error")
        filters["status"] = status
        page = _page_number(self.get_query_argument("page", "1"))
        rows = await self.ctx.store.recent(
            limit=PAGE_SIZE + 1, offset=(page - 1) * PAGE_SIZE,
            key=filters["key"] or None, provider=filters["provider"] or None, model=filters["model"] or None,
            status=(int(status) if status.isdigit() else status) or None)
        choices = await self.ctx.store.distinct_values()
        status_choices = list(STATUS_CHOICES)
        if status and status not in dict(status_choices):
            status_choices.append((status, status))

        def link(to_page: int) -> str:
            query = {k: v for k, v in filters.items() if v}
            if to_page > 1:
                query["page"] = str(to_page)
            return "/dashboard/interactions" + ("?" + urlencode(query) if query else "")

        self.render_page(
            "interactions.html", rows=rows[:PAGE_SIZE], filters=filters, choices=choices,
            status_choices=status_choices, filters_active=any(filters.values()), page=page,
            newer_url=link(page - 1) if page > 1 else None,
            older_url=link(page + 1) if len(rows) > PAGE_SIZE else None)


class InteractionHandler(DashboardHandler):
    """One interaction: its figures, and the request and reply pretty-printed."""

    async def get(self, interaction_id: str) -> None:
        row = await self.ctx.store.get(interaction_id)
        if row is None:
            raise NotFound(f"No interaction {interaction_id} (it may have been pruned).")
        self.render_page("interaction.html", row=row, request=_body_view(row.request, row.truncated),
                         response=_body_view(row.response, row.truncated))


class DashboardDataHandler(DashboardHandler):
    """GET /dashboard/data.json?page=overview|keys: the page's figures and its fragments re-rendered."""

    json_api = True

    async def get(self) -> None:
        page = self.get_query_argument("page", "overview")
        if page == "overview":
            data: Any = await overview_data(self.ctx)
            html = {
                "stats": self.render_fragment("_stats.html", data=data),
                "providers": self.render_fragment("_providers.html", data=data),
                "latest": self.render_fragment("_interaction_rows.html", rows=data["latest"]),
                "generated": str(escape(format_when(data["generated_at"]))),
            }
        elif page == "keys":
            data = await keys_data(self.ctx)
            html = {"keys": self.render_fragment("_key_rows.html", keys=data)}
        else:
            raise InvalidRequest(f"page {page!r}: expected overview or keys", param="page")
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"page": page, "data": data, "html": html}))


def _page_number(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PAGE:
        raise InvalidRequest(f"page {raw!r}: expected a whole number from 1 to {MAX_PAGE}", param="page")
    return int(raw)
