"""Anthropic behind the unified endpoint (openai SDK) and natively on /v1/messages (anthropic SDK)."""

from __future__ import annotations

import json
import re

import anthropic
import openai
import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from tests.conftest import ANTHROPIC_PROVIDER_KEY, VK_ANTHROPIC, VK_OPENAI, base_url
from tests.fake_anthropic import CACHE_CREATION, CACHE_READ, TOOL_INPUT, FakeAnthropic

WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {"location": {"type": "string"}}, "required": ["location"]}}}


@pytest.fixture
def fake_anthropic(io_loop) -> FakeAnthropic:  # type: ignore[no-untyped-def]
    fake = FakeAnthropic()
    yield fake
    io_loop.run_sync(fake.close)


@pytest.fixture
def gw(io_loop, start_gateway, fake_anthropic):  # type: ignore[no-untyped-def]
    return io_loop.run_sync(lambda: start_gateway(anthropic_base=fake_anthropic.base_url))


def oa(gateway) -> openai.AsyncOpenAI:  # type: ignore[no-untyped-def]
    return openai.AsyncOpenAI(api_key=VK_ANTHROPIC, base_url=base_url(gateway), max_retries=0, timeout=10)


async def test_text_reply_with_system_prompt_and_usage(gw, fake_anthropic):
    client = oa(gw)
    reply = await client.chat.completions.create(model="claude-echo", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "second"}], stop=["END"], user="u-42", temperature=0.5)
    assert reply.object == "chat.completion"
    assert reply.choices[0].message.role == "assistant"
    assert "second" in reply.choices[0].message.content
    assert reply.choices[0].finish_reason == "stop"
    assert reply.usage.total_tokens == reply.usage.prompt_tokens + reply.usage.completion_tokens > 0
    sent = fake_anthropic.log[-1]
    assert sent["path"] == "/v1/messages"
    assert sent["headers"]["x-api-key"] == ANTHROPIC_PROVIDER_KEY
    assert sent["headers"]["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent["headers"]
    body = sent["body"]
    assert body["system"] == "Be brief.\n\nBe kind."
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["max_tokens"] == 4096 and body["stop_sequences"] == ["END"]
    assert body["metadata"] == {"user_id": "u-42"} and body["temperature"] == 0.5
    await client.close()


async def test_image_part_becomes_base64_source(gw, fake_anthropic):
    client = oa(gw)
    await client.chat.completions.create(model="claude-echo", messages=[{"role": "user", "content": [
        {"type": "text", "text": "what is this"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}]}])
    content = fake_anthropic.log[-1]["body"]["messages"][0]["content"]
    assert content[1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    await client.close()


async def test_tool_call_round_trip(gw, fake_anthropic):
    client = oa(gw)
    first = await client.chat.completions.create(model="claude-tool", tools=[WEATHER_TOOL], tool_choice="required",
                                                 messages=[{"role": "user", "content": "Weather in Paris?"}])
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == TOOL_INPUT
    sent = fake_anthropic.log[-1]["body"]
    assert sent["tools"][0]["input_schema"]["required"] == ["location"]
    assert sent["tool_choice"] == {"type": "any"}
    await client.chat.completions.create(model="claude-echo", tools=[WEATHER_TOOL], messages=[
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "18C and sunny"}])
    turns = fake_anthropic.log[-1]["body"]["messages"]
    assert turns[1]["content"][0] == {"type": "tool_use", "id": call.id, "name": "get_weather", "input": TOOL_INPUT}
    assert turns[2] == {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "18C and sunny"}]}
    await client.close()


@pytest.mark.parametrize("model, finish", [("claude-echo", "stop"), ("claude-stopseq", "stop"),
                                           ("claude-maxtokens", "length"), ("claude-tool", "tool_calls")])
async def test_each_stop_reason_maps(gw, model, finish):
    client = oa(gw)
    reply = await client.chat.completions.create(model=model, tools=[WEATHER_TOOL],
                                                 messages=[{"role": "user", "content": "go"}])
    assert reply.choices[0].finish_reason == finish
    await client.close()


async def test_cache_tokens_counted_in_prompt_and_detailed(gw):
    client = oa(gw)
    reply = await client.chat.completions.create(model="claude-cache", messages=[{"role": "user", "content": "x"}])
    assert reply.usage.prompt_tokens_details.cached_tokens == CACHE_READ
    assert reply.usage.prompt_tokens >= CACHE_READ + CACHE_CREATION
    await client.close()


async def test_stream_text_assembles_and_usage_chunk_when_asked(gw):
    client = oa(gw)
    stream = await client.chat.completions.create(model="claude-echo", stream=True, stream_options={"include_usage": True},
                                                  messages=[{"role": "user", "content": "stream this please"}])
    text, finish, usage = "", None, None
    async for chunk in stream:
        if chunk.usage:
            usage = chunk.usage
        for choice in chunk.choices:
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
    assert "stream this please" in text and finish == "stop"
    assert usage is not None and usage.completion_tokens > 0
    await client.close()


async def test_stream_tool_arguments_assemble(gw):
    client = oa(gw)
    stream = await client.chat.completions.create(model="claude-tool", stream=True, tools=[WEATHER_TOOL],
                                                  messages=[{"role": "user", "content": "weather"}])
    arguments, name, fragments = "", None, 0
    async for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                name = name or call.function.name
                if call.function.arguments:
                    fragments += 1
                    arguments += call.function.arguments
    assert name == "get_weather" and json.loads(arguments) == TOOL_INPUT
    assert fragments > 1  # relayed as they came, not buffered into one
    await client.close()


@pytest.mark.parametrize("status, error_type", [(400, "invalid_request_error"), (401, "authentication_error"),
                                                (403, "permission_error"), (404, "not_found_error"),
                                                (413, "request_too_large"), (429, "rate_limit_error"),
                                                (500, "api_error"), (529, "overloaded_error")])
async def test_anthropic_errors_keep_status_in_openai_shape(gw, status, error_type):
    response = await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gw) + "/chat/completions", method="POST", headers={"Authorization": f"Bearer {VK_ANTHROPIC}"},
        body=json.dumps({"model": f"claude-error-{status}", "messages": [{"role": "user", "content": "x"}]})),
        raise_error=False)
    assert response.code == status
    error = json.loads(response.body)["error"]
    assert error["type"] == error_type and error["message"]
    if status == 429:
        assert response.headers["Retry-After"] == "3"


async def test_error_event_mid_stream_ends_with_openai_error_chunk(gw):
    client = oa(gw)
    stream = await client.chat.completions.create(model="claude-stream-error", stream=True,
                                                  messages=[{"role": "user", "content": "x"}])
    with pytest.raises(openai.APIError) as caught:
        async for _ in stream:
            pass
    assert "overloaded" in str(caught.value).lower()
    await client.close()


async def test_cut_stream_is_recorded_incomplete(gw):
    response = await AsyncHTTPClient().fetch(HTTPRequest(
        base_url(gw) + "/chat/completions", method="POST", headers={"Authorization": f"Bearer {VK_ANTHROPIC}"},
        body=json.dumps({"model": "claude-stream-cut", "stream": True, "messages": [{"role": "user", "content": "x"}]})))
    assert b'"error"' in response.body.split(b"\n\n")[-2]
    await gw.ctx.recorder.close()
    row = (await gw.ctx.store.recent(limit=1))[0]
    assert row.incomplete and row.status == 502 and row.prompt_tokens


async def test_unsupported_parameter_is_400_without_upstream_call(gw, fake_anthropic):
    client = oa(gw)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="claude-echo", n=2, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["param"] == "n"
    assert fake_anthropic.log == []
    await client.close()


def native(gateway, key: str = VK_ANTHROPIC) -> anthropic.AsyncAnthropic:  # type: ignore[no-untyped-def]
    return anthropic.AsyncAnthropic(api_key=key, base_url=base_url(gateway, ""), max_retries=0, timeout=10)


async def test_anthropic_sdk_messages_unchanged(gw, fake_anthropic):
    client = native(gw)
    message = await client.messages.create(model="claude-echo", max_tokens=100,
                                           messages=[{"role": "user", "content": "native hello"}],
                                           extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"})
    assert message.type == "message" and "native hello" in message.content[0].text
    sent = fake_anthropic.log[-1]
    assert sent["headers"]["x-api-key"] == ANTHROPIC_PROVIDER_KEY
    assert sent["headers"]["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert sent["body"] == {"model": "claude-echo", "max_tokens": 100,
                            "messages": [{"role": "user", "content": "native hello"}]}
    await client.close()


async def test_anthropic_sdk_stream_is_byte_faithful(gw, fake_anthropic):
    raw = json.dumps({"model": "claude-tool", "max_tokens": 50, "stream": True,
                      "messages": [{"role": "user", "content": "x"}]}).encode()
    headers = {"anthropic-version": "2023-06-01", "content-type": "application/json"}
    direct = await AsyncHTTPClient().fetch(HTTPRequest(fake_anthropic.base_url + "/v1/messages", method="POST",
                                                       body=raw, headers={**headers, "x-api-key": "k"}))
    through = await AsyncHTTPClient().fetch(HTTPRequest(base_url(gw) + "/messages", method="POST", body=raw,
                                                        headers={**headers, "x-api-key": VK_ANTHROPIC}))
    # The fake's ids differ per request; everything else must match byte for byte.
    def normalize(body: bytes) -> bytes:
        return re.sub(rb'"(msg|toolu|req)_[0-9A-Za-z]+"', b'"ID"', body)

    assert normalize(through.body) == normalize(direct.body)
    assert through.body.count(b"event: message_start") == 1
    client = native(gw)
    async with client.messages.stream(model="claude-echo", max_tokens=50,
                                      messages=[{"role": "user", "content": "streamed natively"}]) as stream:
        text = "".join([t async for t in stream.text_stream])
        final = await stream.get_final_message()
    assert "streamed natively" in text and final.usage.output_tokens > 0
    await client.close()


async def test_native_errors_in_anthropic_shape(gw):
    client = native(gw, key="vk_nobody_at_all")
    with pytest.raises(anthropic.AuthenticationError) as caught:
        await client.messages.create(model="claude-echo", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert caught.value.body["type"] == "error" and caught.value.body["error"]["type"] == "authentication_error"
    client = native(gw)
    with pytest.raises(anthropic.RateLimitError):
        await client.messages.create(model="claude-error-429", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    await client.close()


async def test_native_endpoint_refuses_openai_keys(gw):
    client = native(gw, key=VK_OPENAI)
    with pytest.raises(anthropic.BadRequestError) as caught:
        await client.messages.create(model="gpt-4o", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert "Anthropic" in caught.value.body["error"]["message"]
    await client.close()


async def test_count_tokens_passes_through(gw):
    client = native(gw)
    counted = await client.messages.count_tokens(model="claude-echo", messages=[{"role": "user", "content": "count me"}])
    assert counted.input_tokens > 0
    await client.close()


async def test_models_in_openai_format(gw):
    client = oa(gw)
    models = await client.models.list()
    assert models.data and all(m.object == "model" and m.owned_by == "anthropic" for m in models.data)
    await client.close()
