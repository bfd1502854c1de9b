"""The one small interface every provider module implements, and what it returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol

from tornado.httputil import HTTPHeaders

from ..keys import VirtualKey
from ..record import Usage
from ..sse import Event
from ..upstream import UpstreamRequest

# Provider reply headers worth relaying to the client; everything else (hop-by-hop,
# the provider's own rate limits for the shared real key, cookies) stays behind.
RELAYED_HEADERS = ("x-request-id", "request-id", "openai-processing-ms", "openai-version", "retry-after", "retry-after-ms")


def relayed_headers(headers: HTTPHeaders) -> dict[str, str]:
    """The provider headers the client should see."""
    return {name: value for name in RELAYED_HEADERS if (value := headers.get(name)) is not None}


@dataclass(slots=True)
class Reply:
    """A complete reply for the client, in the client's format."""

    status: int
    body: bytes
    usage: Usage | None = None
    model: str | None = None
    error_type: str | None = None
    error_message: str | None = None
    content_type: str = "application/json"


class StreamRelay(Protocol):
    """Turns a provider's SSE events into the bytes the client should get, as they arrive."""

    usage: Usage | None
    finished: bool  # the provider's terminator was seen ([DONE] / message_stop)
    error: dict[str, Any] | None  # an in-band error event, if the provider sent one

    def feed(self, event: Event) -> list[bytes]:
        """Bytes to send for one provider event (possibly none)."""

    def close(self) -> list[bytes]:
        """Bytes to send when the provider's stream has ended."""

    def assembled(self) -> str:
        """The reply streamed so far, as one JSON document for the record."""


class Provider(Protocol):
    """A provider module: build the upstream request, read its reply, read its stream."""

    name: str

    def chat_request(self, key: VirtualKey, body: dict[str, Any], raw: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        """The upstream request for an OpenAI-format chat body."""

    def chat_reply(self, status: int, headers: HTTPHeaders, body: bytes, model: str) -> Reply:
        """The client's reply (OpenAI format) for a complete upstream reply."""

    def chat_stream(self, body: dict[str, Any]) -> StreamRelay:
        """A relay turning the upstream stream into OpenAI chunks."""

    def models_request(self, key: VirtualKey) -> UpstreamRequest:
        """The upstream request listing the provider's models."""

    def models_reply(self, status: int, headers: HTTPHeaders, body: bytes) -> Reply:
        """The provider's model list in OpenAI's list format."""

    def messages_request(self, key: VirtualKey, path: str, raw: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        """The upstream request for a native Anthropic body (/v1/messages), or InvalidRequest."""

    def messages_reply(self, status: int, headers: HTTPHeaders, body: bytes) -> Reply:
        """The provider's native reply for the client, unchanged."""

    def messages_stream(self) -> StreamRelay:
        """A relay passing the provider's native stream through byte for byte."""
