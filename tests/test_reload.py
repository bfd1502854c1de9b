"""Config reload (POST /admin/reload, as SIGHUP): new keys at once, bad files refused, in-flight requests unharmed."""

from __future__ import annotations

import asyncio
import json

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import PROVIDER_KEY, VK_OPENAI, base_url


async def chat(gateway, key: str, model: str = "gpt-4o-mini", stream: bool = False):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway) + "/chat/completions", method="POST", headers={"Authorization": f"Bearer {key}"},
        body=json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})),
        raise_error=False)


async def reload(gateway, admin_key: str | None = None):  # type: ignore[no-untyped-def]
    return await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gateway, "/admin/reload"), method="POST", body=b"",
        headers={"Authorization": f"Bearer {admin_key or gateway.ctx.admin_key}"}), raise_error=False)


def rewrite(gateway, keys: dict) -> None:  # type: ignore[type-arg]
    gateway.ctx.config.keys_file.write_text(json.dumps({"virtual_keys": keys}))


async def test_reload_adds_and_revokes_keys_at_once(gateway, fake_openai):
    assert (await chat(gateway, VK_OPENAI)).code == 200
    rewrite(gateway, {"vk_brand_new_key": {"name": "new", "provider": "openai", "api_key": PROVIDER_KEY}})
    response = await reload(gateway)
    assert response.code == 200 and json.loads(response.body) == {"reloaded": True, "virtual_keys": 1}
    assert (await chat(gateway, "vk_brand_new_key")).code == 200
    assert (await chat(gateway, VK_OPENAI)).code == 401


async def test_invalid_file_is_refused_and_old_keys_keep_serving(gateway):
    gateway.ctx.config.keys_file.write_text('{"virtual_keys": {"vk_bad_entry": {"provider": "nope"}}}')
    response = await reload(gateway)
    assert response.code == 400
    assert "old keys keep serving" in json.loads(response.body)["error"]["message"]
    assert (await chat(gateway, VK_OPENAI)).code == 200


async def test_reload_needs_the_admin_key(gateway):
    assert (await reload(gateway, admin_key=VK_OPENAI)).code == 401
    assert (await reload(gateway, admin_key="wrong")).code == 401


async def test_in_flight_stream_finishes_on_the_old_key(gateway, fake_openai):
    in_flight = asyncio.ensure_future(chat(gateway, VK_OPENAI, "slow-stream", stream=True))
    while fake_openai.state.open_streams == 0:
        await asyncio.sleep(0.01)
    rewrite(gateway, {"vk_someone_else": {"provider": "openai", "api_key": PROVIDER_KEY}})
    assert (await reload(gateway)).code == 200
    assert (await chat(gateway, VK_OPENAI)).code == 401
    finished = await in_flight
    assert finished.code == 200 and finished.body.endswith(b"data: [DONE]\n\n")
