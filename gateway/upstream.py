"""The only user of Tornado's AsyncHTTPClient: keep-alive, timeouts, aborts, and "no response" -> our errors.

Tornado's `request_timeout` is a total that would kill long streams, and its
fetch has no cancel API. So each call runs without a total timeout and under a
watchdog that enforces time-to-first-byte and the idle gap between chunks; the
watchdog (and a client that goes away) aborts the call by timing out the
client's own connection object, which closes the upstream socket at once.

Tornado's simple client sends `Connection: close` and closes every connection
after one reply: against a real provider that is a TCP and TLS handshake per
request. Here its connection class hands a cleanly finished connection to a
small pool instead, and its TCP client takes pooled connections before dialling;
a pooled connection found dead before any reply byte is retried once, fresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

import socket

from tornado import httputil
from tornado.httpclient import HTTPClientError, HTTPRequest, HTTPResponse
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream, StreamClosedError
from tornado.netutil import DefaultLoopResolver, Resolver, is_valid_ip
from tornado.simple_httpclient import SimpleAsyncHTTPClient, _HTTPConnection
from tornado.tcpclient import TCPClient

from .errors import ClientClosed, GatewayError, Overloaded, UpstreamTimeout, UpstreamUnavailable

log = logging.getLogger(__name__)

ChunkCallback = Callable[[bytes], Awaitable[None] | None]
HeadersCallback = Callable[[int, httputil.HTTPHeaders], None]


@dataclass(slots=True)
class UpstreamRequest:
    """What to send to a provider. `headers` carry the real key and nothing of the client's."""

    url: str
    headers: dict[str, str]
    body: bytes | None = None
    method: str = "POST"


POOL_IDLE_S = 30.0  # providers close idle connections after about a minute; stay well under
DNS_TTL_S = 30.0


class CachingResolver(Resolver):
    """IP literals answered at once (no thread hop); names resolved in the loop's executor, cached briefly."""

    def initialize(self, ttl: float = DNS_TTL_S) -> None:  # type: ignore[override]
        self._ttl = ttl
        self._inner = DefaultLoopResolver()
        self._cache: dict[tuple[str, int, int], tuple[float, list[Any]]] = {}

    async def resolve(self, host: str, port: int, family: socket.AddressFamily = socket.AF_UNSPEC) -> list[Any]:
        """Addresses for host:port, as Tornado's resolvers return them."""
        if is_valid_ip(host):
            return [(socket.AF_INET6 if ":" in host else socket.AF_INET, (host, port))]
        key = (host, port, int(family))
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        answer = await self._inner.resolve(host, port, family)
        self._cache[key] = (now + self._ttl, answer)
        return answer


class _Pool:
    """Idle keep-alive connections per (host, port, TLS), newest first, closed after `idle_s`."""

    def __init__(self, idle_s: float, max_per_origin: int) -> None:
        self.idle_s = idle_s
        self.max_per_origin = max_per_origin
        self._idle: dict[tuple[str, int, bool], list[tuple[IOStream, float]]] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    def take(self, origin: tuple[str, int, bool]) -> IOStream | None:
        """A live idle connection to `origin`, or None."""
        idle = self._idle.get(origin)
        horizon = time.monotonic() - self.idle_s
        while idle:
            stream, since = idle.pop()
            if not stream.closed() and since > horizon:
                return stream
            stream.close()
        return None

    def give(self, origin: tuple[str, int, bool], stream: IOStream) -> None:
        """Keep a connection whose last exchange finished cleanly."""
        idle = self._idle.setdefault(origin, [])
        if len(idle) >= self.max_per_origin:
            stream.close()
            return
        idle.append((stream, time.monotonic()))
        if self._sweeper is None:
            self._sweeper = IOLoop.current().asyncio_loop.call_later(self.idle_s, self._sweep)  # type: ignore[attr-defined]

    def _sweep(self) -> None:
        self._sweeper = None
        horizon = time.monotonic() - self.idle_s
        for idle in self._idle.values():
            for stream, since in idle:
                if since <= horizon:
                    stream.close()
            idle[:] = [(stream, since) for stream, since in idle if since > horizon and not stream.closed()]
        if any(self._idle.values()):
            self._sweeper = IOLoop.current().asyncio_loop.call_later(self.idle_s, self._sweep)  # type: ignore[attr-defined]

    def count(self) -> int:
        return sum(len(idle) for idle in self._idle.values())

    def close(self) -> None:
        for idle in self._idle.values():
            for stream, _ in idle:
                stream.close()
        self._idle.clear()
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None


class _PoolingTCPClient(TCPClient):
    """Tornado's TCP client, taking an idle pooled connection before dialling a new one."""

    def __init__(self, pool: _Pool, resolver: Resolver) -> None:
        super().__init__(resolver=resolver)
        self.pool = pool
        self.connects = 0

    async def connect(self, host: str, port: int, *args: Any, ssl_options: Any = None, **kwargs: Any) -> IOStream:  # type: ignore[override]
        origin = (host, port, ssl_options is not None)
        stream = self.pool.take(origin)
        if stream is not None:
            stream.gateway_reused = True  # type: ignore[attr-defined]
            return stream
        stream = await super().connect(host, port, *args, ssl_options=ssl_options, **kwargs)
        self.connects += 1
        stream.gateway_origin = origin  # type: ignore[attr-defined]
        stream.gateway_reused = False  # type: ignore[attr-defined]
        return stream


class _ReadsFailLater:
    """The IOStream as our HTTP1Connection reads it, except that a read failing at once fails a loop turn later.

    Tornado 6.6 coalesces the small chunks of a chunked body and hands them on only when a read would
    wait. A read that fails at once, because the provider closed right after its last bytes, skipped
    that hand-off: a stream cut short lost the part that had already arrived (a bare 502 instead of
    the partial reply, its usage and an in-band error). Failing a turn later, the read looks pending,
    so what was coalesced is delivered first. Everything else is the stream's own.
    """

    def __init__(self, stream: IOStream) -> None:
        self._stream = stream

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)

    def read_bytes(self, num_bytes: int, partial: bool = False) -> "asyncio.Future[bytes]":
        return _fail_later(lambda: self._stream.read_bytes(num_bytes, partial))

    def read_until(self, delimiter: bytes, max_bytes: int | None = None) -> "asyncio.Future[bytes]":
        return _fail_later(lambda: self._stream.read_until(delimiter, max_bytes))


def _fail_later(read: Callable[[], Any]) -> "asyncio.Future[bytes]":
    try:
        future = read()
        error = future.exception() if future.done() else None
    except StreamClosedError as closed:
        error = closed
    if error is None:
        return future
    later: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
    later.get_loop().call_soon(later.set_exception, error)
    return later


class _TrackedConnection(_HTTPConnection):
    """Tornado's client connection, made reachable from its Exchange (to abort it) and able to keep alive."""

    def __init__(self, client: Any, request: Any, *args: Any) -> None:
        self.exchange = exchange = getattr(request.request, "gateway_exchange", None)
        if exchange is not None:
            exchange.connection = self
        self._keep = False
        super().__init__(client, request, *args)

    def _create_connection(self, stream: IOStream) -> Any:
        connection = super()._create_connection(stream)
        connection.stream = _ReadsFailLater(stream)
        return connection

    async def run(self) -> None:
        await super().run()
        stream = getattr(self, "stream", None)
        if self._keep and stream is not None and not stream.closed():
            # Tornado's HTTP/1 connection is done with the stream once run() returns.
            self.client.tcp_client.pool.give(stream.gateway_origin, stream)

    def _on_end_request(self) -> None:
        connection = getattr(self, "connection", None)
        start_line = getattr(connection, "_response_start_line", None)
        headers = self.headers
        self._keep = bool(
            start_line is not None and start_line.version == "HTTP/1.1" and headers is not None
            and headers.get("Connection", "").lower() != "close"
            # Only a body with a known end leaves the connection at a clean boundary.
            and ("Content-Length" in headers or "chunked" in headers.get("Transfer-Encoding", "").lower())
            and (self.exchange is None or self.exchange._failure is None)
        )
        if not self._keep:
            self.stream.close()

    def on_connection_close(self) -> None:
        # Tornado re-raises a socket error (e.g. a reset) here instead of ending the fetch,
        # which would leave the call hanging until our idle timeout; end it now instead.
        error = getattr(self, "stream", None) and self.stream.error
        if self.final_callback is not None and error is not None:
            self._handle_exception(type(error), error, None)
            return
        super().on_connection_close()


class _Client(SimpleAsyncHTTPClient):
    def initialize(self, *, pool: _Pool, **kwargs: Any) -> None:  # type: ignore[override]
        super().initialize(resolver=CachingResolver(), **kwargs)
        self.tcp_client = _PoolingTCPClient(pool, self.resolver)

    def _connection_class(self) -> type:
        return _TrackedConnection


class Upstream:
    """A pooled client for provider calls, capped in concurrency, with per-call timeouts."""

    def __init__(
        self,
        *,
        connect_timeout: float,
        idle_timeout: float,
        max_concurrency: int,
        overload_wait: float,
        max_response_bytes: int,
        pool_idle_s: float = POOL_IDLE_S,
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.overload_wait = overload_wait
        self.max_response_bytes = max_response_bytes
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        # Our semaphore is the real cap; Tornado's own queue (max_clients) must never be used,
        # since its queue time would count against our timeouts.
        self._pool = _Pool(pool_idle_s, max_per_origin=max_concurrency)
        self._client = _Client(
            force_instance=True,
            pool=self._pool,
            max_clients=max_concurrency + 8,
            max_body_size=1 << 40,  # streams may be long; non-stream size is bounded by Exchange
        )
        self.in_flight = 0
        self.retries = 0  # calls sent again because a pooled connection was found dead

    @property
    def connects(self) -> int:
        """New connections dialled so far (the rest reused pooled ones)."""
        return self._client.tcp_client.connects

    def idle_connections(self) -> int:
        """Pooled idle connections now."""
        return self._pool.count()

    def close(self) -> None:
        """Close the pooled connections and the HTTP client."""
        self._pool.close()
        self._client.close()

    def exchange(self, request: UpstreamRequest) -> "Exchange":
        """A new call to the provider (not started until `run`)."""
        return Exchange(self, request)


class Exchange:
    """One provider call in flight: its watchdog, its connection, and how to abort it."""

    def __init__(self, upstream: Upstream, request: UpstreamRequest) -> None:
        self.upstream = upstream
        self.request = request
        self.connection: _HTTPConnection | None = None
        self.status: int | None = None
        self.headers = httputil.HTTPHeaders()
        self.started = 0.0
        self.first_byte_at: float | None = None
        self.callback_s = 0.0  # time spent in our own callbacks (gateway time, not upstream time)
        self.finished_at: float | None = None
        self._header_lines: list[str] = []
        self._last_activity = 0.0
        self._watchdog: asyncio.TimerHandle | None = None
        self._failure: GatewayError | None = None

    @property
    def upstream_s(self) -> float:
        """Seconds spent waiting on the provider."""
        end = self.finished_at or time.perf_counter()
        return max(0.0, end - self.started - self.callback_s) if self.started else 0.0

    def abort(self, failure: GatewayError) -> None:
        """Stop the call now (client gone, timeout, reply too large): closes the upstream socket."""
        if self._failure is None:
            self._failure = failure
        connection = self.connection
        if connection is not None and connection.final_callback is not None:
            connection._on_timeout(failure.code)

    async def run(self, on_headers: HeadersCallback, on_chunk: ChunkCallback) -> None:
        """Send the request; call on_headers once, then on_chunk for each piece of the body.

        Raises UpstreamUnavailable, UpstreamTimeout, ClientClosed or Overloaded; an HTTP
        error status is not an exception here: it arrives through on_headers like any other.
        """
        upstream = self.upstream
        slots = upstream._slots
        if slots.locked():
            try:
                await asyncio.wait_for(slots.acquire(), upstream.overload_wait)
            except asyncio.TimeoutError:
                raise Overloaded(
                    f"The gateway is at its limit of {upstream.max_concurrency} concurrent upstream requests.",
                    retry_after=1,
                ) from None
        else:
            await slots.acquire()
        upstream.in_flight += 1
        self._on_headers = on_headers
        self._on_chunk = on_chunk
        # HTTP/1.1 keeps the connection by default; Tornado would otherwise ask to close it.
        self.request.headers.setdefault("Connection", "keep-alive")
        self.started = time.perf_counter()
        try:
            response = await self._fetch()
            if self._pooled_connection_was_dead(response):
                upstream.retries += 1
                response = await self._fetch()
        finally:
            self.finished_at = time.perf_counter()
            upstream.in_flight -= 1
            slots.release()
            # The callbacks are the handler's closures and the connection points back here: let
            # go of both so handler, exchange and connection are freed at once by reference
            # counting, not left for the cyclic collector's full passes (pauses of 100+ ms).
            self.connection = None
            self._on_headers, self._on_chunk = _no_headers, _no_chunk
        if self._failure is not None:
            raise self._failure
        if response.code == 599 or self.status is None:
            raise _describe_failure(response.error, self.first_byte_at is not None)

    async def _fetch(self) -> HTTPResponse:
        """One attempt, under the watchdog."""
        self.connection = None
        request = HTTPRequest(
            self.request.url,
            method=self.request.method,
            headers=self.request.headers,
            body=self.request.body,
            connect_timeout=self.upstream.connect_timeout,
            request_timeout=0,  # no total: the watchdog enforces first-byte and idle timeouts
            follow_redirects=False,
            decompress_response=True,
            header_callback=self._header_line,
            streaming_callback=self._chunk,
        )
        request.gateway_exchange = self  # type: ignore[attr-defined]
        self._last_activity = time.perf_counter()
        loop = IOLoop.current().asyncio_loop  # type: ignore[attr-defined]
        self._watchdog = loop.call_later(self.upstream.idle_timeout, self._check_idle)
        try:
            response = await self.upstream._client.fetch(request, raise_error=False)
            if isinstance(response.error, HTTPClientError):
                # Tornado links an error status and its response both ways (the error holds the response,
                # in .response and in .args): an error of its own lets the pair go without the cyclic collector.
                response.error = HTTPClientError(response.code, response.error.message)
            return response
        except GatewayError:
            raise
        except Exception as exc:  # a refused connect or bad URL can surface as an exception
            return HTTPResponse(request, 599, error=exc)
        finally:
            if self._watchdog is not None:
                self._watchdog.cancel()
                self._watchdog = None

    def _pooled_connection_was_dead(self, response: HTTPResponse) -> bool:
        """A reused connection that failed before any reply byte: the provider had closed it while idle.

        Safe to send again: nothing of a reply arrived, and nothing reached the client."""
        connection = self.connection
        stream = getattr(connection, "stream", None)
        return (response.code == 599 and self._failure is None and self.first_byte_at is None
                and bool(getattr(stream, "gateway_reused", False)))

    def _check_idle(self) -> None:
        idle = time.perf_counter() - self._last_activity
        timeout = self.upstream.idle_timeout
        if idle < timeout:
            self._watchdog = IOLoop.current().asyncio_loop.call_later(timeout - idle, self._check_idle)  # type: ignore[attr-defined]
            return
        self._watchdog = None
        if self.first_byte_at is None:
            self.abort(UpstreamTimeout(f"The provider did not answer within {timeout:g} s."))
        else:
            self.abort(UpstreamTimeout(f"The provider's reply stalled for {timeout:g} s."))

    def _header_line(self, line: str) -> None:
        now = time.perf_counter()
        self._last_activity = now
        if self.first_byte_at is None:
            self.first_byte_at = now
        if line.startswith("HTTP/"):
            self.status = httputil.parse_response_start_line(line.strip()).code
            self.headers = httputil.HTTPHeaders()
        elif line in ("\r\n", "\n"):
            started = time.perf_counter()
            try:
                self._on_headers(self.status or 0, self.headers)
            finally:
                self.callback_s += time.perf_counter() - started
        else:
            self.headers.parse_line(line)

    async def _chunk(self, chunk: bytes) -> None:
        if self._failure is not None:
            return  # aborted: the rest of what was already read goes nowhere
        started = self._last_activity = time.perf_counter()
        try:
            result = self._on_chunk(chunk)
            if result is not None:
                await result
        except GatewayError as exc:
            self.abort(exc)
        except Exception as exc:
            # Writing to a client that went away is the usual cause, and a normal end; anything else is our bug.
            if not _is_closed_stream(exc):
                log.exception("relaying a chunk failed")
            self.abort(ClientClosed("The client closed the connection."))
        finally:
            self.callback_s += time.perf_counter() - started
            self._last_activity = time.perf_counter()


def _no_headers(status: int, headers: httputil.HTTPHeaders) -> None:
    """What a finished exchange calls on late headers: nothing."""


def _no_chunk(chunk: bytes) -> None:
    """What a finished exchange calls on a late chunk: nothing."""


def _is_closed_stream(exc: BaseException) -> bool:
    return isinstance(exc, StreamClosedError)


def _describe_failure(error: BaseException | None, got_bytes: bool) -> GatewayError:
    """Turn Tornado's 'no response' (599) into our 502 or 504, never leaking 599 or internals."""
    name = type(error).__name__ if error is not None else "no response"
    text = str(error or "")
    if "Timeout" in name or "Timeout" in text:
        return UpstreamTimeout("Timed out connecting to the provider.")
    if isinstance(error, ConnectionRefusedError):
        return UpstreamUnavailable("The provider refused the connection.")
    if got_bytes:
        return UpstreamUnavailable("The provider closed the connection before the reply was complete.")
    return UpstreamUnavailable("The provider closed the connection without a reply.")
