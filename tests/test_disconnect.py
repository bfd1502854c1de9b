"""A client that walks away stops the upstream call and is recorded as 499."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import pytest
from tornado.iostream import IOStream

from tests.conftest import VK_OPENAI


async def wait_for(predicate, timeout: float = 3.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.02)


async def open_raw_request(port: int, body: dict) -> IOStream:  # type: ignore[type-arg]
    raw = json.dumps(body).encode()
    stream = IOStream(socket.socket())
    await stream.connect(("127.0.0.1", port))
    await stream.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                       + f"Authorization: Bearer {VK_OPENAI}\r\nContent-Length: {len(raw)}\r\n\r\n".encode() + raw)
    return stream


async def test_client_disconnect_mid_stream_closes_upstream(gateway, fake_openai):
    stream = await open_raw_request(gateway.port, {"model": "slow-stream", "stream": True,
                                                   "messages": [{"role": "user", "content": "a long story"}]})
    first = await stream.read_until(b"\n\n")
    assert b"200 OK" in first
    for _ in range(3):  # the role chunk, then two of text
        await stream.read_until(b"\n\n")
    await wait_for(lambda: fake_openai.state.open_streams == 1)
    stream.close()
    started = time.monotonic()
    # The fake's stream ends only when its socket is closed by the gateway.
    await wait_for(lambda: fake_openai.state.open_streams == 0, timeout=1.5)
    assert time.monotonic() - started < 1.5
    await wait_for(lambda: gateway.ctx.in_flight == 0)
    await gateway.ctx.recorder.close()
    rows = await gateway.ctx.store.recent(limit=5)
    assert rows[0].status == 499
    assert rows[0].incomplete
    # The provider bills what it streamed before the hang-up: recorded as estimated so far.
    assert rows[0].completion_tokens >= 2 and rows[0].prompt_tokens == 3  # 12 characters


@pytest.mark.parametrize("streamed", [False, True])  # a plain request, or a stream before its first byte
async def test_client_disconnect_while_waiting_closes_upstream(gateway, fake_openai, streamed):
    stream = await open_raw_request(gateway.port, {"model": "hang", "stream": streamed,
                                                   "messages": [{"role": "user", "content": "x"}]})
    await wait_for(lambda: len(fake_openai.received) == 1)
    stream.close()
    # The fake sees its own connection closed by the gateway: the upstream socket really went away.
    await wait_for(lambda: fake_openai.state.closed_by_peer == 1, timeout=1.5)
    await wait_for(lambda: gateway.ctx.in_flight == 0, timeout=1.5)
    await gateway.ctx.recorder.close()
    rows = await gateway.ctx.store.recent(limit=5)
    assert rows[0].status == 499


async def test_client_that_stops_reading_is_cut_off_and_upstream_closed(start_gateway, fake_openai):
    gateway = await start_gateway(request_timeout=0.5, header_timeout=1)
    stream = await open_raw_request(gateway.port, {"model": "firehose", "stream": True,
                                                   "messages": [{"role": "user", "content": "everything"}]})
    # Never read: buffers fill, the relay blocks, the idle watchdog ends the upstream call; the
    # gateway then hangs up on this client (after one more timeout if bytes are still pending, or
    # when the idle keep-alive connection reaches HEADER_TIMEOUT).
    await wait_for(lambda: fake_openai.state.open_streams == 0 and len(fake_openai.received) == 1, timeout=5)
    await wait_for(lambda: gateway.ctx.in_flight == 0, timeout=5)
    closed = asyncio.get_running_loop().create_future()
    stream.set_close_callback(lambda: closed.done() or closed.set_result(True))
    try:
        while True:  # drain what was buffered until the gateway closes the connection
            await asyncio.wait_for(stream.read_bytes(1 << 20, partial=True), 5)
    except Exception:
        pass
    assert stream.closed()
    await gateway.ctx.recorder.close()
    rows = await gateway.ctx.store.recent(limit=1)
    assert rows[0].status == 504 and rows[0].incomplete
