"""The gateway's one error hierarchy.

Each class knows its HTTP status and its error type; `BaseHandler.write_error`
renders them in the endpoint family's shape (OpenAI's or Anthropic's).
"""

from __future__ import annotations


class GatewayError(Exception):
    """An error the gateway answers with a defined status and error type."""

    status: int = 500
    error_type: str = "api_error"  # OpenAI's `type` field
    anthropic_type: str = "api_error"  # Anthropic's `error.type` field
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """Extra response headers this error carries (e.g. Retry-After)."""
        return {}


class InvalidRequest(GatewayError):
    status = 400
    error_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "invalid_request"


class AuthenticationFailed(GatewayError):
    status = 401
    error_type = "authentication_error"
    anthropic_type = "authentication_error"
    code = "invalid_api_key"


class ModelNotAllowed(GatewayError):
    status = 403
    error_type = "permission_error"
    anthropic_type = "permission_error"
    code = "model_not_allowed"


class NotFound(GatewayError):
    status = 404
    error_type = "not_found_error"
    anthropic_type = "not_found_error"
    code = "not_found"


class MethodNotAllowed(GatewayError):
    status = 405
    error_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "method_not_allowed"


class PayloadTooLarge(GatewayError):
    status = 413
    error_type = "invalid_request_error"
    anthropic_type = "request_too_large"
    code = "request_too_large"


class UnsupportedMediaType(GatewayError):
    status = 415
    error_type = "invalid_request_error"
    anthropic_type = "invalid_request_error"
    code = "unsupported_media_type"


class _RetryAfter(GatewayError):
    """An error that tells the client when to come back."""

    def __init__(self, message: str, *, retry_after: int, extra_headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.retry_after = max(1, int(retry_after))
        self.extra_headers = extra_headers or {}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after), **self.extra_headers}


class QuotaExceeded(_RetryAfter):
    status = 429
    error_type = "rate_limit_error"
    anthropic_type = "rate_limit_error"
    code = "quota_exceeded"


class Overloaded(_RetryAfter):
    status = 503
    error_type = "overloaded_error"
    anthropic_type = "overloaded_error"
    code = "gateway_overloaded"


class UpstreamUnavailable(GatewayError):
    """The provider could not be reached, reset the connection, or sent garbage."""

    status = 502
    error_type = "upstream_error"
    anthropic_type = "api_error"
    code = "upstream_unavailable"


class UpstreamTimeout(GatewayError):
    """The provider did not answer (or stalled mid-stream) within the timeout."""

    status = 504
    error_type = "timeout_error"
    anthropic_type = "timeout_error"
    code = "upstream_timeout"


class ClientClosed(GatewayError):
    """The client went away before the reply was complete (nginx's 499)."""

    status = 499
    error_type = "client_closed_request"
    anthropic_type = "client_closed_request"
    code = "client_closed_request"


class BodyTimeout(GatewayError):
    """The client stopped sending its request body for HEADER_TIMEOUT; the connection was closed."""

    status = 408
    error_type = "timeout_error"
    anthropic_type = "timeout_error"
    code = "request_body_timeout"


def openai_shape(message: str, error_type: str, code: str | None = None, param: str | None = None) -> dict:
    """OpenAI's error body: {"error": {"message", "type", "param", "code"}}."""
    return {"error": {"message": message, "type": error_type, "param": param, "code": code}}


def anthropic_shape(message: str, error_type: str) -> dict:
    """Anthropic's error body: {"type": "error", "error": {"type", "message"}}."""
    return {"type": "error", "error": {"type": error_type, "message": message}}
