"""Bodies generated from the request schemas themselves: whatever a schema allows, the gateway accepts,
forwards unchanged, and translates or refuses by name, never crashes on."""

from __future__ import annotations

import copy
import json

from hypothesis import HealthCheck, given, settings
from tornado.httpclient import AsyncHTTPClient, HTTPRequest

from gateway.errors import InvalidRequest
from gateway.providers.anthropic_translate import to_anthropic
from gateway.validation import CHAT, COUNT_TOKENS, MESSAGES, parse_json_object, validate
from tests.conftest import VK_OPENAI
from tests.schema_strategies import from_schema

PLENTY = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _plain_chat_schema() -> dict:
    """The chat schema, narrowed to what the fake upstream answers plainly: its one ordinary model,
    no stream (streams are spliced, so not byte-identical by design)."""
    schema = copy.deepcopy(CHAT.validator.schema)
    schema["properties"]["model"] = {"const": "gpt-4o-mini"}
    schema["properties"]["stream"] = {"const": False}
    return schema


@PLENTY
@given(from_schema(CHAT.validator.schema))
def test_every_chat_body_the_schema_allows_is_accepted(body):
    assert CHAT.validator.is_valid(body)  # the strategy itself is right
    raw = json.dumps(body).encode()
    assert parse_json_object(raw) == body
    validate(CHAT, body)


@PLENTY
@given(from_schema(MESSAGES.validator.schema))
def test_every_messages_body_the_schema_allows_is_accepted(body):
    assert MESSAGES.validator.is_valid(body)
    validate(MESSAGES, parse_json_object(json.dumps(body, ensure_ascii=False).encode()))
    validate(COUNT_TOKENS, body)


@PLENTY
@given(from_schema(CHAT.validator.schema))
def test_every_valid_chat_body_translates_or_is_refused_by_name(body):
    try:
        translated = to_anthropic(body)
    except InvalidRequest as refusal:
        assert refusal.message
    else:
        assert translated["messages"] is not None and translated["max_tokens"] >= 1
        json.dumps(translated, ensure_ascii=False).encode()  # what we send is encodable


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(from_schema(_plain_chat_schema()))
def test_valid_bodies_reach_the_provider_byte_for_byte(io_loop, gateway, fake_openai, body):
    raw = json.dumps(body).encode()

    async def send() -> int:
        response = await AsyncHTTPClient().fetch(HTTPRequest(
            f"http://127.0.0.1:{gateway.port}/v1/chat/completions", method="POST", body=raw,
            headers={"Authorization": f"Bearer {VK_OPENAI}"}), raise_error=False)
        return response.code

    assert io_loop.run_sync(send) == 200
    assert fake_openai.received[-1].body == raw
