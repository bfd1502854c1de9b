"""Every interaction reaches SQLite and the JSON log; quotas hold under bursts and across restarts."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
import time
from pathlib import Path

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import PROVIDER_KEY, VK_OPENAI, VK_SMALL_QUOTA, base_url, write_keys



def body(model: str = "gpt-4o-mini", **extra) -> str:  # type: ignore[no-untyped-def]
    return json.dumps({"model": model, "messages": [{"role": "user", "content": "persist me"}], **extra})


async def post(port: int, payload: str, key: str | None = VK_OPENAI):  # type: ignore[no-untyped-def]
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return await AsyncHTTPClient().fetch(HTTPRequest(
        f"http://127.0.0.1:{port}/v1/chat/completions", method="POST", body=payload, headers=headers,
        request_timeout=20), raise_error=False)


def rows(db: Path) -> list[sqlite3.Row]:
    with sqlite3.connect(db) as connection:
        connection.row_factory = sqlite3.Row
        return connection.execute("SELECT * FROM interactions ORDER BY seq").fetchall()


async def test_every_request_is_one_row_rejected_ones_included(gateway, tmp_path):
    statuses = [
        (await post(gateway.port, body())).code,
        (await post(gateway.port, body(stream=True))).code,
        (await post(gateway.port, body(), key=None)).code,
        (await post(gateway.port, "{broken")).code,
        (await post(gateway.port, body("fault-500"))).code,
    ]
    assert statuses == [200, 200, 401, 400, 500]
    await gateway.ctx.recorder.close()
    stored = rows(tmp_path / "gateway.db")
    assert [r["status"] for r in stored] == statuses
    plain, streamed, unauthenticated, invalid, failed = stored
    assert plain["key"] == "user1" and plain["provider"] == "openai" and plain["model"] == "gpt-4o-mini"
    assert plain["prompt_tokens"] > 0 and plain["completion_tokens"] > 0 and plain["duration_ms"] > 0
    assert json.loads(plain["request"])["messages"][0]["content"] == "persist me"
    assert json.loads(plain["response"])["choices"][0]["message"]["content"] == "Echo: persist me"
    assert plain["ts"].endswith("Z") and plain["cost_usd"] is not None
    assert streamed["stream"] == 1 and streamed["completion_tokens"] > 0
    assert json.loads(streamed["response"])["choices"][0]["message"]["content"] == "Echo: persist me"
    assert unauthenticated["key"] is None and unauthenticated["error_type"] == "authentication_error"
    assert invalid["error_type"] == "invalid_request_error" and invalid["quota_counted"] == 0
    assert failed["error_type"] == "server_error"
    # The JSON log holds the same interactions, one line each.
    lines = [json.loads(line) for line in (tmp_path / "gateway.log").read_text().splitlines()]
    assert [line["status"] for line in lines] == statuses
    assert {"timestamp", "key", "provider", "model", "method", "path", "status", "duration_ms",
            "request", "response"} <= set(lines[0])
    everything = (tmp_path / "gateway.log").read_text() + json.dumps([dict(r) for r in stored])
    assert PROVIDER_KEY not in everything and VK_OPENAI not in everything


async def test_burst_admits_exactly_the_limit(start_gateway, tmp_path):
    gateway = await start_gateway(quota_limit=10)
    results = await asyncio.gather(*(post(gateway.port, body()) for _ in range(50)))
    codes = sorted(r.code for r in results)
    assert codes.count(200) == 10 and codes.count(429) == 40
    refused = next(r for r in results if r.code == 429)
    assert int(refused.headers["Retry-After"]) > 0
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert json.loads(refused.body)["error"]["type"] == "rate_limit_error"
    admitted = next(r for r in results if r.code == 200)
    assert admitted.headers["x-ratelimit-limit-requests"] == "10"


async def test_restart_keeps_quota(start_gateway, tmp_path):
    first = await start_gateway()
    for _ in range(3):
        assert (await post(first.port, body(), key=VK_SMALL_QUOTA)).code == 200
    await first.stop(grace=2)
    second = await start_gateway()
    response = await post(second.port, body(), key=VK_SMALL_QUOTA)
    assert response.code == 429
    assert (await post(second.port, body())).code == 200  # another key is untouched


async def test_sigterm_finishes_in_flight_requests_and_exits_0(start_gateway_process, fake_openai, tmp_path):
    keys = write_keys(tmp_path / "keys.json", fake_openai.base_url, "http://127.0.0.1:9")
    db = tmp_path / "gateway.db"
    process = await start_gateway_process(keys, db, fake_openai.base_url)
    in_flight = [asyncio.ensure_future(post(process.port, body("slow-stream", stream=True))) for _ in range(5)]
    while fake_openai.state.open_streams < 5:
        await asyncio.sleep(0.02)
    stopping = asyncio.ensure_future(process.stop(signal.SIGTERM))
    results = await asyncio.gather(*in_flight)
    assert [r.code for r in results] == [200] * 5
    assert all(r.body.endswith(b"data: [DONE]\n\n") for r in results)
    assert await stopping == 0
    stored = rows(db)
    assert len(stored) == 5 and all(r["status"] == 200 and r["completion_tokens"] for r in stored)


async def test_old_interactions_are_pruned_at_start(start_gateway, tmp_path):
    first = await start_gateway()
    assert (await post(first.port, body())).code == 200
    await first.stop(grace=2)
    with sqlite3.connect(tmp_path / "gateway.db") as connection:
        connection.execute("UPDATE interactions SET ts = '2020-01-01T00:00:00.000Z'")
    second = await start_gateway(retention_days=30)
    deadline = time.monotonic() + 3
    while rows(tmp_path / "gateway.db") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert rows(tmp_path / "gateway.db") == []
    assert (await post(second.port, body())).code == 200
