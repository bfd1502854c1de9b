"""OpenAI: the client's format is the provider's, so bodies pass through as the original bytes."""

from __future__ import annotations

import json
from typing import Any, Mapping

from tornado.httputil import HTTPHeaders

from ..errors import InvalidRequest, openai_shape
from ..keys import VirtualKey
from ..record import Usage
from ..sse import Event
from ..upstream import UpstreamRequest
from .base import Reply

_USAGE_OPTION = b'"stream_options":{"include_usage":true},'


def usage_from_openai(usage: Any) -> Usage | None:
    """Our Usage from OpenAI's usage object (None when absent or malformed)."""
    if not isinstance(usage, dict):
        return None
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else 0
    try:
        return Usage(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
            cached_tokens=int(cached or 0),
        )
    except (TypeError, ValueError):
        return None


def error_reply(status: int, body: bytes) -> Reply:
    """Relay an OpenAI-shaped error as it is; wrap anything else (HTML, text) in OpenAI's shape."""
    try:
        document = json.loads(body)
        error = document.get("error") if isinstance(document, dict) else None
    except ValueError:
        error = None
    if isinstance(error, dict):
        return Reply(status, body, error_type=str(error.get("type")), error_message=str(error.get("message"))[:500])
    snippet = body[:200].decode("utf-8", "replace").strip()
    message = f"The provider answered HTTP {status}" + (f": {snippet}" if snippet else ".")
    return Reply(
        status,
        json.dumps(openai_shape(message, "upstream_error", "upstream_http_error")).encode(),
        error_type="upstream_error",
        error_message=message,
    )


def bad_gateway(message: str) -> Reply:
    """A 502 in OpenAI's shape, for replies the gateway cannot use."""
    return Reply(502, json.dumps(openai_shape(message, "upstream_error", "bad_upstream_reply")).encode(),
                 error_type="upstream_error", error_message=message)


class OpenAIProvider:
    """Pass-through to OpenAI's Chat Completions API."""

    name = "openai"

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url

    def _headers(self, key: VirtualKey) -> dict[str, str]:
        return {"Authorization": f"Bearer {key.api_key}", "Content-Type": "application/json"}

    def chat_request(self, key: VirtualKey, body: dict[str, Any], raw: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        """Forward the client's bytes, asking for stream usage when the client did not."""
        base = key.base_url or self.base_url
        return UpstreamRequest(f"{base}/chat/completions", self._headers(key), _with_stream_usage(body, raw))

    def chat_reply(self, status: int, headers: HTTPHeaders, body: bytes, model: str) -> Reply:
        """The provider's reply, unchanged; usage read for the record."""
        if status >= 400:
            return error_reply(status, body)
        if status >= 300:
            return bad_gateway(f"The provider answered with a redirect (HTTP {status}), which the gateway does not follow.")
        try:
            document = json.loads(body)
        except ValueError:
            return bad_gateway("The provider's reply is not valid JSON.")
        if not isinstance(document, dict):
            return bad_gateway("The provider's reply is not a JSON object.")
        return Reply(status, body, usage=usage_from_openai(document.get("usage")), model=document.get("model"),
                     content_type=headers.get("Content-Type", "application/json"))

    def chat_stream(self, body: dict[str, Any]) -> "OpenAIStream":
        """Relay chunks as they come, dropping the usage chunk the client did not ask for."""
        options = body.get("stream_options")
        return OpenAIStream(body, client_wants_usage=isinstance(options, dict) and options.get("include_usage") is True)

    def models_request(self, key: VirtualKey) -> UpstreamRequest:
        """GET {base}/models with the real key."""
        return UpstreamRequest(f"{key.base_url or self.base_url}/models", self._headers(key), None, method="GET")

    def models_reply(self, status: int, headers: HTTPHeaders, body: bytes) -> Reply:
        """OpenAI's list is already in OpenAI's format."""
        if status >= 400:
            return error_reply(status, body)
        return Reply(status, body)


    def messages_request(self, key: VirtualKey, path: str, raw: bytes, client_headers: Mapping[str, str]) -> UpstreamRequest:
        """Anthropic's native format is not translated to OpenAI: refuse with a clear 400."""
        raise InvalidRequest(
            f"This virtual key maps to OpenAI; {path} needs a key that maps to Anthropic. "
            "Use /v1/chat/completions with this key."
        )

    def messages_reply(self, status: int, headers: HTTPHeaders, body: bytes) -> Reply:
        """Never reached: messages_request refuses first."""
        raise InvalidRequest("This virtual key maps to OpenAI.")

    def messages_stream(self) -> "OpenAIStream":
        """Never reached: messages_request refuses first."""
        raise InvalidRequest("This virtual key maps to OpenAI.")


def _with_stream_usage(body: dict[str, Any], raw: bytes) -> bytes:
    """The body to send: usage is always requested for streams, since the record needs it."""
    if not body.get("stream"):
        return raw
    options = body.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage") is True:
        return raw
    if "stream_options" not in body:
        # Splice the option in after the opening brace rather than re-encode the whole body.
        brace = raw.index(b"{") + 1
        return raw[:brace] + _USAGE_OPTION + raw[brace:]
    changed = dict(body, stream_options={**(options or {}), "include_usage": True})
    return json.dumps(changed, ensure_ascii=False).encode("utf-8", "surrogatepass")


class OpenAIStream:
    """Forwards OpenAI's SSE events byte for byte while assembling the reply for the record."""

    def __init__(self, body: dict[str, Any], *, client_wants_usage: bool) -> None:
        self.client_wants_usage = client_wants_usage
        self.reported_usage: Usage | None = None
        self.finished = False
        self.error: dict[str, Any] | None = None
        self._id: str | None = None
        self._model: str | None = None
        self._content: dict[int, list[str]] = {}
        self._tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
        self._finish: dict[int, str] = {}
        self._body = body
        self._deltas = 0  # chunks that carried reply text or tool-call arguments

    @property
    def usage(self) -> Usage | None:
        """The provider's usage; if it never came (the stream was cut, or the client left), an estimate
        of what was streamed so far, since the provider bills that too: one token per delta (OpenAI
        sends about one per chunk) and the prompt at four characters a token."""
        if self.reported_usage is not None or self._deltas == 0:
            return self.reported_usage
        return Usage(prompt_tokens=_estimate_prompt_tokens(self._body), completion_tokens=self._deltas)

    def feed(self, event: Event) -> list[bytes]:
        """Pass the event on unchanged, except the usage-only chunk the client did not request."""
        data = event.data
        if data == "[DONE]":
            self.finished = True
            return [event.raw]
        if not data:
            return [event.raw]
        try:
            chunk = json.loads(data)
        except ValueError:
            return [event.raw]
        if not isinstance(chunk, dict):
            return [event.raw]
        if "error" in chunk:
            self.error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            return [event.raw]
        self._id = self._id or chunk.get("id")
        self._model = self._model or chunk.get("model")
        usage = chunk.get("usage")
        if usage:
            self.reported_usage = usage_from_openai(usage) or self.reported_usage
        choices = chunk.get("choices")
        if choices:
            self._assemble(choices)
        elif usage and not self.client_wants_usage:
            return []
        return [event.raw]

    def close(self) -> list[bytes]:
        """Nothing to add: OpenAI's own [DONE] was (or was not) relayed."""
        return []

    def _assemble(self, choices: list[Any]) -> None:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            index = choice.get("index", 0)
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str) and delta["content"]:
                self._content.setdefault(index, []).append(delta["content"])
                self._deltas += 1
            for call in delta.get("tool_calls") or ():
                if not isinstance(call, dict):
                    continue
                slot = self._tool_calls.setdefault(index, {}).setdefault(
                    call.get("index", 0), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
                )
                slot["id"] = slot["id"] or call.get("id")
                function = call.get("function") or {}
                slot["function"]["name"] += function.get("name") or ""
                slot["function"]["arguments"] += function.get("arguments") or ""
                self._deltas += 1
            if choice.get("finish_reason"):
                self._finish[index] = choice["finish_reason"]

    def assembled(self) -> str:
        """The streamed reply as one chat.completion document."""
        indexes = sorted(set(self._content) | set(self._tool_calls) | set(self._finish)) or [0]
        choices = []
        for index in indexes:
            message: dict[str, Any] = {"role": "assistant", "content": "".join(self._content.get(index, [])) or None}
            calls = self._tool_calls.get(index)
            if calls:
                message["tool_calls"] = [calls[i] for i in sorted(calls)]
            choices.append({"index": index, "message": message, "finish_reason": self._finish.get(index)})
        document: dict[str, Any] = {"id": self._id, "object": "chat.completion", "model": self._model, "choices": choices}
        if self.usage is not None:
            document["usage"] = {"prompt_tokens": self.usage.prompt_tokens, "completion_tokens": self.usage.completion_tokens,
                                 "total_tokens": self.usage.total_tokens}
        return json.dumps(document, ensure_ascii=False)


def _estimate_prompt_tokens(body: dict[str, Any]) -> int:
    """Characters of the messages' text over four, rounded up (no tokenizer: it would need a download)."""
    characters = 0
    for message in body.get("messages") or ():
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, str):
            characters += len(content)
        elif isinstance(content, list):
            characters += sum(len(part.get("text") or "") for part in content if isinstance(part, dict))
    return -(-characters // 4)
