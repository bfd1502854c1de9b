"""OpenAI requests to Anthropic: golden files, refusals, malformed input, properties; and the fake upstream."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import anthropic
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from gateway.errors import InvalidRequest
from gateway.providers.anthropic_translate import DEFAULT_MAX_TOKENS, StreamTranslator, to_anthropic
from tests.fake_anthropic import FakeAnthropic

GOLDEN = Path(__file__).parent / "golden"


def golden(prefix: str) -> list[Any]:
    return [pytest.param(json.loads(p.read_text()), id=p.stem) for p in sorted(GOLDEN.glob(f"{prefix}_*.json"))]


def chat(**extra: Any) -> dict:
    return {"model": "claude-x", "messages": [{"role": "user", "content": "hi"}], **extra}


# --- golden files -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", golden("request"))
def test_request_translates_to_golden_anthropic_request(case: dict) -> None:
    original = copy.deepcopy(case["openai"])
    assert to_anthropic(case["openai"]) == case["anthropic"]
    assert case["openai"] == original  # the client's body is not modified


# --- requests: refusals, drops, malformed input --------------------------------------------------


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("n", 2),
        ("logprobs", True),
        ("top_logprobs", 3),
        ("logit_bias", {"50256": -100}),
        ("response_format", {"type": "json_object"}),
        ("response_format", {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}}),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("best_of", 2),
    ],
)
def test_parameter_anthropic_cannot_honour_is_refused_by_name(param: str, value: Any) -> None:
    with pytest.raises(InvalidRequest) as raised:
        to_anthropic(chat(**{param: value}))
    assert raised.value.param == param
    assert param in raised.value.message


def test_harmless_parameters_are_dropped() -> None:
    dropped = {
        "presence_penalty": 0.5, "frequency_penalty": 0.5, "seed": 1, "stream_options": {"include_usage": True},
        "service_tier": "auto", "store": True, "metadata": {"a": "b"}, "prompt_cache_key": "k",
        "verbosity": "low", "reasoning_effort": "high", "n": 1, "logprobs": False, "logit_bias": {},
        "modalities": ["text"], "parallel_tool_calls": True,
    }
    assert to_anthropic(chat(**dropped)) == {
        "model": "claude-x", "messages": [{"role": "user", "content": "hi"}], "max_tokens": DEFAULT_MAX_TOKENS
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("none", None, {"type": "none"}),
        ("required", None, {"type": "any"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", False, {"type": "none"}),
        (None, None, None),
    ],
)
def test_tool_choice_maps_to_anthropic(choice: Any, parallel: Any, expected: dict | None) -> None:
    body = chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice=choice, parallel_tool_calls=parallel)
    assert to_anthropic(body).get("tool_choice") == expected


def test_safety_identifier_becomes_user_id_when_user_is_absent() -> None:
    assert to_anthropic(chat(safety_identifier="s-1"))["metadata"] == {"user_id": "s-1"}


def test_tool_choice_without_tools() -> None:
    assert "tool_choice" not in to_anthropic(chat(tool_choice="none"))
    with pytest.raises(InvalidRequest) as raised:
        to_anthropic(chat(tool_choice="required"))
    assert raised.value.param == "tool_choice"


def _user(content: Any) -> dict:
    return chat(messages=[{"role": "user", "content": content}])


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        (chat(messages=[]), "messages"),
        (chat(messages="hi"), "messages"),
        (chat(messages=[{"role": "system", "content": "only system"}]), "messages"),
        (chat(messages=["hi"]), "messages[0]"),
        (chat(messages=[{"content": "x"}]), "messages[0].role"),
        (chat(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role"),
        (chat(messages=[{"role": "function", "name": "f", "content": "x"}]), "messages[0].role"),
        (_user(42), "messages[0].content"),
        (_user(None), "messages[0].content"),
        (_user([]), "messages[0].content"),
        (_user(["text"]), "messages[0].content[0]"),
        (_user([{"type": "text", "text": 5}]), "messages[0].content[0]"),
        (_user([{"type": "image_url"}]), "messages[0].content[0].image_url.url"),
        (_user([{"type": "image_url", "image_url": "https://x/y.png"}]), "messages[0].content[0].image_url.url"),
        (_user([{"type": "image_url", "image_url": {"url": "data:image/png,abc"}}]), "messages[0].content[0].image_url.url"),
        (_user([{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]), "messages[0].content[0].image_url.url"),
        (_user([{"type": "input_audio", "input_audio": {}}]), "messages[0].content[0].type"),
        (_user([{"type": "file", "file": {}}]), "messages[0].content[0].type"),
        (chat(messages=[{"role": "system", "content": [{"type": "image_url"}]}, {"role": "user", "content": "x"}]),
         "messages[0].content[0]"),
        (chat(messages=[{"role": "user", "content": "x"}, {"role": "assistant"}]), "messages[1].content"),
        (chat(messages=[{"role": "assistant", "content": 3}]), "messages[0].content"),
        (chat(messages=[{"role": "assistant", "content": "x", "tool_calls": {}}]), "messages[0].tool_calls"),
        (chat(messages=[{"role": "assistant", "tool_calls": ["x"]}]), "messages[0].tool_calls[0]"),
        (chat(messages=[{"role": "assistant", "tool_calls": [{"function": {"name": "f"}}]}]), "messages[0].tool_calls[0].id"),
        (chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {}}]}]),
         "messages[0].tool_calls[0].function.name"),
        (chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "{oops"}}]}]),
         "messages[0].tool_calls[0].function.arguments"),
        (chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": "[1]"}}]}]),
         "messages[0].tool_calls[0].function.arguments"),
        (chat(messages=[{"role": "assistant", "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {}}}]}]),
         "messages[0].tool_calls[0].function.arguments"),
        (chat(messages=[{"role": "tool", "content": "x"}]), "messages[0].tool_call_id"),
        (chat(messages=[{"role": "tool", "tool_call_id": "c", "content": None}]), "messages[0].content"),
        (chat(tools={"type": "function"}), "tools"),
        (chat(tools=["f"]), "tools[0].type"),
        (chat(tools=[{"type": "custom", "custom": {"name": "f"}}]), "tools[0].type"),
        (chat(tools=[{"type": "function", "function": {"description": "no name"}}]), "tools[0].function.name"),
        (chat(tools=[{"type": "function", "function": {"name": "f", "parameters": []}}]), "tools[0].function.parameters"),
        (chat(tools=[{"type": "function", "function": {"name": "f", "description": 1}}]), "tools[0].function.description"),
        (chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice="sometimes"), "tool_choice"),
        (chat(tools=[{"type": "function", "function": {"name": "f"}}], tool_choice={"type": "function"}), "tool_choice"),
        (chat(parallel_tool_calls="no"), "parallel_tool_calls"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(max_tokens="10"), "max_tokens"),
        (chat(max_completion_tokens=True), "max_completion_tokens"),
        (chat(temperature="hot"), "temperature"),
        (chat(top_p=True), "top_p"),
        (chat(stop=["a", 1]), "stop"),
        (chat(stop=7), "stop"),
        (chat(user=7), "user"),
        (chat(stream="yes"), "stream"),
    ],
)
def test_malformed_request_is_invalid_request_naming_the_field(body: Any, param: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        to_anthropic(body)
    assert raised.value.param == param


def test_body_that_is_not_an_object_is_invalid_request() -> None:
    with pytest.raises(InvalidRequest):
        to_anthropic(["not", "a", "dict"])  # type: ignore[arg-type]


# --- properties ---------------------------------------------------------------------------------

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=8,
)


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    """The strategy's values, one time in five any JSON value instead."""
    # Not st.one_of: it flattens json_values' own branches and junk would win most draws.
    return st.integers(0, 4).flatmap(lambda k: json_values if k == 0 else strategy)


# Well-formed OpenAI requests: every one of them must translate.
texts = st.text(max_size=6)
text_parts = st.builds(lambda t: {"type": "text", "text": t}, texts)
image_parts = st.builds(
    lambda url: {"type": "image_url", "image_url": {"url": url}},
    st.sampled_from(["data:image/png;base64,AAAA", "data:image/jpeg;base64,", "https://x/y.png", "http://x/z.gif"]),
)
names = st.text(min_size=1, max_size=4)
valid_calls = st.builds(
    lambda i, name, args: {"id": i, "type": "function", "function": {"name": name, "arguments": json.dumps(args)}},
    names, names, st.dictionaries(st.text(max_size=3), json_values, max_size=2),
)
text_contents = texts | st.lists(text_parts, min_size=1, max_size=2)
valid_messages = st.one_of(
    st.fixed_dictionaries({"role": st.sampled_from(["system", "developer"]), "content": text_contents}),
    st.fixed_dictionaries({"role": st.just("user"), "content": texts | st.lists(text_parts | image_parts, min_size=1, max_size=3)}),
    st.fixed_dictionaries({"role": st.just("assistant"), "content": text_contents}),
    st.fixed_dictionaries(
        {"role": st.just("assistant"), "content": st.none() | texts, "tool_calls": st.lists(valid_calls, min_size=1, max_size=2)}
    ),
    st.fixed_dictionaries({"role": st.just("tool"), "tool_call_id": names, "content": text_contents}),
)
valid_tools = st.builds(
    lambda name, params: {"type": "function", "function": {"name": name, **({"parameters": params} if params else {})}},
    st.text(min_size=1, max_size=4), st.none() | st.just({"type": "object", "properties": {"a": {"type": "string"}}}),
)
valid_requests = st.fixed_dictionaries(
    {
        "model": st.text(min_size=1, max_size=8),
        "messages": st.lists(valid_messages, max_size=6).map(lambda m: [*m, {"role": "user", "content": "go"}]),
    },
    optional={
        "max_tokens": st.integers(1, 10**6), "max_completion_tokens": st.integers(1, 10**6),
        "temperature": st.floats(0, 2), "top_p": st.floats(0, 1), "stop": texts | st.lists(texts, max_size=4),
        "user": texts, "stream": st.booleans(), "stream_options": st.just({"include_usage": True}),
        "tools": st.lists(valid_tools, min_size=1, max_size=3), "tool_choice": st.sampled_from(["auto", "none"]),
        "parallel_tool_calls": st.booleans(), "n": st.just(1), "seed": st.integers(), "presence_penalty": st.floats(-2, 2),
    },
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(valid_requests)
def test_every_well_formed_request_translates(body: dict) -> None:
    out = to_anthropic(body)
    json.dumps(out)
    roles = [m["role"] for m in out["messages"]]
    assert all(a != b for a, b in zip(roles, roles[1:]))  # turns alternate
    blocks = [b for m in out["messages"] if isinstance(m["content"], list) for b in m["content"]]
    assert sum(b["type"] == "tool_result" for b in blocks) == sum(m["role"] == "tool" for m in body["messages"])
    assert sum(b["type"] == "tool_use" for b in blocks) == sum(len(m.get("tool_calls", [])) for m in body["messages"])


# Near-valid requests: the same shapes with junk in some places.
urls = st.sampled_from(
    ["data:image/png;base64,AAAA", "data:;base64,AA", "data:image/png,AA", "data:", "https://x/y.png", "ftp://x", ""]
)
parts = st.fixed_dictionaries(
    {"type": maybe(st.sampled_from(["text", "image_url", "input_audio", "refusal"]))},
    optional={"text": maybe(st.text(max_size=5)), "image_url": maybe(st.fixed_dictionaries({}, optional={"url": maybe(urls)}))},
)
contents = maybe(st.text(max_size=5) | st.lists(parts, max_size=3))
calls = st.fixed_dictionaries(
    {},
    optional={
        "id": maybe(st.text(max_size=4)),
        "type": maybe(st.just("function")),
        "function": maybe(st.fixed_dictionaries({}, optional={
            "name": maybe(st.text(max_size=4)),
            "arguments": maybe(st.sampled_from(['{"a": 1}', "", "[1]", "{", "null"]) | st.text(max_size=4)),
        })),
    },
)
messages = st.fixed_dictionaries(
    {"role": maybe(st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]))},
    optional={"content": contents, "tool_calls": maybe(st.lists(calls, max_size=2)), "tool_call_id": maybe(st.text(max_size=3))},
)
tools = st.fixed_dictionaries(
    {"type": maybe(st.just("function"))},
    optional={"function": maybe(st.fixed_dictionaries({}, optional={
        "name": maybe(st.text(max_size=4)), "parameters": maybe(st.just({"type": "object"})),
        "description": maybe(st.text(max_size=4)),
    }))},
)
near_valid_requests = st.fixed_dictionaries(
    {"model": maybe(st.just("claude-x")), "messages": maybe(st.lists(messages, max_size=5))},
    optional={
        "max_tokens": maybe(st.integers(-1, 10)), "max_completion_tokens": maybe(st.integers(1, 9)),
        "temperature": maybe(st.floats(0, 2)), "top_p": maybe(st.floats(0, 1)),
        "stop": maybe(st.lists(st.text(max_size=3), max_size=2)), "user": maybe(st.text(max_size=3)),
        "stream": maybe(st.booleans()), "tools": maybe(st.lists(tools, max_size=2)),
        "parallel_tool_calls": maybe(st.booleans()),
        "tool_choice": maybe(st.sampled_from(["auto", "none", "required", {"type": "function", "function": {"name": "f"}}])),
        "n": maybe(st.just(1)), "logprobs": maybe(st.just(False)), "logit_bias": maybe(st.just({})),
        "response_format": maybe(st.just({"type": "text"})), "modalities": maybe(st.just(["text"])),
        "seed": json_values, "stream_options": json_values,
    },
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(valid_requests, near_valid_requests, json_values, st.dictionaries(st.text(max_size=8), json_values)))
def test_any_request_translates_or_is_invalid_request(body: Any) -> None:
    try:
        out = to_anthropic(body)
    except InvalidRequest as error:
        assert error.param is None or isinstance(error.param, str)
        return
    json.dumps(out)
    roles = [m["role"] for m in out["messages"]]
    assert all(r in ("user", "assistant") for r in roles)
    assert all(a != b for a, b in zip(roles, roles[1:]))  # turns alternate


# --- the fake upstream speaks Anthropic's wire format ------------------------------------------


@pytest.fixture
def fake_anthropic(io_loop):  # type: ignore[no-untyped-def]
    fake = FakeAnthropic()
    yield fake
    io_loop.run_sync(fake.close)


async def test_official_sdk_talks_to_the_fake_anthropic(fake_anthropic: FakeAnthropic) -> None:
    client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=fake_anthropic.base_url, max_retries=0)
    message = await client.messages.create(
        model="claude-echo", max_tokens=20, messages=[{"role": "user", "content": "hello there"}]
    )
    assert message.content[0].text == "hello there" and message.stop_reason == "end_turn"
    async with client.messages.stream(
        model="claude-tool", max_tokens=20, messages=[{"role": "user", "content": "weather?"}],
        tools=[{"name": "get_weather", "input_schema": {"type": "object"}}],
    ) as stream:
        final = await stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].name == "get_weather" and final.content[0].input == {"location": "Paris", "unit": "celsius"}
    async with client.messages.stream(
        model="claude-cache", max_tokens=20, messages=[{"role": "user", "content": "one two three"}]
    ) as stream:
        text = "".join([piece async for piece in stream.text_stream])
        final = await stream.get_final_message()
    assert text == "one two three"
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (1500, 200)
    with pytest.raises(anthropic.APIStatusError) as raised:
        await client.messages.create(model="claude-error-529", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert raised.value.status_code == 529 and raised.value.body["error"]["type"] == "overloaded_error"
    counted = await client.messages.count_tokens(model="claude-echo", messages=[{"role": "user", "content": "a b"}])
    assert counted.input_tokens == 2
    assert [m.id async for m in client.models.list()][0] == "claude-echo"
    assert fake_anthropic.log[0]["path"] == "/v1/messages"
    headers = fake_anthropic.log[0]["headers"]
    assert "sk-ant-test" in headers.get("x-api-key", headers.get("authorization", ""))  # SDKs send one or the other
    assert fake_anthropic.log[0]["body"]["messages"] == [{"role": "user", "content": "hello there"}]


async def test_fake_stream_translates_to_openai_chunks(fake_anthropic: FakeAnthropic) -> None:
    from gateway.sse import Decoder  # the gateway's own SSE decoder

    decoder, translator, chunks = Decoder(), StreamTranslator(model="alias", include_usage=True, created=9), []

    def on_bytes(data: bytes) -> None:
        for event in decoder.feed(data):
            chunks.extend(translator.feed(event.event or "", json.loads(event.data)))

    body = to_anthropic(chat(model="claude-tool", stream=True, tools=[{"type": "function", "function": {"name": "f"}}]))
    request = HTTPRequest(
        fake_anthropic.base_url + "/v1/messages", method="POST", body=json.dumps(body), streaming_callback=on_bytes,
        headers={"x-api-key": "k", "anthropic-version": "2023-06-01", "content-type": "application/json"},
    )
    await AsyncHTTPClient().fetch(request)
    assert translator.finished
    reply = translator.assembled()
    assert reply["choices"][0]["finish_reason"] == "tool_calls"
    assert json.loads(reply["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]) == {
        "location": "Paris", "unit": "celsius"
    }
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 24
