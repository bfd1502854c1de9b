"""The unified endpoint with an OpenAI key: the official SDK as client, a fake OpenAI behind."""

from __future__ import annotations

import asyncio
import json
import re
import time

import openai
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import PROVIDER_KEY, VK_OPENAI, base_url


def sdk(gateway, suffix: str = "/v1", key: str = VK_OPENAI) -> openai.AsyncOpenAI:  # type: ignore[no-untyped-def]
    return openai.AsyncOpenAI(api_key=key, base_url=base_url(gateway, suffix), max_retries=0, timeout=10)


@pytest.mark.parametrize("suffix", ["/v1", ""])
async def test_sdk_chat_through_both_base_urls(gateway, fake_openai, suffix):
    client = sdk(gateway, suffix)
    reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi there"}])
    assert reply.choices[0].message.content == "Echo: hi there"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    sent = fake_openai.received[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {PROVIDER_KEY}"
    await client.close()


async def test_sdk_stream_assembles_and_hides_unrequested_usage(gateway, fake_openai):
    client = sdk(gateway)
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream me"}], stream=True)
    deltas, usage_chunks = [], 0
    async for chunk in stream:
        if chunk.usage is not None:
            usage_chunks += 1
        if chunk.choices and chunk.choices[0].delta.content:
            deltas.append(chunk.choices[0].delta.content)
    assert "".join(deltas) == "Echo: stream me"
    assert len(deltas) > 1
    assert usage_chunks == 0  # the gateway asked for usage for itself, not for this client
    assert fake_openai.received[-1].json["stream_options"] == {"include_usage": True}
    await client.close()


async def test_sdk_stream_with_usage_requested_gets_usage_chunk(gateway, fake_openai):
    client = sdk(gateway, "")
    stream = await client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "count"}], stream=True,
        stream_options={"include_usage": True})
    usages = [chunk.usage async for chunk in stream if chunk.usage is not None]
    assert len(usages) == 1 and usages[0].completion_tokens > 0
    await client.close()


async def test_upstream_gets_only_the_real_key_and_the_unchanged_body(gateway, fake_openai):
    raw = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "exact"}], "x_custom": [1, 2.50, "\\u00e9"]}'
    response = await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", body=raw,
        headers={"Authorization": f"Bearer {VK_OPENAI}", "x-api-key": VK_OPENAI, "Cookie": "session=abc",
                 "OpenAI-Organization": "org-client", "Content-Type": "application/json"}))
    assert response.code == 200
    sent = fake_openai.received[-1]
    assert sent.body == raw  # forwarded as the original bytes
    credentials = [v for k, v in sent.raw_headers if k.lower() in ("authorization", "x-api-key", "cookie", "openai-organization")]
    assert credentials == [f"Bearer {PROVIDER_KEY}"]
    assert VK_OPENAI not in json.dumps(sent.raw_headers)
    # The provider's cookie does not reach the client; its request id does.
    assert "Set-Cookie" not in response.headers
    assert response.headers["x-request-id"] == "req_fake123"
    assert float(response.headers["x-gateway-overhead-ms"]) >= 0


async def test_stream_options_without_include_usage_is_completed(gateway, fake_openai):
    raw = json.dumps({"model": "gpt-4o-mini", "stream": True, "stream_options": {"include_usage": False},
                      "messages": [{"role": "user", "content": "x"}]}).encode()
    response = await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", body=raw,
        headers={"Authorization": f"Bearer {VK_OPENAI}"}))
    assert fake_openai.received[-1].json["stream_options"] == {"include_usage": True}
    assert b'"choices": []' not in response.body
    assert response.body.endswith(b"data: [DONE]\n\n")
    assert response.headers["Content-Type"].startswith("text/event-stream")
    assert response.headers["Cache-Control"] == "no-cache"


async def test_slow_stream_reaches_client_chunk_by_chunk(gateway):
    arrivals: list[float] = []
    started = time.perf_counter()

    def on_chunk(data: bytes) -> None:
        arrivals.append(time.perf_counter() - started)

    body = json.dumps({"model": "slow-stream", "stream": True, "messages": [{"role": "user", "content": "slowly now"}]})
    await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", body=body, streaming_callback=on_chunk,
        headers={"Authorization": f"Bearer {VK_OPENAI}"}))
    assert len(arrivals) >= 8
    # Eight-plus chunks 100 ms apart: the first must arrive long before the last.
    assert arrivals[-1] - arrivals[0] > 0.6


async def test_tool_call_stream_passes_through(gateway):
    client = sdk(gateway)
    stream = await client.chat.completions.create(
        model="tool-call", messages=[{"role": "user", "content": "weather?"}], stream=True,
        tools=[{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}])
    arguments, finish = "", None
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                arguments += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert json.loads(arguments) == {"city": "Paris"}
    assert finish == "tool_calls"
    await client.close()


async def test_hundred_concurrent_requests_all_succeed(start_gateway):
    gateway = await start_gateway(quota_limit=1000)
    client = sdk(gateway)

    async def one(i: int) -> str:
        reply = await client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"n{i}"}])
        return reply.choices[0].message.content

    results = await asyncio.gather(*(one(i) for i in range(100)))
    assert sorted(results) == sorted(f"Echo: n{i}" for i in range(100))
    await client.close()


async def test_models_lists_provider_models(gateway):
    client = sdk(gateway)
    models = await client.models.list()
    assert {m.id for m in models.data} == {"gpt-4o-mini", "gpt-4o"}
    await client.close()


async def test_models_lists_allow_list_when_set(gateway):
    client = sdk(gateway, key="vk_limited_models")
    models = await client.models.list()
    assert [m.id for m in models.data] == ["gpt-4o-mini"]
    await client.close()


async def test_stream_split_byte_by_byte_with_crlf_arrives_byte_identical(gateway, fake_openai):
    body = json.dumps({"model": "split-crlf", "stream": True, "stream_options": {"include_usage": True},
                       "messages": [{"role": "user", "content": "split"}]})
    direct = await AsyncHTTPClient().fetch(HTTPRequest(fake_openai.base_url + "/chat/completions", method="POST", body=body))
    through = await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", body=body,
        headers={"Authorization": f"Bearer {VK_OPENAI}"}))

    def normalize(raw: bytes) -> bytes:  # the fake's ids and timestamps differ per request
        return re.sub(rb'"(id|created)": ("[^"]*"|\d+)', b'"ID"', raw)

    assert b"\r\n\r\n" in through.body and "😀".encode() in through.body  # a 4-byte character, sent byte by byte
    assert normalize(through.body) == normalize(direct.body)
    await gateway.ctx.recorder.close()
    row = await gateway.ctx.store.get((await gateway.ctx.store.recent(limit=1))[0].id)
    assert row.completion_tokens == 8 and not row.incomplete
    assert "ünïcødé 😀" in json.loads(row.response)["choices"][0]["message"]["content"]
