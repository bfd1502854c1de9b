"""One retry (configurable, off-able) for a refused/reset connection or 502/503/529, only before any byte
reached the client; never on 4xx, never once streaming began."""

from __future__ import annotations

import json

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import VK_OPENAI, base_url


async def chat(gateway, model: str, stream: bool = False):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", headers={"Authorization": f"Bearer {VK_OPENAI}"},
        body=json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "again"}]})),
        raise_error=False)


async def test_a_503_is_retried_once_and_succeeds(start_gateway, fake_openai):
    gateway = await start_gateway(retry_backoff=0.01)
    response = await chat(gateway, "flaky-503")
    assert response.code == 200 and json.loads(response.body)["choices"][0]["message"]["content"] == "Echo: again"
    assert fake_openai.state.calls["flaky-503"] == 2
    stream = await chat(gateway, "flaky-503", stream=True)
    assert stream.code == 200 and stream.body.endswith(b"data: [DONE]\n\n")
    assert fake_openai.state.calls["flaky-503"] == 4


async def test_retries_can_be_turned_off(start_gateway, fake_openai):
    gateway = await start_gateway(upstream_retries=0)
    assert (await chat(gateway, "flaky-503")).code == 503
    assert fake_openai.state.calls["flaky-503"] == 1


async def test_client_errors_and_started_streams_are_not_retried(start_gateway, fake_openai):
    gateway = await start_gateway(retry_backoff=0.01)
    assert (await chat(gateway, "fault-429")).code == 429
    assert fake_openai.state.calls["fault-429"] == 1
    assert (await chat(gateway, "fault-500")).code == 500  # a plain 500 may have done work: not retried
    assert fake_openai.state.calls["fault-500"] == 1
    assert (await chat(gateway, "reset-mid-stream", stream=True)).code == 200
    assert fake_openai.state.calls["reset-mid-stream"] == 1


async def test_refused_connection_is_retried_then_502(start_gateway, caplog):
    gateway = await start_gateway(openai_base_url="http://127.0.0.1:9/v1", retry_backoff=0.01)
    caplog.set_level("INFO", logger="gateway.handlers.proxy")
    response = await chat(gateway, "gpt-4o-mini")
    assert response.code == 502
    assert [r.getMessage() for r in caplog.records].count(
        "retrying http://127.0.0.1:9/v1/chat/completions for key user1 after a failed connection") == 1
    await gateway.ctx.recorder.close()
    row = (await gateway.ctx.store.recent(limit=1))[0]
    assert row.status == 502
