"""Canary secrets: after traffic of every kind, faults included, neither the provider key nor a full
virtual key appears in any response, header, database byte, log line, metric or dashboard page."""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import ANTHROPIC_PROVIDER_KEY, PROVIDER_KEY, VK_ANTHROPIC, VK_LIMITED, VK_OPENAI, VK_SMALL_QUOTA

CANARIES = (PROVIDER_KEY, ANTHROPIC_PROVIDER_KEY, VK_OPENAI, VK_ANTHROPIC, VK_LIMITED, VK_SMALL_QUOTA)


async def test_no_secret_leaves_the_gateway(start_gateway, tmp_path):
    gateway = await start_gateway(quota_limit=2, request_timeout=0.5)
    seen: list[str] = []
    client = AsyncHTTPClient()

    async def fetch(path: str, method: str = "GET", body: dict | None = None, key: str | None = None,
                    headers: dict | None = None) -> None:
        all_headers = dict(headers or {})
        if key:
            all_headers["Authorization"] = f"Bearer {key}"
        response = await client.fetch(HTTPRequest(
            f"http://127.0.0.1:{gateway.port}{path}", method=method, headers=all_headers,
            body=json.dumps(body) if body is not None else (b"" if method == "POST" else None),
            request_timeout=10), raise_error=False)
        seen.append(response.body.decode("utf-8", "replace"))
        seen.append(json.dumps(list(response.headers.get_all())))

    chat = "/v1/chat/completions"
    for model in ("gpt-4o-mini", "fault-500", "fault-429", "html-502", "not-json", "redirect", "hang",
                  "reset-mid-stream", "stall-stream"):
        await fetch(chat, "POST", {"model": model, "stream": "stream" in model,
                                   "messages": [{"role": "user", "content": "hi"}]}, key=VK_OPENAI)
    await fetch(chat, "POST", {"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}, key=VK_LIMITED)
    for _ in range(3):  # past the quota
        await fetch(chat, "POST", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                    key=VK_SMALL_QUOTA)
    await fetch(chat, "POST", {"model": "claude-x", "messages": [{"role": "user", "content": "x"}]},
                key=VK_ANTHROPIC)  # its provider is unreachable: 502
    await fetch(chat, "POST", {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]},
                key=VK_OPENAI + "x")  # a near miss of a real key
    await fetch("/v1/messages", "POST", {"model": "m", "max_tokens": 5, "messages": []}, key=VK_OPENAI)
    await fetch("/v1/models", key=VK_OPENAI)
    await fetch("/health")
    await fetch("/metrics")
    await fetch("/metrics", headers={"Accept": "text/plain"})
    admin = {"Authorization": f"Bearer {gateway.ctx.admin_key}"}
    for page in ("/dashboard", "/dashboard/keys", "/dashboard/interactions", "/dashboard/data.json"):
        await fetch(page, headers=admin)
    await gateway.ctx.recorder.close()
    for row in await gateway.ctx.store.recent(limit=100):
        await fetch(f"/dashboard/interactions/{row.id}", headers=admin)
    await gateway.stop(grace=2)

    stored = (tmp_path / "gateway.db").read_bytes() + b"".join(
        p.read_bytes() for p in tmp_path.glob("gateway.db-*"))
    logged = (tmp_path / "gateway.log").read_text()
    everything = "\n".join(seen) + logged + stored.decode("latin-1")
    assert len(logged.splitlines()) >= 17
    for canary in CANARIES:
        assert canary not in everything, f"{canary[:12]}… leaked"
