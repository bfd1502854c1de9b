"""The upstream client against real servers on loopback: keep-alive, retry, framing, resolver, pool bounds."""

from __future__ import annotations

import asyncio
import random

from gateway.errors import GatewayError, UpstreamUnavailable
from gateway.upstream import CachingResolver, Upstream, UpstreamRequest

REPLY = b'{"ok":true}'
CUT_EVENTS = [b"data: %d\n\n" % i for i in range(5)]


class RawServer:
    """An HTTP/1.1 server on 127.0.0.1 that answers every request with REPLY; scripted per test."""

    def __init__(self, close_after: int | None = None, chunked: bool = False, cut: bool = False) -> None:
        self.close_after = close_after  # close each connection after this many replies (no Connection: close)
        self.chunked = chunked
        self.cut = cut  # a chunked stream without its last chunk, and the close, all in one write
        self.connections = 0
        self.requests = 0

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}/v1/x"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        served = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                await reader.readexactly(length)
                self.requests += 1
                if self.cut:
                    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in CUT_EVENTS)
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body)
                    break
                if self.chunked:
                    body = b"".join(f"{len(p):x}\r\n".encode() + p + b"\r\n" for p in (b"data: 1\n\n", b"data: 2\n\n"))
                    writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + body + b"0\r\n\r\n")
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(REPLY) + REPLY)
                await writer.drain()
                served += 1
                if self.close_after is not None and served >= self.close_after:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        writer.close()

    async def stop(self) -> None:
        self.server.close()


def make_upstream(**overrides) -> Upstream:  # type: ignore[no-untyped-def]
    options = dict(connect_timeout=1, idle_timeout=2, max_concurrency=4, overload_wait=0.1, max_response_bytes=1 << 20)
    return Upstream(**{**options, **overrides})


async def call(upstream: Upstream, url: str) -> tuple[int | None, bytes]:
    exchange = upstream.exchange(UpstreamRequest(url, {"Content-Type": "application/json"}, b"{}"))
    parts: list[bytes] = []
    await exchange.run(lambda status, headers: None, parts.append)
    return exchange.status, b"".join(parts)


async def test_sequential_calls_reuse_one_connection():
    server = RawServer()
    url = await server.start()
    upstream = make_upstream()
    for _ in range(5):
        assert await call(upstream, url) == (200, REPLY)
    assert server.connections == 1 and upstream.connects == 1
    assert upstream.idle_connections() == 1
    upstream.close()
    await server.stop()


async def test_dead_pooled_connection_is_retried_once_on_a_fresh_one():
    server = RawServer(close_after=1)  # the provider drops each connection after one reply, without saying so
    url = await server.start()
    upstream = make_upstream()
    for _ in range(3):
        assert await call(upstream, url) == (200, REPLY)
        await asyncio.sleep(0.05)
    assert server.requests == 3 and server.connections == 3
    assert upstream.retries == 2
    upstream.close()
    await server.stop()


async def test_chunked_reply_leaves_a_reusable_connection():
    server = RawServer(chunked=True)
    url = await server.start()
    upstream = make_upstream()
    for _ in range(2):
        assert await call(upstream, url) == (200, b"data: 1\n\ndata: 2\n\n")
    assert upstream.idle_connections() == 1 and server.connections == 1
    upstream.close()
    await server.stop()


async def test_idle_connections_are_closed_after_the_idle_limit():
    server = RawServer()
    url = await server.start()
    upstream = make_upstream(pool_idle_s=0.1)
    await call(upstream, url)
    assert upstream.idle_connections() == 1
    await asyncio.sleep(0.3)
    assert upstream.idle_connections() == 0
    upstream.close()
    await server.stop()


async def test_resolver_answers_ip_literals_without_the_executor_and_caches_names():
    resolver = CachingResolver()
    assert await resolver.resolve("127.0.0.1", 80) == [(2, ("127.0.0.1", 80))]
    first = await resolver.resolve("localhost", 80)
    calls = []
    resolver._inner.resolve = lambda *a: calls.append(a)  # type: ignore[method-assign]
    assert await resolver.resolve("localhost", 80) == first
    assert calls == []


async def test_a_stream_cut_right_after_its_last_bytes_still_delivers_them():
    # Tornado 6.6 coalesces small chunks and hands them on only when a read would wait; a read that
    # fails at once (the close came with the data) used to drop them: a bare 502, the partial lost.
    server = RawServer(cut=True)
    url = await server.start()
    upstream = make_upstream()
    exchange = upstream.exchange(UpstreamRequest(url, {"Content-Type": "application/json"}, b"{}"))
    parts: list[bytes] = []
    failure = None
    try:
        await exchange.run(lambda status, headers: None, parts.append)
    except GatewayError as error:
        failure = error
    assert b"".join(parts) == b"".join(CUT_EVENTS)
    assert isinstance(failure, UpstreamUnavailable)
    upstream.close()
    await server.stop()
