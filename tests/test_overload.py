"""Overload is refused fast (503 + Retry-After), and a failing database never stops the traffic."""

from __future__ import annotations

import asyncio
import json
import time

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import VK_OPENAI, base_url


async def chat(gateway, model: str = "gpt-4o-mini"):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", headers={"Authorization": f"Bearer {VK_OPENAI}"},
        body=json.dumps({"model": model, "messages": [{"role": "user", "content": "x"}]}), request_timeout=10),
        raise_error=False)


async def test_past_the_concurrency_cap_requests_get_503_fast(start_gateway):
    gateway = await start_gateway(max_upstream_concurrency=2, overload_wait=0.2, request_timeout=1.5)
    started = time.perf_counter()
    results = await asyncio.gather(*(chat(gateway, "hang") for _ in range(5)))
    codes = sorted(r.code for r in results)
    assert codes == [503, 503, 503, 504, 504]
    refused = next(r for r in results if r.code == 503)
    assert refused.headers["Retry-After"] == "1"
    assert json.loads(refused.body)["error"]["type"] == "overloaded_error"
    assert time.perf_counter() - started < 3


async def test_database_failure_at_run_time_keeps_serving_and_shows_in_health(gateway):
    # The disk goes away under the writer: its connection is gone, every batch now fails.
    await gateway.ctx.store._db.close()
    for _ in range(3):
        assert (await chat(gateway)).code == 200
    recorder = gateway.ctx.recorder
    deadline = time.monotonic() + 3
    while not recorder.stats().get("failed_batches") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    response = await AsyncHTTPClient().fetch(base_url(gateway, "/health"), raise_error=False)
    document = json.loads(response.body)
    assert document["status"] in ("degraded", "unhealthy")
    assert document["database"]["writer"]["failed_batches"] >= 1
