"""Config reload (SIGHUP and POST /admin/reload): new keys at once, bad files refused, in-flight requests unharmed."""

from __future__ import annotations

import asyncio
import json
import signal

from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import PROVIDER_KEY, VK_OPENAI, base_url, write_keys


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


async def test_sighup_reloads_a_running_process_without_dropping_a_request(start_gateway_process, fake_openai,
                                                                              tmp_path):
    keys = write_keys(tmp_path / "keys.json", fake_openai.base_url, "http://127.0.0.1:9")
    process = await start_gateway_process(keys, tmp_path / "gateway.db", fake_openai.base_url)

    async def chat_on(key: str, model: str = "gpt-4o-mini", stream: bool = False):  # type: ignore[no-untyped-def]
        return await AsyncHTTPClient().fetch(HTTPRequest(
            f"http://127.0.0.1:{process.port}/v1/chat/completions", method="POST",
            headers={"Authorization": f"Bearer {key}"}, request_timeout=10,
            body=json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "x"}]})),
            raise_error=False)

    in_flight = asyncio.ensure_future(chat_on(VK_OPENAI, "slow-stream", stream=True))
    while fake_openai.state.open_streams == 0:
        await asyncio.sleep(0.01)
    keys.write_text(json.dumps({"virtual_keys": {
        "vk_after_hangup": {"name": "after", "provider": "openai", "api_key": PROVIDER_KEY}}}))
    mark = len(process.lines)
    process.process.send_signal(signal.SIGHUP)
    await process.wait_for_line("keys reloaded: 1 virtual keys", after=mark)
    assert (await chat_on("vk_after_hangup")).code == 200
    assert (await chat_on(VK_OPENAI)).code == 401  # removed: revoked at once
    finished = await in_flight  # ... while the stream it had started finishes on it
    assert finished.code == 200 and finished.body.endswith(b"data: [DONE]\n\n")

    keys.write_text('{"virtual_keys": {"vk_broken": {"provider": "nope", "api_key": "%s"}}}' % PROVIDER_KEY)
    mark = len(process.lines)
    process.process.send_signal(signal.SIGHUP)
    refusal = await process.wait_for_line("keys not reloaded", after=mark)
    assert "old keys keep serving" in refusal
    assert (await chat_on("vk_after_hangup")).code == 200

    assert await process.stop(signal.SIGTERM) == 0
    assert PROVIDER_KEY not in "".join(process.lines)
