"""Hostile input: each gets a clear 4xx (or a closed connection where HTTP says so), never a 500,
never an upstream call, never spent quota."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPRequest
from tornado.iostream import IOStream, StreamClosedError

from gateway.providers.anthropic_translate import to_anthropic
from gateway.validation import CHAT
from tests.conftest import VK_ANTHROPIC, VK_LIMITED, VK_OPENAI
from tests.fake_anthropic import FakeAnthropic

GOOD = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'


async def raw_exchange(port: int, request: bytes, timeout: float = 5.0) -> bytes:
    """Send bytes as they are and read until the server closes or answers."""
    stream = IOStream(socket.socket())
    await stream.connect(("127.0.0.1", port))
    await stream.write(request)
    try:
        head = await asyncio.wait_for(stream.read_until(b"\r\n\r\n"), timeout)
    except StreamClosedError:
        return b""
    finally:
        pass
    stream.close()
    return head


def request_bytes(body: bytes, headers: dict[str, str] | None = None, path: str = "/v1/chat/completions") -> bytes:
    head = {"Host": "127.0.0.1", "Authorization": f"Bearer {VK_OPENAI}", "Content-Type": "application/json",
            "Content-Length": str(len(body)), **(headers or {})}
    lines = "".join(f"{k}: {v}\r\n" for k, v in head.items())
    return f"POST {path} HTTP/1.1\r\n{lines}\r\n".encode() + body


def status_of(head: bytes) -> int:
    return int(head.split(b" ", 2)[1]) if head else 0


async def whole_exchange(port: int, request: bytes, timeout: float = 5.0) -> tuple[int, bytes]:
    """Send bytes as they are (the request must say Connection: close); the status and the body."""
    stream = IOStream(socket.socket())
    await stream.connect(("127.0.0.1", port))
    await stream.write(request)
    try:
        reply = await asyncio.wait_for(stream.read_until_close(), timeout)
    finally:
        stream.close()
    head, _, body = reply.partition(b"\r\n\r\n")
    return status_of(head), body


async def recorded(gateway) -> list:  # type: ignore[no-untyped-def]
    """Every row the gateway wrote, oldest first (closes its recorder to flush it)."""
    await gateway.ctx.recorder.close()
    return list(reversed(await gateway.ctx.store.recent(limit=100)))


HOSTILE_BODIES = [
    b"", b"{", b'{"model": "x"} trailing', b"null", b"[]", b"[" * 100_000, b"\xff\xfe{}",
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": Infinity}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "temperature": NaN}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "\\ud800 alone"}]}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "\\udfff": 1}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x", "content": "y"}]}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "max_tokens": -5}',
    b'{"model": ["gpt"], "messages": {"role": "user"}}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "wizard", "content": "x"}]}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}], "n": "two"}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}',
    b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": ["just a string"]}]}',
]


@pytest.mark.parametrize("body", HOSTILE_BODIES)
async def test_hostile_bodies_are_4xx_in_openai_shape_logged_without_upstream_call(gateway, fake_openai, body):
    status, reply = await whole_exchange(gateway.port, request_bytes(body, {"Connection": "close"}))
    assert status == 400
    error = json.loads(reply)["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert fake_openai.received == []
    assert gateway.ctx.quota.used("user1") == 0
    [row] = await recorded(gateway)
    assert row.status == 400 and row.key == "user1" and row.error_type == "invalid_request_error"


@pytest.mark.parametrize("body", HOSTILE_BODIES[:12])
async def test_hostile_bodies_on_the_messages_endpoint_are_4xx_in_anthropic_shape(gateway, body):
    body = body.replace(b'{"model"', b'{"max_tokens": 16, "model"', 1)  # refused for its own fault, not this
    status, reply = await whole_exchange(gateway.port, request_bytes(
        body, {"Connection": "close", "Authorization": f"Bearer {VK_ANTHROPIC}"}, path="/v1/messages"))
    assert status == 400
    document = json.loads(reply)
    assert document["type"] == "error" and document["error"]["type"] == "invalid_request_error"
    assert "max_tokens" not in document["error"]["message"]
    assert gateway.ctx.quota.used("user2") == 0


async def test_a_duplicate_model_cannot_slip_past_the_model_allowlist(gateway, fake_openai):
    # The allowlist would read the last "model", a provider may serve the first: refused outright.
    body = b'{"model": "gpt-4o", "model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}'
    status, reply = await whole_exchange(gateway.port, request_bytes(
        body, {"Connection": "close", "Authorization": f"Bearer {VK_LIMITED}"}))
    assert status == 400 and "duplicate key 'model'" in json.loads(reply)["error"]["message"]
    assert fake_openai.received == []


async def test_a_surrogate_pair_escape_is_a_character_and_passes_unchanged(gateway, fake_openai):
    body = b'{"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "smile \\ud83d\\ude00"}]}'
    status, reply = await whole_exchange(gateway.port, request_bytes(body, {"Connection": "close"}))
    assert status == 200 and json.loads(reply)["choices"][0]["message"]["content"] == "Echo: smile \U0001f600"
    assert fake_openai.received[0].body == body


@pytest.mark.parametrize("headers, expected", [
    ({"Content-Type": "multipart/form-data; boundary=x"}, 415),
    ({"Content-Encoding": "gzip"}, 415),
    ({"Authorization": f"bearer   {VK_OPENAI}  "}, 200),
    ({"Authorization": "Bearer " + "A" * 100_000}, 431),
    ({"Authorization": f"Bearer '{VK_OPENAI}' OR 1=1 --"}, 401),
    ({"Authorization": "Bearer " + "0" * 64}, 401),
    ({"X-Note": "a\rb"}, 400),  # a bare CR inside a header: Tornado refuses the request and closes
    ({"X-Note": "a\r\n folded"}, 400),  # obsolete line folding, a request-smuggling staple
    ({"Host": "evil.example"}, 200),  # the Host header plays no part in routing or auth
    ({"Host": "evil.example/dashboard"}, 400),
    ({"Host": "127.0.0.1:1@evil.example"}, 400),
])
async def test_header_variants(gateway, headers, expected):
    head = await raw_exchange(gateway.port, request_bytes(GOOD, headers))
    if expected == 431:
        # Tornado refuses oversized headers by closing the connection, as HTTP allows.
        assert status_of(head) in (0, 400, 431)
    else:
        assert status_of(head) == expected


@pytest.mark.parametrize("second, expected", [("vk_someone_else", 401), (VK_OPENAI, 200)])
async def test_two_authorization_headers_must_agree(gateway, fake_openai, second, expected):
    raw = request_bytes(GOOD).replace(b"\r\n\r\n", f"\r\nAuthorization: Bearer {second}\r\n\r\n".encode(), 1)
    assert status_of(await raw_exchange(gateway.port, raw)) == expected
    assert len(fake_openai.received) == (1 if expected == 200 else 0)


@pytest.mark.parametrize("key, expected", [(None, 401), (VK_OPENAI, 404)])
async def test_an_absolute_form_target_is_not_a_route_and_needs_no_less_auth(gateway, fake_openai, key, expected):
    head = {"Host": "127.0.0.1", "Connection": "close"} | ({"Authorization": f"Bearer {key}"} if key else {})
    raw = b"GET http://evil.example/dashboard HTTP/1.1\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n"
    status, reply = await whole_exchange(gateway.port, raw)
    assert status in (401, 404) and b"Latest interactions" not in reply
    assert fake_openai.received == []


async def test_a_digest_presented_as_a_key_is_refused(gateway):
    from gateway.keys import digest

    head = await raw_exchange(gateway.port, request_bytes(GOOD, {"Authorization": f"Bearer {digest(VK_OPENAI).hex()}"}))
    assert status_of(head) == 401


async def test_chunked_body_over_the_limit_is_413(start_gateway, fake_openai):
    gateway = await start_gateway(max_request_bytes=1000)
    chunk = b"x" * 600
    framed = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(4)) + b"0\r\n\r\n"
    head = {"Host": "x", "Authorization": f"Bearer {VK_OPENAI}", "Transfer-Encoding": "chunked"}
    raw = b"POST /v1/chat/completions HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in head.items()).encode() + b"\r\n"
    result = await raw_exchange(gateway.port, raw + framed)
    assert status_of(result) == 413
    assert fake_openai.received == []


async def test_conflicting_length_headers_are_refused(gateway, fake_openai):
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n"
           + f"Authorization: Bearer {VK_OPENAI}\r\n\r\n".encode() + b"0\r\n\r\n")
    head = await raw_exchange(gateway.port, raw)
    assert status_of(head) in (0, 400)
    assert fake_openai.received == []


@pytest.mark.parametrize("path", ["//v1/chat/completions", "/v1/../dashboard", "/v1/%2e%2e/dashboard",
                                  "/dashboard/../v1/chat/completions"])
async def test_path_tricks_never_open_the_dashboard_or_skip_auth(gateway, path):
    response = await AsyncHTTPClient().fetch(HTTPRequest(f"http://127.0.0.1:{gateway.port}{path}", method="GET"),
                                             raise_error=False)
    assert response.code in (401, 404, 405)
    assert b"Latest interactions" not in response.body


async def test_slow_headers_are_cut_off(start_gateway):
    gateway = await start_gateway(header_timeout=0.3)
    stream = IOStream(socket.socket())
    await stream.connect(("127.0.0.1", gateway.port))
    await stream.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n")
    # One header byte at a time, never finishing: the server must close within its header timeout.
    closed = asyncio.get_running_loop().create_future()
    stream.set_close_callback(lambda: closed.done() or closed.set_result(True))
    for _ in range(20):
        if closed.done():
            break
        try:
            await stream.write(b"X")
        except StreamClosedError:
            break
        await asyncio.sleep(0.1)
    assert closed.done() or stream.closed()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """The strategy's values, one time in five any JSON value instead (so most bodies are nearly right)."""
    return st.integers(0, 4).flatmap(lambda k: json_values if k == 0 else strategy)


contents = st.text(min_size=1, max_size=12) | st.lists(
    st.fixed_dictionaries({"type": st.just("text"), "text": maybe(st.text(min_size=1, max_size=8))}), min_size=1, max_size=2)
near_valid = st.fixed_dictionaries(
    {"model": maybe(st.just("gpt-4o-mini")),
     "messages": maybe(st.lists(st.fixed_dictionaries({"role": maybe(st.sampled_from(["user", "system", "assistant"]))},
                                                      optional={"content": maybe(contents)}), min_size=1, max_size=3))},
    optional={"stream": maybe(st.booleans()), "temperature": maybe(st.floats(0, 2)), "stop": maybe(st.text(max_size=4)),
              "max_tokens": maybe(st.integers(1, 100)),
              "tools": maybe(st.just([{"type": "function", "function": {"name": "lookup"}}]))})


@pytest.fixture
def gateway_to_both(io_loop, start_gateway):  # type: ignore[no-untyped-def]
    """A gateway whose Anthropic key reaches a fake Anthropic (the plain fixture's does not)."""
    fake = FakeAnthropic()
    yield fake, io_loop.run_sync(lambda: start_gateway(anthropic_base=fake.base_url))
    io_loop.run_sync(fake.close)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.one_of(near_valid, json_values))
def test_any_json_body_is_answered_without_5xx_and_only_valid_ones_reach_a_provider(
        io_loop, gateway_to_both, fake_openai, document):
    fake_anthropic, gateway = gateway_to_both

    async def one(key: str) -> int:
        response = await AsyncHTTPClient().fetch(HTTPRequest(
            f"http://127.0.0.1:{gateway.port}/v1/chat/completions", method="POST", body=json.dumps(document),
            headers={"Authorization": f"Bearer {key}"}), raise_error=False)
        return response.code

    for key, received in ((VK_OPENAI, fake_openai.received), (VK_ANTHROPIC, fake_anthropic.log)):
        before = len(received)
        status = io_loop.run_sync(lambda: one(key))
        assert status < 500
        if len(received) > before:  # forwarded: then the body was valid, and translatable for Anthropic
            assert CHAT.validator.is_valid(document)
            if key == VK_ANTHROPIC:
                to_anthropic(document)
        else:
            assert 400 <= status < 500


@pytest.mark.parametrize("client_leaves", [False, True])
async def test_a_body_cut_short_is_recorded_and_released(start_gateway, fake_openai, client_leaves):
    # Headers done, part of the body, then silence (Tornado hangs up after HEADER_TIMEOUT) or a hang-up.
    gateway = await start_gateway(header_timeout=0.3)
    stream = IOStream(socket.socket())
    await stream.connect(("127.0.0.1", gateway.port))
    await stream.write(request_bytes(GOOD)[:-20])
    if client_leaves:
        await asyncio.sleep(0.05)
        stream.close()
    else:
        assert await asyncio.wait_for(stream.read_until_close(), 2) == b""  # closed by the gateway
    deadline = asyncio.get_running_loop().time() + 2
    while gateway.ctx.in_flight and asyncio.get_running_loop().time() < deadline:
        await asyncio.sleep(0.02)
    assert gateway.ctx.in_flight == 0
    assert fake_openai.received == [] and gateway.ctx.quota.used("user1") == 0
    [row] = await recorded(gateway)
    assert (row.status, row.error_type) == ((499, "client_closed_request") if client_leaves else (408, "timeout_error"))
    assert row.key == "user1"
