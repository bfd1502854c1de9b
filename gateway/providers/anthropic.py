"""Anthropic: OpenAI-format chat translated to Messages and back; native /v1/messages passed through."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any, Mapping

from tornado.httputil import HTTPHeaders

from .. import sse
from ..errors import anthropic_shape
from ..keys import VirtualKey
from ..record import Usage
from ..upstream import UpstreamRequest
from .anthropic_translate import (
    StreamTranslator,
    error_to_openai,
    from_anthropic,
    to_anthropic,
    usage_from_anthropic,
)
from .base import Reply

API_VERSION = "2023-06-01"
_DONE = b"data: [DONE]\n\n"


class AnthropicProvider:
    """Anthropic's Messages API behind the OpenAI-format endpoint, and natively."""

    name = "anthropic"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _headers(self, key: VirtualKey, client_headers: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"x-api-key": key.api_key, "anthropic-version": API_VERSION, "Content-Type": "application/json"}
        if client_headers is not None:
            # The client's API version and beta flags are its choice; nothing else of its headers is.
            version = client_headers.get("anthropic-version")
            if version:
                headers["anthropic-version"] = version
            beta = client_headers.get("anthropic-beta")
            if beta:
                headers["anthropic-beta"] = beta
        return headers

    def _url(self, key: VirtualKey, path: str) -> str:
        return f"{key.base_url or self.base_url}{path}"

    # --- the OpenAI-format endpoint ---------------------------------------------------------

    def chat_request(self, key: VirtualKey, body: dict[str, Any], raw: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        """Translate the OpenAI request (400 for what Anthropic cannot honour)."""
        translated = to_anthropic(body)
        payload = json.dumps(translated, ensure_ascii=False).encode("utf-8", "surrogatepass")
        return UpstreamRequest(self._url(key, "/v1/messages"), self._headers(key, client_headers), payload)

    def chat_reply(self, status: int, headers: HTTPHeaders, body: bytes, model: str) -> Reply:
        """Anthropic's Message (or error) as an OpenAI chat.completion (or OpenAI-shaped error)."""
        if status >= 300:
            error = error_to_openai(status, body)
            out_status = status if status >= 400 else 502
            return Reply(out_status, json.dumps(error).encode(), error_type=str(error["error"].get("type")),
                         error_message=str(error["error"].get("message"))[:500])
        try:
            document = json.loads(body)
            reply = from_anthropic(document, created=int(time.time()))
        except Exception:
            # Anything unreadable in a 2xx is the provider's fault, not the client's.
            message = "The provider's reply could not be read as an Anthropic message."
            return Reply(502, json.dumps({"error": {"message": message, "type": "upstream_error",
                                                    "param": None, "code": "bad_upstream_reply"}}).encode(),
                         error_type="upstream_error", error_message=message)
        return Reply(status, json.dumps(reply, ensure_ascii=False).encode(), usage=usage_from_anthropic(document.get("usage") or {}),
                     model=document.get("model"))

    def chat_stream(self, body: dict[str, Any]) -> "TranslatedStream":
        """A relay turning Anthropic events into OpenAI chunks, one event at a time."""
        options = body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return TranslatedStream(StreamTranslator(model=body["model"], include_usage=include_usage, created=int(time.time())))

    def models_request(self, key: VirtualKey) -> UpstreamRequest:
        """GET /v1/models with the real key."""
        return UpstreamRequest(self._url(key, "/v1/models?limit=1000"), self._headers(key), None, method="GET")

    def models_reply(self, status: int, headers: HTTPHeaders, body: bytes) -> Reply:
        """Anthropic's model list in OpenAI's list format."""
        if status >= 400:
            error = error_to_openai(status, body)
            return Reply(status, json.dumps(error).encode(), error_type=str(error["error"].get("type")))
        try:
            listed = json.loads(body)["data"]
            data = [{"id": m["id"], "object": "model", "created": _epoch(m.get("created_at")), "owned_by": "anthropic"}
                    for m in listed]
        except (ValueError, KeyError, TypeError):
            return Reply(502, json.dumps({"error": {"message": "The provider's model list could not be read.",
                                                    "type": "upstream_error", "param": None, "code": None}}).encode())
        return Reply(200, json.dumps({"object": "list", "data": data}).encode())

    # --- the native /v1/messages endpoint ----------------------------------------------------

    def messages_request(self, key: VirtualKey, path: str, raw: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        """Forward the client's bytes unchanged to the same path upstream."""
        return UpstreamRequest(self._url(key, path), self._headers(key, client_headers), raw)

    def messages_reply(self, status: int, headers: HTTPHeaders, body: bytes) -> Reply:
        """The provider's reply unchanged; usage read for the record; non-JSON errors wrapped in Anthropic's shape."""
        try:
            document = json.loads(body)
        except ValueError:
            document = None
        if not isinstance(document, dict):
            message = f"The provider answered HTTP {status} with a body that is not JSON."
            return Reply(502 if status < 400 else status, json.dumps(anthropic_shape(message, "api_error")).encode(),
                         error_type="api_error", error_message=message)
        if status >= 400:
            error = document.get("error") if isinstance(document.get("error"), dict) else {}
            return Reply(status, body, error_type=str(error.get("type")), error_message=str(error.get("message"))[:500])
        usage = document.get("usage")
        return Reply(status, body, usage=usage_from_anthropic(usage) if isinstance(usage, dict) else None,
                     model=document.get("model"))

    def messages_stream(self) -> "NativeStream":
        """A relay forwarding Anthropic's events byte for byte, reading usage on the way."""
        return NativeStream()


class TranslatedStream:
    """Anthropic events -> OpenAI `chat.completion.chunk` SSE, flushed as each event arrives."""

    def __init__(self, translator: StreamTranslator) -> None:
        self.translator = translator

    @property
    def usage(self) -> Usage | None:
        return self.translator.usage

    @property
    def finished(self) -> bool:
        return self.translator.finished

    @property
    def error(self) -> dict[str, Any] | None:
        error = self.translator.error
        return error.get("error") if error else None

    def feed(self, event: sse.Event) -> list[bytes]:
        """The OpenAI chunks for one Anthropic event; [DONE] after message_stop."""
        if not event.data:
            return []
        try:
            data = json.loads(event.data)
        except ValueError:
            return []
        chunks = self.translator.feed(event.event or "", data)
        out = [sse.encode(json.dumps(chunk, ensure_ascii=False)) for chunk in chunks]
        if self.translator.finished:
            out.append(_DONE)
        return out

    def close(self) -> list[bytes]:
        return []

    def assembled(self) -> str:
        return json.dumps(self.translator.assembled(), ensure_ascii=False)


class NativeStream:
    """Anthropic's own SSE, passed through unchanged: one message_start, events in order, nothing merged."""

    def __init__(self) -> None:
        self._usage: dict[str, Any] = {}
        self._text: list[str] = []
        self._message: dict[str, Any] = {}
        self._stop_reason: str | None = None
        self.finished = False
        self.error: dict[str, Any] | None = None

    @property
    def usage(self) -> Usage | None:
        return usage_from_anthropic(self._usage) if self._usage else None

    def feed(self, event: sse.Event) -> list[bytes]:
        """Forward the event's exact bytes; note usage, text and the end for the record."""
        name = event.event
        if name in ("message_start", "message_delta", "content_block_delta", "error", "message_stop"):
            try:
                data = json.loads(event.data)
            except ValueError:
                data = {}
            if not isinstance(data, dict):
                data = {}
            if name == "message_start":
                self._message = data.get("message") or {}
                self._usage.update(self._message.get("usage") or {})
            elif name == "message_delta":
                # Anthropic reports output tokens in message_delta, cumulatively.
                self._usage.update({k: v for k, v in (data.get("usage") or {}).items() if v is not None})
                self._stop_reason = (data.get("delta") or {}).get("stop_reason") or self._stop_reason
            elif name == "content_block_delta":
                delta = data.get("delta") or {}
                if delta.get("type") == "text_delta":
                    self._text.append(delta.get("text", ""))
            elif name == "error":
                self.error = data.get("error") or {"type": "api_error", "message": event.data[:200]}
            else:
                self.finished = True
        return [event.raw]

    def close(self) -> list[bytes]:
        return []

    def assembled(self) -> str:
        """The streamed message as one Anthropic Message document."""
        message = dict(self._message)
        message["content"] = [{"type": "text", "text": "".join(self._text)}]
        message["stop_reason"] = self._stop_reason
        message["usage"] = self._usage
        return json.dumps(message, ensure_ascii=False)


def _epoch(stamp: Any) -> int:
    """An RFC 3339 time as epoch seconds (0 when absent or unreadable)."""
    try:
        return int(datetime.fromisoformat(str(stamp).replace("Z", "+00:00")).timestamp())
    except ValueError:
        return 0
