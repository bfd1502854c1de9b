"""POST /v1/chat/completions: OpenAI's format in, whichever provider the key maps to behind."""

from __future__ import annotations

from ..errors import InvalidRequest
from ..validation import CHAT, parse_json_object, validate
from .proxy import ProxyHandler


class ChatHandler(ProxyHandler):
    """The unified endpoint: authenticate, validate, admit, forward, relay."""

    endpoint = "chat"

    async def post(self) -> None:
        key = self.authenticate()
        raw = self.body()
        body = parse_json_object(raw)
        validate(CHAT, body)
        model = body["model"]
        self.record.model = model
        self.record.stream = stream = bool(body.get("stream"))
        key.check_model(model)
        provider = self.ctx.providers.get(key.provider)
        if provider is None:
            raise InvalidRequest(f"This key's provider {key.provider!r} does not serve chat completions.")
        request = provider.chat_request(key, body, raw, self.request.headers)
        self.admit(key)

        def read_reply(status, headers, reply_body):  # type: ignore[no-untyped-def]
            return provider.chat_reply(status, headers, reply_body, model)

        if stream:
            await self.relay_stream(request, provider.chat_stream(body), read_reply)
        else:
            await self.relay_reply(request, read_reply)
