"""The only user of Tornado's AsyncHTTPClient: timeouts, aborts, and "no response" -> our errors.

Tornado's `request_timeout` is a total that would kill long streams, and its
fetch has no cancel API. So each call runs without a total timeout and under a
watchdog that enforces time-to-first-byte and the idle gap between chunks; the
watchdog (and a client that goes away) aborts the call by timing out the
client's own connection object, which closes the upstream socket at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from tornado import httputil
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.simple_httpclient import SimpleAsyncHTTPClient, _HTTPConnection

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


class _TrackedConnection(_HTTPConnection):
    """Tornado's client connection, made reachable from its Exchange so it can be aborted."""

    def __init__(self, client: Any, request: Any, *args: Any) -> None:
        exchange = getattr(request.request, "gateway_exchange", None)
        if exchange is not None:
            exchange.connection = self
        super().__init__(client, request, *args)

    def on_connection_close(self) -> None:
        # Tornado re-raises a socket error (e.g. a reset) here instead of ending the fetch,
        # which would leave the call hanging until our idle timeout; end it now instead.
        error = getattr(self, "stream", None) and self.stream.error
        if self.final_callback is not None and error is not None:
            self._handle_exception(type(error), error, None)
            return
        super().on_connection_close()


class _Client(SimpleAsyncHTTPClient):
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
    ) -> None:
        self.connect_timeout = connect_timeout
        self.idle_timeout = idle_timeout
        self.overload_wait = overload_wait
        self.max_response_bytes = max_response_bytes
        self.max_concurrency = max_concurrency
        self._slots = asyncio.Semaphore(max_concurrency)
        # Our semaphore is the real cap; Tornado's own queue (max_clients) must never be used,
        # since its queue time would count against our timeouts.
        self._client = _Client(
            force_instance=True,
            max_clients=max_concurrency + 8,
            max_body_size=1 << 40,  # streams may be long; non-stream size is bounded by Exchange
        )
        self.in_flight = 0

    def close(self) -> None:
        """Close the HTTP client."""
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
        request = HTTPRequest(
            self.request.url,
            method=self.request.method,
            headers=self.request.headers,
            body=self.request.body,
            connect_timeout=upstream.connect_timeout,
            request_timeout=0,  # no total: the watchdog enforces first-byte and idle timeouts
            follow_redirects=False,
            decompress_response=True,
            header_callback=self._header_line,
            streaming_callback=self._chunk,
        )
        request.gateway_exchange = self  # type: ignore[attr-defined]
        loop = IOLoop.current()
        self.started = self._last_activity = time.perf_counter()
        self._watchdog = loop.asyncio_loop.call_later(upstream.idle_timeout, self._check_idle)  # type: ignore[attr-defined]
        try:
            response: HTTPResponse = await upstream._client.fetch(request, raise_error=False)
        except GatewayError:
            raise
        except Exception as exc:  # a refused connect or bad URL can surface as an exception
            response = HTTPResponse(request, 599, error=exc)
        finally:
            self.finished_at = time.perf_counter()
            if self._watchdog is not None:
                self._watchdog.cancel()
            upstream.in_flight -= 1
            slots.release()
        if self._failure is not None:
            raise self._failure
        if response.code == 599 or self.status is None:
            raise _describe_failure(response.error, self.first_byte_at is not None)

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
