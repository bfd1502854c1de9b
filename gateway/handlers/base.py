"""BaseHandler: the context, the interaction record, authentication, and one way to render errors."""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from tornado import httputil
from tornado.web import HTTPError, RequestHandler

from ..context import Context
from ..errors import (
    AuthenticationFailed,
    ClientClosed,
    GatewayError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    anthropic_shape,
    openai_shape,
)
from ..keys import VirtualKey
from ..record import Interaction
from ..upstream import Exchange

log = logging.getLogger(__name__)

# Tornado knows no reason phrase for nginx's 499.
_REASONS = {499: "Client Closed Request"}


class BaseHandler(RequestHandler):
    """Every API handler: fills one Interaction per request and renders errors in its family's shape."""

    endpoint = "other"
    family = "openai"  # which error shape this endpoint speaks: "openai" or "anthropic"
    recorded = True  # False for operator endpoints (health, metrics, dashboard): not API traffic

    def initialize(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.in_flight += 1
        self.started = time.perf_counter()
        request = self.request
        self.record = Interaction(method=request.method or "", path=request.path, endpoint=self.endpoint,
                                  client_ip=request.remote_ip or "")
        self.exchange: Exchange | None = None
        self.waited_before_s = 0.0  # provider time of earlier attempts (retries) and their backoff
        self.key: VirtualKey | None = None
        self._overhead_stamped = False
        self._closed_out = False  # on_finish's bookkeeping ran (it must run exactly once)

    def set_default_headers(self) -> None:
        # Don't advertise the server software.
        self.clear_header("Server")

    # --- authentication -------------------------------------------------------------------

    def authenticate(self) -> VirtualKey:
        """The virtual key this request presents, or AuthenticationFailed (401)."""
        key = self.ctx.keys.authenticate(self._presented_key())
        self.key = key
        self.record.key_name = key.label
        self.record.provider = key.provider
        return key

    def _presented_key(self) -> str | None:
        headers = self.request.headers
        presented: set[str] = set()
        for value in headers.get_list("Authorization"):
            scheme, _, token = value.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise AuthenticationFailed("Unsupported authorization scheme: use 'Authorization: Bearer <virtual key>'.")
            presented.add(token.strip())
        for value in headers.get_list("x-api-key"):
            presented.add(value.strip())
        if len(presented) > 1:
            raise AuthenticationFailed("The request carries more than one different API key.")
        return presented.pop() if presented else None

    # --- timing ---------------------------------------------------------------------------

    def stamp_overhead(self) -> None:
        """Set x-gateway-overhead-ms (time so far minus time waiting on the provider) before headers go out."""
        if self._overhead_stamped:
            return
        self._overhead_stamped = True
        elapsed = time.perf_counter() - self.started
        waited = self.waited_before_s + (self.exchange.upstream_s if self.exchange is not None else 0.0)
        self.set_header("x-gateway-overhead-ms", f"{max(0.0, elapsed - waited) * 1000:.3f}")

    def flush(self, include_footers: bool = False) -> Any:
        if not self._headers_written:
            self.stamp_overhead()
            if self.record.ttfb_ms is None:
                self.record.ttfb_ms = (time.perf_counter() - self.started) * 1000
        return super().flush(include_footers)

    # --- errors ---------------------------------------------------------------------------

    def error_body(self, error: GatewayError) -> dict[str, Any]:
        """The error in this endpoint family's shape."""
        if self.family == "anthropic":
            return anthropic_shape(error.message, error.anthropic_type)
        return openai_shape(error.message, error.error_type, error.code, error.param)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        error = _as_gateway_error(status_code, kwargs.get("exc_info"))
        self.set_status(error.status, _REASONS.get(error.status))
        for name, value in error.headers().items():
            self.set_header(name, value)
        self.set_header("Content-Type", "application/json")
        self.record.error_type = error.error_type
        self.record.error_message = error.message
        self.finish(json.dumps(self.error_body(error)))

    def log_exception(self, typ: Any, value: Any, tb: Any) -> None:
        # Expected outcomes are answered, recorded and counted; only real faults get a traceback.
        if isinstance(value, (GatewayError, HTTPError)):
            return
        log.error("unexpected error in %s %s", self.request.method, self.request.path, exc_info=(typ, value, tb))

    # --- the record -----------------------------------------------------------------------

    def on_connection_close(self) -> None:
        if self.exchange is not None and not self._finished:
            self.exchange.abort(ClientClosed("The client closed the connection."))

    def on_finish(self) -> None:
        if self._closed_out:
            return
        self._closed_out = True
        self.ctx.in_flight -= 1
        record = self.record
        if not record.status:
            record.status = self.get_status()
        record.duration_ms = (time.perf_counter() - self.started) * 1000
        if self.exchange is not None and self.exchange.started:
            record.upstream_ms = (self.waited_before_s + self.exchange.upstream_s) * 1000
            record.overhead_ms = max(0.0, record.duration_ms - record.upstream_ms)
        else:
            record.overhead_ms = record.duration_ms
        if record.usage is not None and record.model:
            record.cost_usd = self.ctx.prices.cost(record.model, record.usage)
        if self.recorded:
            self.ctx.observe(record)


def _as_gateway_error(status_code: int, exc_info: Any) -> GatewayError:
    """Any exception (ours, Tornado's, or a bug) as a GatewayError with a safe message."""
    error = exc_info[1] if exc_info else None
    if isinstance(error, GatewayError):
        return error
    if isinstance(error, HTTPError) or error is None:
        if status_code == 404:
            return NotFound("Unknown endpoint.")
        if status_code == 405:
            return MethodNotAllowed("Method not allowed on this endpoint.")
        if status_code == 413:
            return PayloadTooLarge("The request body is too large.")
        generic = GatewayError(httputil.responses.get(status_code, "Error"))
        generic.status = status_code
        generic.error_type = "invalid_request_error" if status_code < 500 else "api_error"
        return generic
    return GatewayError("The gateway hit an internal error; it has been logged.")


class NotFoundHandler(BaseHandler):
    """Unknown paths: a 404 in OpenAI's shape rather than Tornado's HTML page."""

    def prepare(self) -> None:
        raise NotFound(f"Unknown endpoint: {self.request.method} {self.request.path}")
