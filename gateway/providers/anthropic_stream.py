"""Anthropic replies in OpenAI's shapes: whole replies, streamed events, error bodies.

Pure: no I/O, no Tornado. Callers import `anthropic_translate`, which re-exports this module's API.

Stop reasons: end_turn, stop_sequence and pause_turn -> "stop" (pause_turn only follows Anthropic's
server-side tools, which a translated request never asks for); max_tokens and
model_context_window_exceeded -> "length"; tool_use -> "tool_calls"; refusal -> "content_filter"
(Anthropic's safety classifiers stopped the reply, which is what OpenAI's content_filter reports).

Thinking, redacted thinking, signatures, citations and server-tool blocks have no place in an OpenAI
chat completion and are skipped, streamed or whole.

Errors keep Anthropic's message and type (overloaded_error, request_too_large, ... are not OpenAI
types, but they say what happened); `code` is the nearest code an OpenAI client knows, or null.
"""

from __future__ import annotations

import json
from typing import Any

from gateway.errors import UpstreamUnavailable
from gateway.record import Usage

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
# Anthropic's error type -> the closest `code` an OpenAI client knows.
_ERROR_CODES = {
    "authentication_error": "invalid_api_key",
    "permission_error": "permission_denied",
    "not_found_error": "not_found",
    "rate_limit_error": "rate_limit_exceeded",
    "request_too_large": "request_too_large",
    "overloaded_error": "overloaded",
}
_STATUS_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class StreamTranslator:
    """Anthropic stream events in, OpenAI chat.completion.chunk dicts out, one event at a time."""

    def __init__(self, *, model: str, include_usage: bool, created: int) -> None:
        self._model = model
        self._include_usage = include_usage
        self._created = created
        self._id = ""
        self._started = False  # the role chunk has gone out
        self._finished = False
        self._error: dict | None = None
        self._usage: dict[str, int] = {}
        self._text: list[str] = []
        self._calls: list[dict] = []  # OpenAI tool calls, arguments filled in by assembled()
        self._arguments: list[list[str]] = []  # argument fragments, one list per tool call
        self._tool_at: dict[int, int] = {}  # Anthropic content block index -> OpenAI tool call index
        self._finish_reason: str | None = None

    def feed(self, event: str, data: dict) -> list[dict]:
        """Translate one decoded Anthropic SSE event; return the chunks to send now (possibly none)."""
        if self.ended:
            return []
        if not isinstance(data, dict):
            data = {}
        kind = event or data.get("type")
        if kind == "message_start":
            return self._message_start(data)
        if kind == "content_block_start":
            return self._block_start(data)
        if kind == "content_block_delta":
            return self._block_delta(data)
        if kind == "content_block_stop":
            return self._block_stop(data)
        if kind == "message_delta":
            return self._message_delta(data)
        if kind == "message_stop":
            self._finished = True
            return [self._usage_chunk()] if self._include_usage else []
        if kind == "error":
            return [self._fail(data.get("error"))]
        return []  # ping, and event types newer than this code

    @property
    def usage(self) -> Usage:
        """Token counts so far: message_start's input and cache tokens, message_delta's output tokens."""
        return usage_from_anthropic(self._usage)

    @property
    def finished(self) -> bool:
        """Whether message_stop arrived."""
        return self._finished

    @property
    def error(self) -> dict | None:
        """The OpenAI-shaped error an `error` event produced, if one did."""
        return self._error

    @property
    def ended(self) -> bool:
        """Whether the stream is over, finished or failed: later events are ignored."""
        return self._finished or self._error is not None

    def assembled(self) -> dict:
        """A chat.completion holding everything streamed so far (for the interaction record)."""
        calls = [
            tool_call(call["id"], call["function"]["name"], "".join(fragments))
            for call, fragments in zip(self._calls, self._arguments)
        ]
        return completion(
            reply_id=self._id,
            created=self._created,
            model=self._model,
            text="".join(self._text),
            tool_calls=calls,
            finish_reason=self._finish_reason,
            usage=self.usage,
        )

    def _message_start(self, data: dict) -> list[dict]:
        message = _dict(data.get("message"))
        if isinstance(message.get("id"), str) and not self._started:
            self._id = message["id"]  # every chunk must carry the same id
        self._merge_usage(message.get("usage"))
        return self._begin()

    def _block_start(self, data: dict) -> list[dict]:
        block = _dict(data.get("content_block"))
        if block.get("type") == "text":
            text = block.get("text")
            return self._begin() + (self._text_chunk(text) if isinstance(text, str) and text else [])
        if block.get("type") != "tool_use":
            return []
        at = len(self._calls)
        call_id, name = _str(block.get("id")), _str(block.get("name"))
        self._calls.append(tool_call(call_id, name, ""))
        self._arguments.append([])
        index = data.get("index")
        if _is_int(index):
            self._tool_at[index] = at
        opening = {"index": at, "id": call_id, "type": "function", "function": {"name": name, "arguments": ""}}
        return self._begin() + [self._chunk({"tool_calls": [opening]})]

    def _block_delta(self, data: dict) -> list[dict]:
        delta = _dict(data.get("delta"))
        if delta.get("type") == "text_delta":
            text = delta.get("text")
            return (self._begin() + self._text_chunk(text)) if isinstance(text, str) and text else []
        if delta.get("type") == "input_json_delta":
            fragment = delta.get("partial_json")
            at = self._tool_at.get(data["index"]) if _is_int(data.get("index")) else None
            if at is None or not isinstance(fragment, str) or not fragment:
                return []
            self._arguments[at].append(fragment)
            return [self._chunk({"tool_calls": [{"index": at, "function": {"arguments": fragment}}]})]
        return []  # thinking_delta, signature_delta, citations_delta

    def _block_stop(self, data: dict) -> list[dict]:
        at = self._tool_at.get(data["index"]) if _is_int(data.get("index")) else None
        if at is None or self._arguments[at]:
            return []
        # A tool without parameters may stream no input at all; OpenAI clients expect a JSON object.
        self._arguments[at].append("{}")
        return [self._chunk({"tool_calls": [{"index": at, "function": {"arguments": "{}"}}]})]

    def _message_delta(self, data: dict) -> list[dict]:
        # Anthropic's message_delta usage is cumulative: present fields overwrite message_start's.
        self._merge_usage(data.get("usage"))
        reason = openai_finish_reason(_dict(data.get("delta")).get("stop_reason"))
        if reason is None or self._finish_reason is not None:
            return []
        self._finish_reason = reason
        return self._begin() + [self._chunk({}, reason)]

    def _fail(self, error: Any) -> dict:
        error = _dict(error)
        message = error.get("message") if isinstance(error.get("message"), str) else "The upstream stream failed."
        kind = error.get("type") if isinstance(error.get("type"), str) else "api_error"
        self._error = {"error": {"message": message, "type": kind, "code": None, "param": None}}
        return self._error

    def _merge_usage(self, usage: Any) -> None:
        for name in _USAGE_FIELDS:
            value = _dict(usage).get(name)
            if _is_int(value):
                self._usage[name] = value

    def _begin(self) -> list[dict]:
        # The first chunk names the role, as OpenAI's does, even if message_start went missing.
        if self._started:
            return []
        self._started = True
        return [self._chunk({"role": "assistant", "content": ""})]

    def _text_chunk(self, text: str) -> list[dict]:
        self._text.append(text)
        return [self._chunk({"content": text})]

    def _chunk(self, delta: dict, finish: str | None = None) -> dict:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
        }
        if self._include_usage:
            chunk["usage"] = None  # OpenAI sends null usage on every chunk but the last
        return chunk

    def _usage_chunk(self) -> dict:
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": [],
            "usage": openai_usage(self.usage),
        }


def from_anthropic(reply: dict, *, created: int) -> dict:
    """Translate an Anthropic Message into an OpenAI chat.completion."""
    if not isinstance(reply, dict) or not isinstance(reply.get("content"), list):
        raise UpstreamUnavailable("Anthropic sent a reply that is not a Message.")
    texts: list[str] = []
    calls: list[dict] = []
    for block in reply["content"]:
        if not isinstance(block, dict):
            continue
        if block.get("type") == "text" and isinstance(block.get("text"), str):
            texts.append(block["text"])
        elif block.get("type") == "tool_use":
            arguments = json.dumps(block.get("input") or {}, ensure_ascii=False)
            calls.append(tool_call(str(block.get("id", "")), str(block.get("name", "")), arguments))
        # thinking, redacted_thinking and server-tool blocks have no OpenAI counterpart.
    usage = reply.get("usage")
    return completion(
        reply_id=str(reply.get("id", "")),
        created=created,
        model=str(reply.get("model", "")),
        text="".join(texts),
        tool_calls=calls,
        finish_reason=openai_finish_reason(reply.get("stop_reason")) or "stop",
        usage=usage_from_anthropic(usage if isinstance(usage, dict) else {}),
    )


def error_to_openai(status: int, body: bytes) -> dict:
    """Translate an Anthropic error reply into OpenAI's error body, keeping Anthropic's message and type."""
    try:
        parsed = json.loads(body)
    except ValueError:
        parsed = None
    error = parsed.get("error") if isinstance(parsed, dict) else None
    if isinstance(error, dict) and isinstance(error.get("message"), str) and isinstance(error.get("type"), str):
        kind, message = error["type"], error["message"]
    else:
        kind = _STATUS_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        snippet = body[:200].decode("utf-8", "replace").strip()
        message = f"Anthropic answered HTTP {status}" + (f": {snippet}" if snippet else ".")
    return {"error": {"message": message, "type": kind, "code": _ERROR_CODES.get(kind), "param": None}}


def tool_call(call_id: str, name: str, arguments: str) -> dict:
    """One entry of an OpenAI message's tool_calls."""
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def completion(
    *,
    reply_id: str,
    created: int,
    model: str,
    text: str,
    tool_calls: list[dict],
    finish_reason: str | None,
    usage: Usage,
) -> dict:
    """An OpenAI chat.completion with one choice."""
    content = None if tool_calls and not text else text
    message: dict[str, Any] = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": reply_id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
        "usage": openai_usage(usage),
    }


def openai_finish_reason(stop_reason: Any) -> str | None:
    """OpenAI's finish_reason for an Anthropic stop_reason (None while there is none)."""
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def usage_from_anthropic(usage: dict) -> Usage:
    """Anthropic's usage block in OpenAI's terms (cache reads and writes count as prompt tokens)."""
    def count(name: str) -> int:
        value = usage.get(name) if isinstance(usage, dict) else None
        return value if _is_int(value) and value > 0 else 0

    cached = count("cache_read_input_tokens")
    written = count("cache_creation_input_tokens")
    return Usage(
        prompt_tokens=count("input_tokens") + cached + written,
        completion_tokens=count("output_tokens"),
        cached_tokens=cached,
        cache_write_tokens=written,
    )


def openai_usage(u: Usage) -> dict:
    """The `usage` object of an OpenAI reply."""
    return {
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.total_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    }


def _dict(value: Any) -> dict:
    return value if isinstance(value, dict) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
