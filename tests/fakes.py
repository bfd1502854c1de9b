"""A fake OpenAI upstream: a real Tornado server on 127.0.0.1 speaking OpenAI's wire format.

Tests script its behaviour by the requested model name and read what it received:

- any ordinary model (e.g. "gpt-4o-mini"): echoes the last user message; streams it in
  8 content chunks when `stream` is true (usage chunk only if `stream_options.include_usage`)
- "slow-stream": 8 chunks, 100 ms apart
- "fault-500", "fault-429" (Retry-After: 7), "fault-400": OpenAI-shaped errors
- "html-502": an HTML error page, as a load balancer in front of a provider sends
- "not-json": 200 with a body that is not JSON
- "redirect": a 302 to somewhere else
- "hang": accepts the request and never answers
- "stall-stream": one chunk, then silence
- "reset-mid-stream": two chunks, then the connection is reset
- "tool-call": a tool call (streamed as argument fragments)
- "split-crlf": the ordinary stream with CRLF line ends, written one byte per TCP write
- "no-done": the ordinary stream, ended without its `data: [DONE]`
- "flaky-503": 503 on every odd-numbered call of this model, the echo on the others
- "firehose": a stream of 4,000 chunks of 4 KB sent as fast as the reader takes them
- "reset-before-headers": the connection is reset before any byte of a reply
- "reset-mid-body": a plain reply whose headers and first half arrive, then a reset
- "steady-<N>x<MS>": N content chunks, MS milliseconds apart (a long but healthy stream)
- "error-mid-stream": two chunks, then an error object as a data event (as OpenAI reports a failure
  after its 200), and the end of the stream without [DONE]
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.testing import bind_unused_port
from tornado.web import Application, RequestHandler


@dataclass
class Received:
    path: str
    method: str
    headers: dict[str, str]
    raw_headers: list[tuple[str, str]]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class FakeState:
    received: list[Received] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    open_streams: int = 0
    calls: dict[str, int] = field(default_factory=dict)  # per model
    closed_by_peer: int = 0  # requests whose connection the gateway closed before the reply ended


def _completion_id() -> str:
    return f"chatcmpl-fake{int(time.time() * 1000) % 100000}"


def _usage(prompt: int, completion: int) -> dict[str, Any]:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                      "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    }


def _last_user_text(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages") or []):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _steady(model: str) -> tuple[int, int] | None:
    """(chunks, milliseconds apart) for a "steady-<N>x<MS>" model, else None."""
    if not model.startswith("steady-"):
        return None
    count, _, gap = model[len("steady-"):].partition("x")
    return int(count), int(gap)


def _split(text: str, parts: int) -> list[str]:
    size = max(1, -(-len(text) // parts))
    pieces = [text[i:i + size] for i in range(0, len(text), size)] or [""]
    return pieces


class _Base(RequestHandler):
    def initialize(self, state: FakeState) -> None:
        self.state = state

    def remember(self) -> None:
        self.state.received.append(Received(
            path=self.request.path, method=self.request.method or "",
            headers={k.lower(): v for k, v in self.request.headers.items()},
            raw_headers=list(self.request.headers.get_all()), body=self.request.body,
        ))


class FakeChatHandler(_Base):
    def on_connection_close(self) -> None:
        self.state.closed_by_peer += 1

    async def post(self) -> None:
        self.remember()
        body = json.loads(self.request.body)
        model = body["model"]
        self.set_header("x-request-id", "req_fake123")
        self.set_header("openai-processing-ms", "12")
        self.set_header("Set-Cookie", "__cf_bm=secret-cookie")
        self.state.calls[model] = calls = self.state.calls.get(model, 0) + 1
        if model == "flaky-503" and calls % 2 == 1:
            return self._error(503, "The engine is currently overloaded, please try again later.", "server_error")
        if model == "fault-500":
            return self._error(500, "The server had an error while processing your request.", "server_error")
        if model == "fault-429":
            self.set_header("Retry-After", "7")
            return self._error(429, "Rate limit reached for requests", "requests", "rate_limit_exceeded")
        if model == "fault-400":
            return self._error(400, "Invalid value for 'temperature'.", "invalid_request_error", "invalid_value")
        if model == "html-502":
            self.set_status(502)
            self.set_header("Content-Type", "text/html")
            return self.finish("<html><body><h1>502 Bad Gateway</h1></body></html>")
        if model == "not-json":
            self.set_header("Content-Type", "application/json")
            return self.finish("this is { not json")
        if model == "redirect":
            self.set_status(302)
            self.set_header("Location", "http://127.0.0.1:1/elsewhere")
            return self.finish()
        if model == "hang":
            await self.state.release.wait()
            return
        if model == "reset-before-headers":
            return self._reset()
        text = f"Echo: {_last_user_text(body)}"
        if model == "firehose":
            text = "x" * 16_000_000
        if body.get("stream"):
            await self._stream(body, text)
        elif model == "reset-mid-body":
            await self._reply_cut_short(body, text)
        else:
            self._reply(body, text)

    async def _reply_cut_short(self, body: dict[str, Any], text: str) -> None:
        whole = self._completion(body, text)
        self.set_header("Content-Type", "application/json")
        self.set_header("Content-Length", str(len(whole)))
        self.write(whole[:len(whole) // 2])
        await self.flush()
        await asyncio.sleep(0.05)
        self._reset()

    def _error(self, status: int, message: str, error_type: str, code: str | None = None) -> None:
        self.set_status(status)
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps({"error": {"message": message, "type": error_type, "param": None, "code": code}}))

    def _reply(self, body: dict[str, Any], text: str) -> None:
        self.set_header("Content-Type", "application/json")
        self.finish(self._completion(body, text))

    def _completion(self, body: dict[str, Any], text: str) -> bytes:
        message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None, "annotations": []}
        finish = "stop"
        if body["model"] == "tool-call":
            message = {"role": "assistant", "content": None, "refusal": None, "annotations": [], "tool_calls": [
                {"id": "call_abc123", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{\"city\": \"Paris\"}"}}]}
            finish = "tool_calls"
        return json.dumps({
            "id": _completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": body["model"], "system_fingerprint": "fp_fake",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish}],
            "usage": _usage(len(json.dumps(body["messages"])) // 4, max(1, len(text) // 4)),
            "service_tier": "default",
        }).encode()

    async def _stream(self, body: dict[str, Any], text: str) -> None:
        model = body["model"]
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        ident, created = _completion_id(), int(time.time())
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")

        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            document: dict[str, Any] = {
                "id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
            }
            if include_usage:
                document["usage"] = None
            # OpenAI sends UTF-8 as is, so multi-byte characters can be split across reads.
            return b"data: " + json.dumps(document, ensure_ascii=False).encode() + b"\n\n"

        steady = _steady(model)
        if steady is not None:
            text = "tick " * steady[0]
        parts = steady[0] if steady else 4000 if model == "firehose" else 8
        pieces = _split(text + (" — ünïcødé 😀" if model == "split-crlf" else ""), parts)
        events = [chunk({"role": "assistant", "content": "", "refusal": None})]
        if model == "tool-call":
            events.append(chunk({"tool_calls": [{"index": 0, "id": "call_abc123", "type": "function",
                                                 "function": {"name": "get_weather", "arguments": ""}}]}))
            for fragment in ("{\"ci", "ty\": \"Pa", "ris\"}"):
                events.append(chunk({"tool_calls": [{"index": 0, "function": {"arguments": fragment}}]}))
            events.append(chunk({}, "tool_calls"))
        else:
            events += [chunk({"content": piece}) for piece in pieces]
            events.append(chunk({}, "stop"))
        if include_usage:
            usage_doc = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                         "system_fingerprint": "fp_fake", "choices": [],
                         "usage": _usage(len(json.dumps(body["messages"])) // 4, len(pieces))}
            events.append(b"data: " + json.dumps(usage_doc).encode() + b"\n\n")
        if model != "no-done":
            events.append(b"data: [DONE]\n\n")

        if model == "split-crlf":
            events = [e.replace(b"\n", b"\r\n") for e in events]
            events = [bytes([b]) for e in events for b in e]  # every byte its own write
        self.state.open_streams += 1
        try:
            for index, event in enumerate(events):
                if model == "reset-mid-stream" and index == 3:
                    # Let the gateway read what was sent: a RST discards unread data on Linux.
                    await asyncio.sleep(0.05)
                    self._reset()
                    return
                if model == "stall-stream" and index == 2:
                    await self.state.release.wait()
                    return
                if model == "error-mid-stream" and index == 3:
                    failure = {"error": {"message": "The server had an error while processing your request.",
                                         "type": "server_error", "param": None, "code": None}}
                    self.finish(b"data: " + json.dumps(failure).encode() + b"\n\n")
                    return
                self.write(event)
                try:
                    await self.flush()
                except StreamClosedError:
                    return  # the gateway hung up on us, as tests of disconnects expect
                if model == "slow-stream":
                    await asyncio.sleep(0.1)
                elif steady is not None:
                    await asyncio.sleep(steady[1] / 1000)
            self.finish()
        finally:
            self.state.open_streams -= 1

    def _reset(self) -> None:
        stream = self.request.connection.stream  # type: ignore[union-attr]
        # SO_LINGER 0 makes close() send a RST, as a crashed peer or a dropped proxy would.
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        stream.close()


class FakeModelsHandler(_Base):
    def get(self) -> None:
        self.remember()
        self.finish({"object": "list", "data": [
            {"id": "gpt-4o-mini", "object": "model", "created": 1721172741, "owned_by": "system"},
            {"id": "gpt-4o", "object": "model", "created": 1715367049, "owned_by": "system"},
        ]})


class FakeOpenAI:
    """A running fake OpenAI server; `base_url` is what OPENAI_BASE_URL should be."""

    def __init__(self) -> None:
        self.state = FakeState()
        app = Application([
            (r"/v1/chat/completions", FakeChatHandler, {"state": self.state}),
            (r"/v1/models", FakeModelsHandler, {"state": self.state}),
        ])
        sock, self.port = bind_unused_port()
        self.server = HTTPServer(app)
        self.server.add_sockets([sock])
        self.base_url = f"http://127.0.0.1:{self.port}/v1"

    @property
    def received(self) -> list[Received]:
        return self.state.received

    async def close(self) -> None:
        self.state.release.set()
        self.server.stop()
        await self.server.close_all_connections()
