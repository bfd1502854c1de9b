"""A fast mock of OpenAI's and Anthropic's APIs, for the demo and the benchmark. No keys, no network.

Endpoints, in each provider's exact wire format:

  POST /v1/chat/completions       OpenAI Chat Completions, whole or streamed (chat.completion.chunk
                                  events, a usage chunk when stream_options.include_usage, `data: [DONE]`)
  GET  /v1/models                 OpenAI's model list; Anthropic's when the request has an
                                  anthropic-version header (both providers use this path)
  POST /v1/messages               Anthropic Messages, whole or streamed (message_start,
                                  content_block_start, ping, content_block_delta..., content_block_stop,
                                  message_delta, message_stop)
  POST /v1/messages/count_tokens  Anthropic token counting

Every reply is the same text (--reply), streamed in --chunks pieces with --delay-ms between them.
Like the real APIs it refuses a request without an API key (401) and, for Anthropic, without an
anthropic-version header or max_tokens (400). A model named `error-<status>` (error-429, error-500,
...) gets that HTTP status with the provider's own error body, so error paths can be tried by hand.

Replies are assembled from byte strings computed at start, since the benchmark uses this server as
the "direct" baseline and it should cost as little as possible per request.

    python examples/mock_provider.py [--host 127.0.0.1] [--port 9999] [--chunks 8] [--delay-ms 0] [--reply TEXT]
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import signal
import sys
import time
from dataclasses import dataclass
from typing import Any

from tornado.httpserver import HTTPServer
from tornado.iostream import StreamClosedError
from tornado.web import Application, RequestHandler

DEFAULT_REPLY = "Hello from the mock provider! This reply arrives in small pieces, like a real model's."
OPENAI_MODELS = ("gpt-4o-mini", "gpt-4o", "gpt-4.1-mini")
ANTHROPIC_MODELS = (("claude-sonnet-4-5", "Claude Sonnet 4.5"), ("claude-haiku-4-5", "Claude Haiku 4.5"))

_OPENAI_ERROR_TYPES = {400: "invalid_request_error", 401: "invalid_request_error", 403: "invalid_request_error",
                       404: "invalid_request_error", 429: "requests"}
_OPENAI_ERROR_CODES = {401: "invalid_api_key", 429: "rate_limit_exceeded"}
_ANTHROPIC_ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
                          403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                          429: "rate_limit_error", 500: "api_error", 504: "timeout_error", 529: "overloaded_error"}
_REASONS = {529: "Overloaded"}  # http.client knows no phrase for Anthropic's 529

_ids = itertools.count(1)


def _dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def split_reply(text: str, parts: int) -> list[str]:
    """The reply cut into `parts` pieces of near-equal length (fewer if the text is shorter)."""
    parts = max(1, min(parts, len(text)))
    return [text[round(i * len(text) / parts):round((i + 1) * len(text) / parts)] for i in range(parts)]


@dataclass(frozen=True)
class Script:
    """Everything about the replies that does not depend on the request, encoded once."""

    text: str
    pieces: tuple[str, ...]
    delay: float
    output_tokens: int
    # OpenAI stream: the tail of each chunk after `"model":"..."`, without and with `"usage":null`.
    openai_chunks: tuple[bytes, ...]
    openai_chunks_usage: tuple[bytes, ...]
    # Anthropic stream: every event from content_block_start through message_stop, index-aligned with pieces.
    anthropic_head: bytes
    anthropic_deltas: tuple[bytes, ...]
    anthropic_tail: bytes
    openai_models: bytes
    anthropic_models: bytes

    @classmethod
    def build(cls, text: str, chunks: int, delay_ms: float) -> "Script":
        """Precompute every constant byte string of the replies."""
        pieces = tuple(split_reply(text, chunks))
        output_tokens = max(1, len(text) // 4)
        deltas = [{"role": "assistant", "content": "", "refusal": None}] + [{"content": p} for p in pieces] + [{}]
        finishes = [None] * (len(deltas) - 1) + ["stop"]

        def openai_tail(delta: dict, finish: str | None, usage: bool) -> bytes:
            choices = _dumps([{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}])
            return (f',"service_tier":"default","system_fingerprint":"fp_mock","choices":{choices}'
                    + (',"usage":null' if usage else "") + "}\n\n").encode()

        def event(name: str, data: dict) -> bytes:
            return f"event: {name}\ndata: {_dumps(data)}\n\n".encode()

        head = (event("content_block_start", {"type": "content_block_start", "index": 0,
                                              "content_block": {"type": "text", "text": ""}})
                + event("ping", {"type": "ping"}))
        anthropic_deltas = tuple(
            event("content_block_delta", {"type": "content_block_delta", "index": 0,
                                          "delta": {"type": "text_delta", "text": p}})
            for p in pieces
        )
        # Anthropic's message_delta usage is cumulative, so it carries the final output count.
        tail = (event("content_block_stop", {"type": "content_block_stop", "index": 0})
                + b"%(message_delta)s"
                + event("message_stop", {"type": "message_stop"}))
        openai_models = _dumps({"object": "list", "data": [
            {"id": m, "object": "model", "created": 1721172741, "owned_by": "system"} for m in OPENAI_MODELS]})
        anthropic_models = _dumps({
            "data": [{"type": "model", "id": m, "display_name": name, "created_at": "2025-09-29T00:00:00Z"}
                     for m, name in ANTHROPIC_MODELS],
            "has_more": False, "first_id": ANTHROPIC_MODELS[0][0], "last_id": ANTHROPIC_MODELS[-1][0]})
        return cls(
            text=text,
            pieces=pieces,
            delay=delay_ms / 1000,
            output_tokens=output_tokens,
            openai_chunks=tuple(openai_tail(d, f, False) for d, f in zip(deltas, finishes)),
            openai_chunks_usage=tuple(openai_tail(d, f, True) for d, f in zip(deltas, finishes)),
            anthropic_head=head,
            anthropic_deltas=anthropic_deltas,
            anthropic_tail=tail,
            openai_models=openai_models.encode(),
            anthropic_models=anthropic_models.encode(),
        )


class MockHandler(RequestHandler):
    """Shared plumbing: the script, a parsed body, and errors in the provider's shape."""

    def initialize(self, script: Script) -> None:
        self.script = script

    def compute_etag(self) -> None:
        return None

    def set_default_headers(self) -> None:
        self.clear_header("Server")

    def json_body(self) -> dict | None:
        """The request body as a JSON object, or None after answering 400."""
        try:
            body = json.loads(self.request.body)
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self.fail(400, "The request body is not a JSON object.")
            return None
        return body

    def prompt_tokens(self) -> int:
        # A rough count is enough for a mock: about four bytes of request per token.
        return max(1, len(self.request.body) // 4)

    def fail(self, status: int, message: str) -> None:
        raise NotImplementedError

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        self.fail(status_code, self._reason)

    async def send_events(self, first: bytes, events: tuple[bytes, ...] | list[bytes], last: bytes) -> None:
        """Write a stream: `first` at once, each of `events` after --delay-ms, then `last`; flush each."""
        self.set_header("Content-Type", "text/event-stream; charset=utf-8")
        self.set_header("Cache-Control", "no-cache")
        delay = self.script.delay
        try:
            self.write(first)
            await self.flush()
            for data in events:
                if delay:
                    await asyncio.sleep(delay)
                self.write(data)
                await self.flush()
            self.write(last)
            self.finish()
        except StreamClosedError:
            pass  # the client went away; nothing to clean up


class OpenAIHandler(MockHandler):
    def fail(self, status: int, message: str) -> None:
        if status == 429:
            self.set_header("retry-after", "1")
        error = {"message": message, "type": _OPENAI_ERROR_TYPES.get(status, "server_error"), "param": None,
                 "code": _OPENAI_ERROR_CODES.get(status)}
        self.set_status(status, _REASONS.get(status))
        self.set_header("Content-Type", "application/json")
        self.finish(_dumps({"error": error}))

    def authorized(self) -> bool:
        """Whether an `Authorization: Bearer <key>` header came; answers 401 otherwise."""
        scheme, _, token = self.request.headers.get("Authorization", "").partition(" ")
        if scheme != "Bearer" or not token.strip():
            self.fail(401, "You didn't provide an API key. You need to provide your API key in an Authorization "
                           "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
            return False
        return True


class ChatCompletionsHandler(OpenAIHandler):
    """POST /v1/chat/completions."""

    async def post(self) -> None:
        if not self.authorized():
            return
        body = self.json_body()
        if body is None:
            return
        model = body.get("model")
        if not isinstance(model, str) or not isinstance(body.get("messages"), list):
            return self.fail(400, "'model' and 'messages' are required properties.")
        if model.startswith("error-") and model[6:].isdigit():
            return self.fail(int(model[6:]), f"Mock error {model[6:]}, as requested by the model name.")
        script = self.script
        serial = next(_ids)
        self.set_header("x-request-id", f"req_mock{serial:012x}")
        fields = f'"created":{int(time.time())},"model":{_dumps(model)}'
        head = f'{{"id":"chatcmpl-mock{serial:012x}","object":"chat.completion",{fields}'
        prompt = self.prompt_tokens()
        usage = _dumps({
            "prompt_tokens": prompt, "completion_tokens": script.output_tokens,
            "total_tokens": prompt + script.output_tokens,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0,
                                          "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
        })
        if body.get("stream") is not True:
            message = _dumps({"role": "assistant", "content": script.text, "refusal": None, "annotations": []})
            self.set_header("Content-Type", "application/json")
            return self.finish(
                f'{head},"choices":[{{"index":0,"message":{message},"logprobs":null,"finish_reason":"stop"}}],'
                f'"usage":{usage},"service_tier":"default","system_fingerprint":"fp_mock"}}'
            )
        options = body.get("stream_options")
        with_usage = isinstance(options, dict) and options.get("include_usage") is True
        prefix = f'data: {{"id":"chatcmpl-mock{serial:012x}","object":"chat.completion.chunk",{fields}'.encode()
        tails = script.openai_chunks_usage if with_usage else script.openai_chunks
        chunks = [prefix + tail for tail in tails]
        last = chunks[-1]
        if with_usage:
            # Before [DONE]: one chunk with no choices and the whole request's usage.
            last += prefix + f',"service_tier":"default","system_fingerprint":"fp_mock","choices":[],"usage":{usage}}}\n\n'.encode()
        await self.send_events(chunks[0], chunks[1:-1], last + b"data: [DONE]\n\n")


class AnthropicHandler(MockHandler):
    def fail(self, status: int, message: str) -> None:
        if status == 429:
            self.set_header("retry-after", "1")
        self.set_status(status, _REASONS.get(status))
        self.set_header("Content-Type", "application/json")
        kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
        self.finish(_dumps({"type": "error", "error": {"type": kind, "message": message},
                            "request_id": f"req_mock{next(_ids):012x}"}))

    def authorized(self) -> bool:
        """Whether an API key and anthropic-version came; answers 401 or 400 otherwise."""
        headers = self.request.headers
        if not headers.get("x-api-key") and not headers.get("Authorization", "").startswith("Bearer "):
            self.fail(401, "x-api-key header is required")
            return False
        if not headers.get("anthropic-version"):
            self.fail(400, "anthropic-version: header is required")
            return False
        return True

    def messages_body(self, *, needs_max_tokens: bool) -> dict | None:
        """The checked request body, or None after answering the error."""
        if not self.authorized():
            return None
        body = self.json_body()
        if body is None:
            return None
        for field in ("model", "messages") + (("max_tokens",) if needs_max_tokens else ()):
            if field not in body:
                self.fail(400, f"{field}: Field required")
                return None
        model = body["model"]
        if isinstance(model, str) and model.startswith("error-") and model[6:].isdigit():
            self.fail(int(model[6:]), f"Mock error {model[6:]}, as requested by the model name.")
            return None
        self.set_header("request-id", f"req_mock{next(_ids):012x}")
        return body


class MessagesHandler(AnthropicHandler):
    """POST /v1/messages."""

    async def post(self) -> None:
        body = self.messages_body(needs_max_tokens=True)
        if body is None:
            return
        script = self.script
        model = _dumps(body["model"])
        message_id = f"msg_mock{next(_ids):012x}"
        prompt = self.prompt_tokens()
        usage = {"input_tokens": prompt, "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0,
                 "output_tokens": script.output_tokens}
        if body.get("stream") is not True:
            self.set_header("Content-Type", "application/json")
            return self.finish(
                f'{{"id":"{message_id}","type":"message","role":"assistant","model":{model},'
                f'"content":[{{"type":"text","text":{_dumps(script.text)}}}],"stop_reason":"end_turn",'
                f'"stop_sequence":null,"usage":{_dumps({**usage, "service_tier": "standard"})}}}'
            )
        start = (
            f'event: message_start\ndata: {{"type":"message_start","message":{{"id":"{message_id}","type":"message",'
            f'"role":"assistant","model":{model},"content":[],"stop_reason":null,"stop_sequence":null,'
            f'"usage":{_dumps({**usage, "output_tokens": 1, "service_tier": "standard"})}}}}}\n\n'
        ).encode()
        delta = _dumps({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                        "usage": usage})
        tail = script.anthropic_tail.replace(b"%(message_delta)s", f"event: message_delta\ndata: {delta}\n\n".encode())
        await self.send_events(start + script.anthropic_head, script.anthropic_deltas, tail)


class CountTokensHandler(AnthropicHandler):
    """POST /v1/messages/count_tokens."""

    def post(self) -> None:
        body = self.messages_body(needs_max_tokens=False)
        if body is None:
            return
        self.set_header("Content-Type", "application/json")
        self.finish(_dumps({"input_tokens": self.prompt_tokens()}))


class ModelsHandler(OpenAIHandler):
    """GET /v1/models, in whichever provider's format the request's headers point to."""

    def get(self) -> None:
        self.set_header("Content-Type", "application/json")
        anthropic = "anthropic-version" in self.request.headers
        self.finish(self.script.anthropic_models if anthropic else self.script.openai_models)


class NotFoundHandler(OpenAIHandler):
    def prepare(self) -> None:
        self.fail(404, f"Unknown endpoint: {self.request.method} {self.request.path} (this is the mock provider).")


def make_app(script: Script) -> Application:
    """The mock's routes."""
    args = {"script": script}
    return Application(
        [
            (r"/v1/chat/completions", ChatCompletionsHandler, args),
            (r"/v1/models", ModelsHandler, args),
            (r"/v1/messages", MessagesHandler, args),
            (r"/v1/messages/count_tokens", CountTokensHandler, args),
        ],
        default_handler_class=NotFoundHandler,
        default_handler_args=args,
        compress_response=False,
        log_function=lambda handler: None,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="A fast mock of the OpenAI and Anthropic APIs.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=9999, help="port to listen on (default 9999)")
    parser.add_argument("--chunks", type=int, default=8, help="content pieces per streamed reply (default 8)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause between streamed pieces (default 0)")
    parser.add_argument("--reply", default=DEFAULT_REPLY, help="the text every reply carries")
    args = parser.parse_args(argv)
    if args.chunks < 1 or args.delay_ms < 0 or not args.reply:
        parser.error("--chunks must be 1 or more, --delay-ms 0 or more, and --reply not empty")
    return args


async def serve(args: argparse.Namespace) -> None:
    """Listen until SIGINT or SIGTERM."""
    script = Script.build(args.reply, args.chunks, args.delay_ms)
    server = HTTPServer(make_app(script), xheaders=False)
    server.listen(args.port, args.host)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    print(f"mock provider listening on http://{args.host}:{args.port} "
          f"(OpenAI base URL http://{args.host}:{args.port}/v1, Anthropic base URL http://{args.host}:{args.port}; "
          f"{len(script.pieces)} chunks, {args.delay_ms:g} ms apart)", file=sys.stderr, flush=True)
    await stop.wait()
    server.stop()
    await server.close_all_connections()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        asyncio.run(serve(args))
    except OSError as exc:
        print(f"mock provider: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
