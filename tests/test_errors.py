"""Every bad input and every upstream fault gets a defined status in OpenAI's error shape."""

from __future__ import annotations

import json
import socket
import time

import openai
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import PROVIDER_KEY, VK_OPENAI, base_url

GOOD = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}


async def call(gateway, body, headers=None, path="/v1/chat/completions", method="POST"):  # type: ignore[no-untyped-def]
    if headers is None:
        headers = {"Authorization": f"Bearer {VK_OPENAI}"}
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await AsyncHTTPClient().fetch(HTTPRequest(
        f"http://127.0.0.1:{gateway.port}{path}", method=method, body=raw if method == "POST" else None,
        headers=headers), raise_error=False)


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    """The error object; asserts OpenAI's shape on the way."""
    document = json.loads(response.body)
    assert set(document) == {"error"}
    assert set(document["error"]) == {"message", "type", "param", "code"}
    assert isinstance(document["error"]["message"], str) and document["error"]["message"]
    return document["error"]


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Bearer vk_wrong_key_123"},
    {"x-api-key": "vk_wrong_key_123"},
    {"Authorization": f"Basic {VK_OPENAI}"},
    {"Authorization": f"Bearer {VK_OPENAI}", "x-api-key": "vk_other_key_456"},
])
async def test_unauthenticated_requests_get_401(gateway, fake_openai, headers):
    response = await call(gateway, GOOD, headers)
    assert response.code == 401
    assert error_of(response)["type"] == "authentication_error"
    assert fake_openai.received == []


async def test_x_api_key_header_is_accepted(gateway):
    response = await call(gateway, GOOD, {"x-api-key": VK_OPENAI})
    assert response.code == 200


async def test_sdk_raises_authentication_error(gateway):
    client = openai.AsyncOpenAI(api_key="vk_nobody_here", base_url=base_url(gateway), max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        await client.chat.completions.create(**GOOD)
    await client.close()


@pytest.mark.parametrize("body, param", [
    (b"{not json", None),
    (b"", None),
    (b"[1, 2]", None),
    (b"null", None),
    (b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}', None),
    ({"model": "gpt-4o-mini"}, "messages"),
    ({"messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "", "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
    ({"model": "gpt-4o-mini", "messages": []}, "messages"),
    ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
    ({"model": "gpt-4o-mini", "messages": ["hello"]}, "messages[0]"),
    ({"model": "gpt-4o-mini", "messages": [{"content": "x"}]}, "messages[0].role"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
async def test_invalid_bodies_get_400_naming_the_field(gateway, fake_openai, body, param):
    response = await call(gateway, body)
    assert response.code == 400
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    if param is not None:
        assert error["param"] == param
        assert param in error["message"]
    assert fake_openai.received == []


async def test_deeply_nested_body_is_400_not_500(gateway):
    response = await call(gateway, b"[" * 100_000 + b"]" * 100_000)
    assert response.code == 400


async def test_model_outside_allow_list_is_403(gateway, fake_openai):
    response = await call(gateway, {**GOOD, "model": "gpt-4o"}, {"Authorization": "Bearer vk_limited_models"})
    assert response.code == 403
    assert error_of(response)["type"] == "permission_error"
    assert fake_openai.received == []


async def test_body_over_limit_is_413(start_gateway, fake_openai):
    gateway = await start_gateway(max_request_bytes=1000)
    big = {**GOOD, "messages": [{"role": "user", "content": "x" * 2000}]}
    response = await call(gateway, big)
    assert response.code == 413
    assert error_of(response)["code"] == "request_too_large"
    assert fake_openai.received == []


async def test_unknown_path_is_404_in_openai_shape(gateway):
    response = await call(gateway, GOOD, path="/v1/nothing-here")
    assert response.code == 404
    error_of(response)


async def test_upstream_500_is_relayed(gateway):
    response = await call(gateway, {**GOOD, "model": "fault-500"})
    assert response.code == 500
    assert error_of(response)["type"] == "server_error"


async def test_upstream_429_is_relayed_with_retry_after(gateway):
    response = await call(gateway, {**GOOD, "model": "fault-429"})
    assert response.code == 429
    assert response.headers["Retry-After"] == "7"
    assert error_of(response)["code"] == "rate_limit_exceeded"


async def test_upstream_html_error_is_wrapped_in_openai_shape(gateway):
    response = await call(gateway, {**GOOD, "model": "html-502"})
    assert response.code == 502
    assert "502 Bad Gateway" in error_of(response)["message"]


async def test_upstream_garbage_is_502(gateway):
    response = await call(gateway, {**GOOD, "model": "not-json"})
    assert response.code == 502
    error_of(response)


async def test_upstream_redirect_is_not_followed(gateway, fake_openai):
    response = await call(gateway, {**GOOD, "model": "redirect"})
    assert response.code == 502
    assert len(fake_openai.received) == 1


async def test_connection_refused_is_502(start_gateway):
    gateway = await start_gateway(openai_base_url="http://127.0.0.1:9/v1")
    response = await call(gateway, GOOD)
    assert response.code == 502
    assert error_of(response)["code"] == "upstream_unavailable"


async def test_hanging_upstream_is_504_within_the_timeout(start_gateway):
    gateway = await start_gateway(request_timeout=0.5)
    started = time.perf_counter()
    response = await call(gateway, {**GOOD, "model": "hang"})
    assert response.code == 504
    assert time.perf_counter() - started < 2.0
    assert error_of(response)["type"] == "timeout_error"


async def test_stalled_stream_ends_with_in_band_timeout_error(start_gateway):
    gateway = await start_gateway(request_timeout=0.5)
    response = await call(gateway, {**GOOD, "model": "stall-stream", "stream": True})
    assert response.code == 200
    last = response.body.strip().split(b"\n\n")[-1]
    assert last.startswith(b"data: ")
    assert json.loads(last[6:])["error"]["type"] == "timeout_error"


async def test_reset_mid_stream_ends_with_in_band_error(gateway):
    response = await call(gateway, {**GOOD, "model": "reset-mid-stream", "stream": True})
    assert response.code == 200
    events = response.body.strip().split(b"\n\n")
    assert len(events) >= 2
    assert json.loads(events[-1][6:])["error"]["code"] == "upstream_unavailable"


async def test_no_response_ever_mentions_the_provider_key(gateway):
    for model in ("fault-500", "fault-429", "html-502", "not-json", "gpt-4o-mini"):
        response = await call(gateway, {**GOOD, "model": model})
        assert PROVIDER_KEY not in response.body.decode()
        assert PROVIDER_KEY not in json.dumps(dict(response.headers))


async def test_reply_over_the_size_limit_is_502_with_memory_bounded(start_gateway):
    gateway = await start_gateway(max_response_bytes=200)
    response = await call(gateway, GOOD)
    assert response.code == 502
    assert "limit of 200 bytes" in error_of(response)["message"]


async def test_stream_without_done_is_recorded_incomplete(gateway):
    response = await call(gateway, {**GOOD, "model": "no-done", "stream": True})
    assert response.code == 200 and b"[DONE]" not in response.body
    await gateway.ctx.recorder.close()
    row = (await gateway.ctx.store.recent(limit=1))[0]
    assert row.incomplete and row.completion_tokens


def black_hole() -> tuple[socket.socket, list[socket.socket], int]:
    """A port whose connects hang: a listener that never accepts, with its accept queue already full,
    so the kernel drops further SYNs (as a firewall that drops packets would)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        filler.connect_ex(("127.0.0.1", port))
        fillers.append(filler)
    time.sleep(0.05)
    return listener, fillers, port


async def test_a_connect_that_hangs_is_answered_within_the_connect_timeout(start_gateway):
    listener, fillers, port = black_hole()
    try:
        gateway = await start_gateway(openai_base_url=f"http://127.0.0.1:{port}/v1", connect_timeout=0.3,
                                      upstream_retries=0)
        started = time.perf_counter()
        response = await call(gateway, GOOD)
        elapsed = time.perf_counter() - started
    finally:
        for sock in (listener, *fillers):
            sock.close()
    assert response.code == 504 and elapsed < 1.5
    assert error_of(response)["code"] == "upstream_timeout"
    await gateway.ctx.recorder.close()
    assert (await gateway.ctx.store.recent(limit=1))[0].status == 504


async def test_reset_before_headers_is_502_after_one_retry(start_gateway, fake_openai):
    gateway = await start_gateway(retry_backoff=0.01)
    response = await call(gateway, {**GOOD, "model": "reset-before-headers"})
    assert response.code == 502 and error_of(response)["code"] == "upstream_unavailable"
    assert fake_openai.state.calls["reset-before-headers"] == 2  # nothing reached the client: retried once
    await gateway.ctx.recorder.close()
    assert (await gateway.ctx.store.recent(limit=1))[0].status == 502


async def test_reset_mid_body_is_502(start_gateway, fake_openai):
    gateway = await start_gateway(retry_backoff=0.01)
    response = await call(gateway, {**GOOD, "model": "reset-mid-body"})
    assert response.code == 502 and "before the reply was complete" in error_of(response)["message"]
    assert fake_openai.state.calls["reset-mid-body"] == 1  # the provider did the work: not retried
    await gateway.ctx.recorder.close()
    assert (await gateway.ctx.store.recent(limit=1))[0].status == 502


async def test_a_slow_but_steady_stream_has_no_total_timeout(start_gateway):
    # The timeout is per gap, not per request: 12 chunks 200 ms apart take eight idle timeouts in all.
    gateway = await start_gateway(request_timeout=0.3)
    started = time.perf_counter()
    response = await call(gateway, {**GOOD, "model": "steady-12x200", "stream": True})
    assert time.perf_counter() - started > 2.4
    assert response.code == 200 and response.body.endswith(b"data: [DONE]\n\n")
    assert response.body.count(b'"content": "tick') == 12
    await gateway.ctx.recorder.close()
    row = (await gateway.ctx.store.recent(limit=1))[0]
    assert row.status == 200 and not row.incomplete


async def test_an_error_event_after_the_200_is_relayed_and_recorded_as_a_failure(gateway):
    response = await call(gateway, {**GOOD, "model": "error-mid-stream", "stream": True})
    assert response.code == 200
    events = response.body.strip().split(b"\n\n")
    assert json.loads(events[-1][6:])["error"]["type"] == "server_error"  # the provider's own, passed on
    assert len(events) == 4 and b"[DONE]" not in response.body
    await gateway.ctx.recorder.close()
    row = (await gateway.ctx.store.recent(limit=1))[0]
    assert (row.status, row.error_type, row.incomplete) == (502, "server_error", True)
