"""ProxyHandler: read a bounded body, admit against the quota, relay a reply or a stream."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, Callable

from tornado.httputil import HTTPHeaders
from tornado.ioloop import IOLoop
from tornado.iostream import IOStream
from tornado.web import stream_request_body

from .. import sse
from ..errors import (BodyTimeout, ClientClosed, GatewayError, PayloadTooLarge, UnsupportedMediaType,
                      UpstreamUnavailable)
from ..keys import VirtualKey
from ..providers.base import Reply, StreamRelay, relayed_headers
from ..upstream import Exchange, UpstreamRequest
from .base import BaseHandler

log = logging.getLogger(__name__)

# Provider statuses that say "try again": bad gateway, unavailable, and Anthropic's overloaded.
RETRIED_STATUSES = frozenset({502, 503, 529})

_JSON_LIKE = ("application/json", "", "text/plain", "application/x-www-form-urlencoded")

ReadReply = Callable[[int, HTTPHeaders, bytes], Reply]


def _no_headers(status: int, headers: HTTPHeaders) -> None:
    return None


def _close_if_still_writing(stream: IOStream) -> None:
    if not stream.closed() and stream.writing():
        stream.close()


@stream_request_body
class ProxyHandler(BaseHandler):
    """Base for endpoints that forward a JSON body to a provider."""

    def prepare(self) -> None:
        self._body_taken = False  # post() has the whole body: from here on, on_finish will run
        self._last_read = time.monotonic()
        self._chunks: list[bytes] = []
        self._size = 0
        self._too_large = False
        limit = self.ctx.config.max_request_bytes
        length = self.request.headers.get("Content-Length")
        if length is not None and int(length) > limit:
            # Refuse before reading the body; Tornado closes the connection after this reply.
            raise PayloadTooLarge(f"The request body is {length} bytes; the limit is {limit}.")
        encoding = self.request.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise UnsupportedMediaType(f"Content-Encoding {encoding!r} is not supported; send the JSON body uncompressed.")
        ctype = self.request.headers.get("Content-Type", "application/json").split(";")[0].strip().lower()
        # curl -d sends form-urlencoded and some clients send text/plain; the body is JSON all the same.
        if ctype not in _JSON_LIKE and not ctype.endswith("+json"):
            raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; send application/json.")

    def data_received(self, chunk: bytes) -> None:
        self._last_read = time.monotonic()
        self._size += len(chunk)
        if self._size > self.ctx.config.max_request_bytes:
            self._too_large = True
            self._chunks.clear()
            return
        self._chunks.append(chunk)

    def body(self) -> bytes:
        """The whole request body (bounded), recorded as received."""
        if self._closed_out:  # the connection closed just after the body arrived: nobody to answer
            raise ClientClosed("The client closed the connection.")
        self._body_taken = True
        if self._too_large:
            raise PayloadTooLarge(f"The request body exceeds the limit of {self.ctx.config.max_request_bytes} bytes.")
        raw = self._chunks[0] if len(self._chunks) == 1 else b"".join(self._chunks)
        self.record.request = raw.decode("utf-8", "replace") if raw else None
        return raw

    def on_connection_close(self) -> None:
        if self._finished or self._body_taken:
            super().on_connection_close()
            return
        # The connection closed while the body was still arriving: the client left, or Tornado hung
        # up after HEADER_TIMEOUT without a byte. post() will never run, so neither would on_finish:
        # record the request here, or it would vanish and stay counted in flight forever.
        timeout = self.ctx.config.header_timeout
        if time.monotonic() - self._last_read >= timeout:
            error: GatewayError = BodyTimeout(f"No request body byte for {timeout:g} s; the connection was closed.")
        else:
            error = ClientClosed("The client closed the connection while sending the request body.")
        record = self.record
        record.status, record.error_type, record.error_message = error.status, error.error_type, error.message
        try:
            self.authenticate()  # only to name the key in the row
        except GatewayError:
            pass
        self.on_finish()

    def admit(self, key: VirtualKey) -> None:
        """Reserve one request of the key's quota (429 when it is used up)."""
        config = self.ctx.config
        if not config.quota_enabled:
            return
        admission = self.ctx.quota.admit(key.label, key.quota_limit or config.quota_limit)
        self.record.quota_counted = True
        for name, value in admission.headers().items():
            self.set_header(name, value)

    async def relay_reply(self, request: UpstreamRequest, read_reply: ReadReply) -> None:
        """Forward the request, wait for the whole reply, and send it (translated) to the client."""
        limit = self.ctx.upstream.max_response_bytes
        chunks: list[bytes] = []
        size = 0

        def collect(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size > limit:
                raise UpstreamUnavailable(f"The provider's reply exceeds the gateway's limit of {limit} bytes.")
            chunks.append(data)

        exchange = await self.call_upstream(request, _no_headers, collect, reset=chunks.clear)
        self.send_reply(read_reply(exchange.status or 502, exchange.headers, b"".join(chunks)), exchange.headers)

    async def call_upstream(self, request: UpstreamRequest, on_headers: Callable[[int, HTTPHeaders], None],
                            on_chunk: Callable[[bytes], Any], reset: Callable[[], None]) -> Exchange:
        """Run the provider call; retry (UPSTREAM_RETRIES times, with backoff and jitter) a refused or
        reset connection or a 502/503/529, but only while nothing has reached the client."""
        config = self.ctx.config
        attempts = config.upstream_retries + 1
        for attempt in range(attempts):
            exchange = self.exchange = self.ctx.upstream.exchange(request)
            last = attempt + 1 == attempts
            try:
                await exchange.run(on_headers, on_chunk)
            except UpstreamUnavailable:
                if last or exchange.first_byte_at is not None or self._headers_written:
                    raise
            else:
                if last or exchange.status not in RETRIED_STATUSES or self._headers_written:
                    return exchange
            log.info("retrying %s for key %s after %s", request.url, self.record.key_name,
                     exchange.status or "a failed connection")
            # Time spent on a failed attempt and the backoff is waiting, not the gateway's own work.
            started = time.perf_counter()
            await asyncio.sleep(config.retry_backoff * (2 ** attempt) * (0.5 + random.random()))
            self.waited_before_s += exchange.upstream_s + (time.perf_counter() - started)
            self.record.retries += 1
            reset()
        raise AssertionError("unreachable")

    def send_reply(self, reply: Reply, upstream_headers: HTTPHeaders) -> None:
        """Write a complete reply and record what it says."""
        record = self.record
        record.usage = reply.usage
        record.model = reply.model or record.model
        record.error_type = reply.error_type
        record.error_message = reply.error_message
        record.response = reply.body.decode("utf-8", "replace")
        self.set_status(reply.status)
        for name, value in relayed_headers(upstream_headers).items():
            self.set_header(name, value)
        self.set_header("Content-Type", reply.content_type)
        self.finish(reply.body)

    async def relay_stream(self, request: UpstreamRequest, relay: StreamRelay, read_reply: ReadReply) -> None:
        """Forward the request and relay the provider's SSE stream event by event, flushing each."""
        decoder = sse.Decoder()
        limit = self.ctx.upstream.max_response_bytes
        buffered: list[bytes] = []  # a non-stream reply (an error) is read whole
        streaming = False

        def on_headers(status: int, headers: HTTPHeaders) -> None:
            nonlocal streaming
            if status == 200 and headers.get("Content-Type", "").startswith("text/event-stream"):
                streaming = True
                self.set_status(200)
                for name, value in relayed_headers(headers).items():
                    self.set_header(name, value)
                self.set_header("Content-Type", "text/event-stream; charset=utf-8")
                self.set_header("Cache-Control", "no-cache")
                self.set_header("X-Accel-Buffering", "no")  # tell nginx in front of us not to buffer either

        async def on_chunk(data: bytes) -> None:
            if not streaming:
                if sum(map(len, buffered)) + len(data) > limit:
                    raise UpstreamUnavailable("The provider's error reply is too large.")
                buffered.append(data)
                return
            out: list[bytes] = []
            for event in decoder.feed(data):
                out.extend(relay.feed(event))
            if out:
                self.write(out[0] if len(out) == 1 else b"".join(out))
                await self.flush()

        try:
            exchange = await self.call_upstream(request, on_headers, on_chunk, reset=buffered.clear)
        except GatewayError as error:
            if not self._headers_written:
                self.clear()
                raise
            self._end_stream_badly(relay, error)
            return
        if not streaming:
            self.send_reply(read_reply(exchange.status or 502, exchange.headers, b"".join(buffered)), exchange.headers)
            return
        tail = relay.close()
        if tail:
            self.write(b"".join(tail))
        self._record_stream(relay)
        if relay.error is not None:
            self.record.status = 502
            self.record.error_type = str(relay.error.get("type") or "upstream_error")
            self.record.error_message = str(relay.error.get("message"))[:500]
        self.finish()

    def _end_stream_badly(self, relay: StreamRelay, error: GatewayError) -> None:
        """After the 200 went out: tell the client in-band (if still there) and record the outcome."""
        self._record_stream(relay)
        self.record.status = error.status
        self.record.error_type = error.error_type
        self.record.error_message = error.message
        if isinstance(error, ClientClosed):
            if not self._finished:
                self.finish()
            return
        # A client that stopped reading would hold its socket and our unsent bytes forever:
        # give it one more timeout to take the error event, then hang up.
        stream = self.request.connection.stream  # type: ignore[union-attr]
        IOLoop.current().call_later(self.ctx.config.request_timeout, _close_if_still_writing, stream)
        self.write(self.stream_error_event(error))
        self.finish()

    def stream_error_event(self, error: GatewayError) -> bytes:
        """The error as one SSE event in this family's framing (Anthropic names it `error`)."""
        event = "error" if self.family == "anthropic" else None
        return sse.encode(json.dumps(self.error_body(error)), event)

    def _record_stream(self, relay: StreamRelay) -> None:
        record = self.record
        record.usage = relay.usage
        record.response = relay.assembled()
        record.incomplete = not relay.finished
