"""POST /v1/messages and /v1/messages/count_tokens: Anthropic's own format, passed through unchanged."""

from __future__ import annotations

from ..validation import COUNT_TOKENS, MESSAGES, parse_json_object, validate
from .proxy import ProxyHandler


class MessagesHandler(ProxyHandler):
    """Native Anthropic Messages for keys that map to Anthropic; errors in Anthropic's shape."""

    endpoint = "messages"
    family = "anthropic"
    schema = MESSAGES
    counts_against_quota = True

    async def post(self) -> None:
        key = self.authenticate()
        raw = self.body()
        body = parse_json_object(raw)
        validate(self.schema, body)
        model = body["model"]
        self.record.model = model
        self.record.stream = stream = body.get("stream") is True
        key.check_model(model)
        provider = self.ctx.providers[key.provider]
        request = provider.messages_request(key, self.request.path, raw, self.request.headers)
        if self.counts_against_quota:
            self.admit(key)
        if stream:
            await self.relay_stream(request, provider.messages_stream(), provider.messages_reply)
        else:
            await self.relay_reply(request, provider.messages_reply)


class CountTokensHandler(MessagesHandler):
    """Token counting is free at Anthropic, so it does not spend the key's quota."""

    endpoint = "count_tokens"
    schema = COUNT_TOKENS
    counts_against_quota = False
