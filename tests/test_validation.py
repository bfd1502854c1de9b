"""The quick check in front of jsonschema never passes a body that jsonschema would refuse."""

from __future__ import annotations

import timeit

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.validation import CHAT, COUNT_TOKENS, MESSAGES, Schema

scalars = st.one_of(st.none(), st.booleans(), st.integers(-3, 300), st.floats(-1, 3, allow_nan=False),
                    st.sampled_from(["", "user", "assistant", "system", "tool", "x" * 257, "gpt-4o-mini"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                       st.dictionaries(st.sampled_from(["role", "content", "type", "name"]), inner, max_size=3)),
                      max_leaves=8)
FIELDS = ["model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens", "temperature",
          "top_p", "n", "stop", "tools", "user", "include_usage"]
message = st.fixed_dictionaries({"role": st.one_of(st.sampled_from(["user", "assistant", "system", "bogus"]), values)},
                                optional={"content": values, "name": values, "tool_calls": values, "tool_call_id": values})
bodies = st.dictionaries(st.sampled_from(FIELDS), st.one_of(values, st.lists(message, max_size=3)), max_size=8)


def _agrees(schema: Schema, body: object) -> None:
    if schema.quick(body):
        assert schema.validator.is_valid(body), body


@settings(max_examples=1500, deadline=None)
@given(bodies)
def test_quick_check_never_passes_what_jsonschema_refuses(body):
    for schema in (CHAT, MESSAGES, COUNT_TOKENS):
        _agrees(schema, body)


def test_quick_check_passes_ordinary_requests():
    chat = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 64,
            "stream": True, "temperature": 0.5, "stop": ["x"], "tools": [{"type": "function"}]}
    assert CHAT.quick(chat) and CHAT.validator.is_valid(chat)
    native = {"model": "claude-haiku-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    assert MESSAGES.quick(native)
    assert not CHAT.quick({"model": "m", "messages": []})  # minItems: left to jsonschema, which refuses it
    assert not CHAT.quick({"model": "m", "messages": [{"role": "user"}], "max_tokens": 1.0})  # left to jsonschema


def test_unknown_keyword_disables_the_quick_check():
    schema = Schema({"type": "object", "properties": {"a": {"type": "string", "pattern": "^x"}}})
    assert not schema.quick({"a": "x"})


def test_quick_check_is_much_cheaper_than_jsonschema():
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 64}
    quick = timeit.timeit(lambda: CHAT.quick(body), number=500)
    full = timeit.timeit(lambda: CHAT.validator.is_valid(body), number=500)
    assert quick * 4 < full
