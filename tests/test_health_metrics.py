"""GET /health and GET /metrics: shapes, transitions, and the Prometheus format."""

from __future__ import annotations

import json

from prometheus_client.parser import text_string_to_metric_families
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import PROVIDER_KEY, VK_OPENAI, base_url


async def get(gateway, path: str, headers: dict | None = None):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(base_url(gateway, path), headers=headers or {}, raise_error=False)


async def chat(gateway, model: str = "gpt-4o-mini", key: str = VK_OPENAI):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", headers={"Authorization": f"Bearer {key}"},
        body=json.dumps({"model": model, "messages": [{"role": "user", "content": "hi"}]})), raise_error=False)


async def test_health_shape_when_idle(gateway):
    response = await get(gateway, "/health")
    assert response.code == 200
    document = json.loads(response.body)
    assert document["status"] == "healthy"
    assert {"timestamp", "version", "uptime_s", "providers", "database"} <= set(document)
    assert document["providers"]["openai"]["status"] == "unknown"
    assert document["providers"]["openai"]["healthy"] is True
    assert document["database"]["healthy"] is True


async def test_failing_upstream_degrades_health(gateway):
    for _ in range(3):
        assert (await chat(gateway)).code == 200
    assert json.loads((await get(gateway, "/health")).body)["providers"]["openai"]["status"] == "healthy"
    for _ in range(5):
        assert (await chat(gateway, "fault-500")).code == 500
    document = json.loads((await get(gateway, "/health")).body)
    assert document["status"] == "degraded"
    openai_health = document["providers"]["openai"]
    assert openai_health["healthy"] is False and openai_health["error_rate"] > 0.5
    assert openai_health["last_error"] and openai_health["last_success"]


async def test_client_errors_do_not_degrade_provider_health(gateway):
    for _ in range(5):
        assert (await chat(gateway, key="vk_bad_key_000")).code == 401
    document = json.loads((await get(gateway, "/health")).body)
    assert document["status"] == "healthy"


async def test_database_gone_is_503(gateway):
    await gateway.ctx.store.close()
    gateway.ctx.health._checked_at = 0.0  # the check is cached; a new one is due
    response = await get(gateway, "/health")
    assert response.code == 503
    assert json.loads(response.body)["status"] == "unhealthy"


async def test_shutting_down_is_503(gateway):
    gateway.ctx.shutting_down = True
    response = await get(gateway, "/health")
    assert response.code == 503


async def test_metrics_json_moves_with_traffic(gateway):
    before = json.loads((await get(gateway, "/metrics")).body)
    assert {"total_requests", "requests_by_provider", "average_response_ms", "last_updated"} <= set(before)
    await chat(gateway)
    await chat(gateway, "fault-429")
    after = json.loads((await get(gateway, "/metrics")).body)
    assert after["total_requests"] == before["total_requests"] + 2
    assert after["requests_by_status"]["200"] >= 1 and after["requests_by_status"]["429"] == 1
    assert after["requests_by_key"]["user1"] >= 2
    assert after["tokens"]["prompt"] > before["tokens"]["prompt"]
    assert after["latency_ms"]["p50"] is not None
    assert after["last_updated"] is not None


async def test_prometheus_output_parses_and_hides_keys(start_gateway):
    gateway = await start_gateway(quota_limit=1)
    await chat(gateway)
    assert (await chat(gateway)).code == 429  # the key's quota
    response = await get(gateway, "/metrics", {"Accept": "text/plain;version=0.0.4"})
    assert response.code == 200
    text = response.body.decode()
    families = {family.name: family for family in text_string_to_metric_families(text)}
    requests = families["gateway_requests"]
    statuses = {sample.labels["status"] for sample in requests.samples if sample.name == "gateway_requests_total"}
    assert {"200", "429"} <= statuses
    assert "gateway_request_duration_seconds" in families
    assert "gateway_overhead_seconds" in families
    assert "gateway_tokens" in families
    quota = [s.value for s in families["gateway_quota_rejections"].samples if s.name == "gateway_quota_rejections_total"]
    assert quota == [1.0]
    assert VK_OPENAI not in text and PROVIDER_KEY not in text


async def test_openmetrics_when_asked(gateway):
    response = await get(gateway, "/metrics", {"Accept": "application/openmetrics-text; version=1.0.0"})
    assert response.headers["Content-Type"].startswith("application/openmetrics-text")
    assert response.body.rstrip().endswith(b"# EOF")


async def test_health_and_metrics_are_not_recorded_as_interactions(gateway):
    await get(gateway, "/health")
    await get(gateway, "/metrics")
    await gateway.ctx.recorder.close()
    assert await gateway.ctx.store.recent(limit=10) == []
