"""GET /v1/models: the key's allow-list if it has one, otherwise the provider's own list."""

from __future__ import annotations

from .proxy import ProxyHandler


class ModelsHandler(ProxyHandler):
    """Lists models in OpenAI's list format, whatever the provider."""

    endpoint = "models"

    async def get(self) -> None:
        key = self.authenticate()
        if key.models is not None:
            data = [{"id": model, "object": "model", "created": 0, "owned_by": key.provider} for model in sorted(key.models)]
            self.finish({"object": "list", "data": data})
            return
        provider = self.ctx.providers[key.provider]
        await self.relay_reply(provider.models_request(key), lambda status, headers, body: provider.models_reply(status, headers, body))
