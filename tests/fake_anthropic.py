"""A fake Anthropic Messages API: a small Tornado app on loopback that speaks Anthropic's wire format.

Routes: POST /v1/messages, POST /v1/messages/count_tokens, GET /v1/models. Each request is appended to
the `log` list given to `make_fake_anthropic` as {"path", "headers": dict with lower-case names,
"body": parsed JSON or None}.

Like the real API it answers 401 authentication_error without an x-api-key (or Authorization) header,
400 invalid_request_error without an anthropic-version header, and 400 invalid_request_error for a body
that is not a Messages request: model, max_tokens or messages missing, a field the API does not know
("xyz: Extra inputs are not permitted"), a role other than user/assistant. Every reply carries a
request-id header; streams are `event: X\\ndata: {...}\\n\\n` with Anthropic's ping after the first
content_block_start, usage in message_start and (cumulative) in message_delta.

Scripts, chosen by the request's `model` (streamed when body["stream"] is true):
  claude-echo          replies with the text of the last user message (so does any unscripted model)
  claude-tool          one tool_use block calling the request's first tool (else "get_weather") with
                       {"location": "Paris", "unit": "celsius"}, stop_reason tool_use; streamed, the
                       input JSON is split over several input_json_delta events
  claude-maxtokens     the echo, stop_reason max_tokens
  claude-stopseq       the echo, stop_reason stop_sequence, stop_sequence the request's first (else "STOP")
  claude-cache         the echo, usage with cache_creation_input_tokens 200 and cache_read_input_tokens 1500
  claude-error-NNN     status NNN with Anthropic's error type for it (400 invalid_request_error,
                       401 authentication_error, 402 billing_error, 403 permission_error, 404 not_found_error,
                       413 request_too_large, 429 rate_limit_error with retry-after: 3, 500 api_error,
                       504 timeout_error, 529 overloaded_error; other 4xx/5xx invalid_request_error/api_error);
                       count_tokens follows the same script
  claude-stream-error  streams some text, then `event: error` overloaded_error (not streamed: a 529)
  claude-stream-cut    streams some text, then closes the connection without message_stop
                       (not streamed: closes the connection without answering)
  claude-slow          the echo with its events SLOW_DELAY (100 ms) apart (not streamed: the reply
                       after 5 * SLOW_DELAY)
  claude-hang          accepts the request and never answers, until either side closes the connection
  claude-stall         streams message_start and the first text delta, then stays silent likewise
                       (not streamed: as claude-hang)

`FakeAnthropic()` runs the app on 127.0.0.1 on a free port (inside a running or current IOLoop);
`await fake.close()` stops it and drops open connections, which also ends hanging replies.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import tornado.web
from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.testing import bind_unused_port

SLOW_DELAY = 0.1
HANG_LIMIT = 60.0
RETRY_AFTER = "3"
MODELS = ("claude-echo", "claude-tool", "claude-cache", "claude-slow")
CACHE_CREATION, CACHE_READ = 200, 1500
TOOL_INPUT = {"location": "Paris", "unit": "celsius"}

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}
_REASONS = {529: "Overloaded"}  # not in http.client's table
_MESSAGES_FIELDS = frozenset(
    "model messages max_tokens system metadata stop_sequences stream temperature top_p top_k tools tool_choice"
    " thinking service_tier container mcp_servers context_management output_config inference_geo".split()
)
_COUNT_FIELDS = frozenset("model messages system tools tool_choice thinking context_management mcp_servers".split())


def make_fake_anthropic(log: list) -> tornado.web.Application:
    """The fake Anthropic app; every request it receives is appended to `log`."""
    return tornado.web.Application(
        [
            (r"/v1/messages", MessagesHandler, {"log": log}),
            (r"/v1/messages/count_tokens", CountTokensHandler, {"log": log}),
            (r"/v1/models", ModelsHandler, {"log": log}),
        ]
    )


def start_fake_anthropic(log: list) -> tuple[HTTPServer, int]:
    """Serve the fake on 127.0.0.1 on a free port (an IOLoop must be current); returns (server, port)."""
    sock, port = bind_unused_port()
    server = HTTPServer(make_fake_anthropic(log))
    server.add_sockets([sock])
    return server, port


class FakeAnthropic:
    """A running fake; `base_url` is what an Anthropic client's base URL should be."""

    def __init__(self) -> None:
        self.log: list[dict] = []
        self.server, self.port = start_fake_anthropic(self.log)
        self.base_url = f"http://127.0.0.1:{self.port}"

    async def close(self) -> None:
        """Stop listening and close every open connection."""
        self.server.stop()
        await self.server.close_all_connections()


class _Error(Exception):
    def __init__(self, status: int, message: str, kind: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message = status, message
        self.kind = kind or _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


class FakeAnthropicHandler(tornado.web.RequestHandler):
    """Logs the request, checks the headers the real API requires, renders errors Anthropic's way."""

    request_id = ""

    def initialize(self, log: list) -> None:
        self.log = log
        self.gone = asyncio.Event()  # set when the connection closes, from either side

    def on_connection_close(self) -> None:
        self.gone.set()

    async def hang(self) -> None:
        """Wait until the connection closes (bounded, so a forgotten test cannot hang forever)."""
        try:
            await asyncio.wait_for(self.gone.wait(), HANG_LIMIT)
        except asyncio.TimeoutError:
            pass

    def set_default_headers(self) -> None:
        # Called from __init__ (before initialize) and again by clear(); the id must stay the same.
        self.request_id = self.request_id or "req_" + uuid.uuid4().hex[:24]
        self.set_header("request-id", self.request_id)

    def prepare(self) -> None:
        body: Any = None
        if self.request.body:
            try:
                body = json.loads(self.request.body)
            except ValueError:
                body = self.request.body.decode("utf-8", "replace")
        self.body = body
        headers = {name.lower(): value for name, value in self.request.headers.get_all()}
        self.log.append({"path": self.request.path, "headers": headers, "body": body})

    def check_headers(self) -> None:
        """Raise an _Error if a header the real API requires is missing."""
        headers = self.request.headers
        if "x-api-key" not in headers and "authorization" not in headers:
            raise _Error(401, "x-api-key header is required")
        if "anthropic-version" not in headers:
            raise _Error(400, "anthropic-version: header is required")

    def check_request(self, fields: frozenset[str], *, needs_max_tokens: bool) -> dict:
        """The parsed body, or an _Error as the real API would raise it."""
        self.check_headers()
        body = self.body
        if not isinstance(body, dict):
            raise _Error(400, "There was an issue with the format or content of your request: not a JSON object.")
        for name in body:
            if name not in fields:
                raise _Error(400, f"{name}: Extra inputs are not permitted")
        required = ("model", "messages", "max_tokens") if needs_max_tokens else ("model", "messages")
        for name in required:
            if name not in body:
                raise _Error(400, f"{name}: Field required")
        if not isinstance(body["messages"], list):
            raise _Error(400, "messages: Input should be a valid list")
        for i, message in enumerate(body["messages"]):
            if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
                raise _Error(400, f"messages.{i}.role: Input should be 'user' or 'assistant'")
        model = body["model"]
        if isinstance(model, str) and model.startswith("claude-error-") and model[13:].isdigit():
            status = int(model[13:])
            if status == 429:
                self.set_header("retry-after", RETRY_AFTER)
            raise _Error(status, f"Scripted error {status} for {model}.")
        return body

    def send_anthropic_error(self, error: _Error) -> None:
        self.set_status(error.status, reason=_REASONS.get(error.status))
        self.set_header("content-type", "application/json")
        body = {"type": "error", "error": {"type": error.kind, "message": error.message}, "request_id": self.request_id}
        self.finish(json.dumps(body))

    def reply_json(self, body: dict) -> None:
        self.set_header("content-type", "application/json")
        self.finish(json.dumps(body))


class MessagesHandler(FakeAnthropicHandler):
    """POST /v1/messages: the scripted Message, whole or streamed."""

    async def post(self) -> None:
        try:
            body = self.check_request(_MESSAGES_FIELDS, needs_max_tokens=True)
        except _Error as error:
            return self.send_anthropic_error(error)
        model = str(body["model"])
        stream = body.get("stream") is True
        if model == "claude-stream-error" and not stream:
            return self.send_anthropic_error(_Error(529, "Overloaded"))
        if model == "claude-stream-cut" and not stream:
            self.detach().close()
            return
        if model == "claude-hang" or (model == "claude-stall" and not stream):
            return await self.hang()
        message = _script(model, body)
        if not stream:
            if model == "claude-slow":
                await asyncio.sleep(5 * SLOW_DELAY)
            return self.reply_json(message)
        self.set_header("content-type", "text/event-stream; charset=utf-8")
        self.set_header("cache-control", "no-cache")
        try:
            await self._stream(model, message)
        except StreamClosedError:
            pass  # the client went away

    async def _stream(self, model: str, message: dict) -> None:
        delay = SLOW_DELAY if model == "claude-slow" else 0.0
        usage = message["usage"]
        start = dict(message, content=[], stop_reason=None, stop_sequence=None, usage=dict(usage, output_tokens=1))
        await self._event("message_start", {"type": "message_start", "message": start})
        for index, block in enumerate(message["content"]):
            empty = {"type": "text", "text": ""} if block["type"] == "text" else dict(block, input={})
            await self._event("content_block_start", {"type": "content_block_start", "index": index, "content_block": empty})
            if index == 0:
                await self._send(b'event: ping\ndata: {"type": "ping"}\n\n')
            for piece in _pieces(block)[: 1 if model == "claude-stall" else None]:
                await asyncio.sleep(delay)
                await self._event("content_block_delta", {"type": "content_block_delta", "index": index, "delta": piece})
            if model == "claude-stream-error":
                error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
                await self._event("error", error)
                self.finish()
                return
            if model == "claude-stream-cut":
                self.detach().close()
                return
            if model == "claude-stall":
                return await self.hang()
            await self._event("content_block_stop", {"type": "content_block_stop", "index": index})
        await asyncio.sleep(delay)
        delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
        # message_delta's usage is cumulative; the API now repeats the input counts beside the output.
        usage = {k: v for k, v in usage.items() if k.endswith("_tokens")}
        await self._event("message_delta", {"type": "message_delta", "delta": delta, "usage": usage})
        await self._event("message_stop", {"type": "message_stop"})
        self.finish()

    async def _event(self, name: str, data: dict) -> None:
        await self._send(f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode())

    async def _send(self, raw: bytes) -> None:
        self.write(raw)
        await self.flush()


class CountTokensHandler(FakeAnthropicHandler):
    """POST /v1/messages/count_tokens: {"input_tokens": N}."""

    def post(self) -> None:
        try:
            body = self.check_request(_COUNT_FIELDS, needs_max_tokens=False)
        except _Error as error:
            return self.send_anthropic_error(error)
        self.reply_json({"input_tokens": _input_tokens(body)})


class ModelsHandler(FakeAnthropicHandler):
    """GET /v1/models: a one-page list of the scripted models."""

    def get(self) -> None:
        try:
            self.check_headers()
        except _Error as error:
            return self.send_anthropic_error(error)
        data = [
            {"type": "model", "id": name, "display_name": name.replace("-", " ").title(), "created_at": "2025-05-14T00:00:00Z"}
            for name in MODELS
        ]
        self.reply_json({"data": data, "has_more": False, "first_id": data[0]["id"], "last_id": data[-1]["id"]})


def _script(model: str, body: dict) -> dict:
    """The whole Message the script answers with (streams are cut from it)."""
    text = _last_user_text(body["messages"]) or "Hello!"
    stop_reason, stop_sequence = "end_turn", None
    if model == "claude-tool":
        tools = body.get("tools") or [{}]
        name = tools[0].get("name", "get_weather") if isinstance(tools[0], dict) else "get_weather"
        content = [{"type": "tool_use", "id": "toolu_" + uuid.uuid4().hex[:24], "name": name, "input": TOOL_INPUT}]
        stop_reason, output = "tool_use", 24
    else:
        if model in ("claude-stream-error", "claude-stream-cut"):
            text = "Partial answer before the failure"
        content = [{"type": "text", "text": text}]
        output = max(1, len(text.split()))
        if model == "claude-maxtokens":
            stop_reason = "max_tokens"
        elif model == "claude-stopseq":
            stops = body.get("stop_sequences") or ["STOP"]
            stop_reason, stop_sequence = "stop_sequence", stops[0]
    cached = model == "claude-cache"
    usage = {
        "input_tokens": _input_tokens(body),
        "cache_creation_input_tokens": CACHE_CREATION if cached else 0,
        "cache_read_input_tokens": CACHE_READ if cached else 0,
        "cache_creation": {"ephemeral_5m_input_tokens": CACHE_CREATION if cached else 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": output,
        "service_tier": "standard",
    }
    return {
        "id": "msg_01" + uuid.uuid4().hex[:22],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


def _pieces(block: dict) -> list[dict]:
    """The deltas a block streams as: text word by word, tool input in several JSON fragments."""
    if block["type"] == "text":
        words = block["text"].split(" ")
        return [{"type": "text_delta", "text": w if i == 0 else " " + w} for i, w in enumerate(words)]
    raw = json.dumps(block["input"])
    cuts = [0, 1, len(raw) // 3, 2 * len(raw) // 3, len(raw)]
    # Anthropic opens a tool's input with an empty fragment, then sends it in arbitrary slices.
    return [{"type": "input_json_delta", "partial_json": raw[a:b]} for a, b in zip([0, *cuts], cuts)]


def _last_user_text(messages: list) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return " ".join(_texts(message.get("content")))
    return ""


def _texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    texts = []
    for block in content if isinstance(content, list) else []:
        if isinstance(block, dict) and block.get("type") == "text":
            texts.append(str(block.get("text", "")))
        elif isinstance(block, dict) and block.get("type") == "tool_result":
            texts.extend(_texts(block.get("content")))
    return texts


def _input_tokens(body: dict) -> int:
    """A deterministic stand-in for tokenization: one token per word of system and message text."""
    words = sum(len(t.split()) for t in _texts(body.get("system")))
    for message in body.get("messages") or []:
        if isinstance(message, dict):
            words += sum(len(t.split()) for t in _texts(message.get("content")))
    return max(1, words)
