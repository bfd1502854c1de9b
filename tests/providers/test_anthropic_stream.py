"""Anthropic replies in OpenAI's shapes: golden replies and streams, usage, errors, stream properties."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.errors import UpstreamUnavailable
from gateway.providers.anthropic_translate import (
    StreamTranslator,
    error_to_openai,
    from_anthropic,
    openai_usage,
    usage_from_anthropic,
)
from gateway.record import Usage

GOLDEN = Path(__file__).parent / "golden"


def golden(prefix: str) -> list[Any]:
    return [pytest.param(json.loads(p.read_text()), id=p.stem) for p in sorted(GOLDEN.glob(f"{prefix}_*.json"))]


# --- golden files -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", golden("reply"))
def test_reply_translates_to_golden_openai_reply(case: dict) -> None:
    assert from_anthropic(case["anthropic"], created=case["created"]) == case["openai"]


@pytest.mark.parametrize("case", golden("stream"))
def test_stream_translates_each_event_to_golden_chunks(case: dict) -> None:
    translator = StreamTranslator(model=case["model"], include_usage=case["include_usage"], created=case["created"])
    for (event, data), expected in zip(case["events"], case["chunks"], strict=True):
        assert translator.feed(event, data) == expected, event
    assert translator.finished is case["finished"]
    assert translator.error == case["error"]
    assert translator.assembled() == case["assembled"]


# --- usage and errors ---------------------------------------------------------------------------


def test_usage_counts_cache_reads_and_writes_as_prompt_tokens() -> None:
    usage = usage_from_anthropic(
        {"input_tokens": 5, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 20, "output_tokens": 7}
    )
    assert usage == Usage(prompt_tokens=125, completion_tokens=7, cached_tokens=100, cache_write_tokens=20)
    assert openai_usage(usage) == {
        "prompt_tokens": 125, "completion_tokens": 7, "total_tokens": 132, "prompt_tokens_details": {"cached_tokens": 100}
    }


def test_usage_tolerates_missing_and_null_fields() -> None:
    assert usage_from_anthropic({"input_tokens": 3, "cache_read_input_tokens": None}) == Usage(prompt_tokens=3)


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [(529, "overloaded_error", "overloaded"), (429, "rate_limit_error", "rate_limit_exceeded"),
     (400, "invalid_request_error", None), (401, "authentication_error", "invalid_api_key")],
)
def test_anthropic_error_keeps_message_and_type(status: int, kind: str, code: str | None) -> None:
    body = json.dumps({"type": "error", "error": {"type": kind, "message": "It went wrong."}, "request_id": "req_1"})
    assert error_to_openai(status, body.encode()) == {
        "error": {"message": "It went wrong.", "type": kind, "code": code, "param": None}
    }


def test_error_body_that_is_not_json_is_summarised_briefly() -> None:
    body = b"<html><body>" + b"Bad gateway " * 100 + b"</body></html>"
    error = error_to_openai(502, body)["error"]
    assert error["type"] == "api_error" and error["param"] is None
    assert error["message"].startswith("Anthropic answered HTTP 502: <html><body>Bad gateway")
    assert len(error["message"]) <= 240


@pytest.mark.parametrize(
    ("status", "kind"), [(529, "overloaded_error"), (413, "request_too_large"), (418, "invalid_request_error")]
)
def test_error_without_anthropic_shape_takes_its_type_from_the_status(status: int, kind: str) -> None:
    assert error_to_openai(status, b'{"message": "nope"}')["error"]["type"] == kind
    assert error_to_openai(status, b"")["error"]["message"] == f"Anthropic answered HTTP {status}."


def test_reply_that_is_not_a_message_is_upstream_unavailable() -> None:
    with pytest.raises(UpstreamUnavailable):
        from_anthropic({"type": "error"}, created=0)


# --- streams ------------------------------------------------------------------------------------


def _start(msg_id: str = "msg_1", **usage: int) -> tuple[str, dict]:
    return "message_start", {"type": "message_start", "message": {"id": msg_id, "usage": usage}}


def _text(text: str, index: int = 0) -> tuple[str, dict]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def test_stream_cut_midway_still_reports_usage_and_partial_text() -> None:
    translator = StreamTranslator(model="m", include_usage=True, created=1)
    for event, data in [_start(input_tokens=30, cache_read_input_tokens=4, output_tokens=1), _text("Hal")]:
        translator.feed(event, data)
    assert translator.usage == Usage(prompt_tokens=34, completion_tokens=1, cached_tokens=4)
    assert not translator.finished and translator.error is None
    reply = translator.assembled()
    assert reply["choices"][0]["message"]["content"] == "Hal"
    assert reply["choices"][0]["finish_reason"] is None


def test_message_delta_usage_overwrites_cumulative_counts() -> None:
    translator = StreamTranslator(model="m", include_usage=False, created=1)
    translator.feed(*_start(input_tokens=10, output_tokens=1))
    translator.feed("message_delta", {"delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 9, "input_tokens": 12}})
    assert translator.usage == Usage(prompt_tokens=12, completion_tokens=9)


def test_stream_without_message_start_still_opens_with_the_role() -> None:
    translator = StreamTranslator(model="m", include_usage=False, created=1)
    chunks = translator.feed(*_text("x"))
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "x"}]


def test_events_after_message_stop_are_ignored() -> None:
    translator = StreamTranslator(model="m", include_usage=True, created=1)
    translator.feed(*_start())
    translator.feed("message_stop", {"type": "message_stop"})
    assert translator.finished and translator.ended
    assert translator.feed(*_text("late")) == []


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


indexes = maybe(st.integers(0, 3))
event_payloads = st.one_of(
    st.builds(lambda i, u: ("message_start", {"message": {"id": i, "usage": u}}), maybe(st.just("msg_x")),
              maybe(st.fixed_dictionaries({}, optional={"input_tokens": json_values, "output_tokens": json_values}))),
    st.builds(lambda i, b: ("content_block_start", {"index": i, "content_block": b}), indexes, maybe(st.one_of(
        st.just({"type": "text", "text": ""}), st.builds(lambda t: {"type": "text", "text": t}, st.text(max_size=3)),
        st.just({"type": "tool_use", "id": "toolu", "name": "f", "input": {}}), st.just({"type": "thinking"}),
    ))),
    st.builds(lambda i, d: ("content_block_delta", {"index": i, "delta": d}), indexes, maybe(st.one_of(
        st.builds(lambda t: {"type": "text_delta", "text": t}, maybe(st.text(max_size=4))),
        st.builds(lambda t: {"type": "input_json_delta", "partial_json": t}, maybe(st.text(max_size=4))),
        st.builds(lambda t: {"type": "thinking_delta", "thinking": t}, st.text(max_size=4)),
    ))),
    st.builds(lambda i: ("content_block_stop", {"index": i}), indexes),
    st.builds(lambda r, u: ("message_delta", {"delta": {"stop_reason": r}, "usage": u}),
              maybe(st.sampled_from(["end_turn", "tool_use", "max_tokens", "refusal", "weird"])),
              maybe(st.fixed_dictionaries({}, optional={"output_tokens": json_values}))),
    st.just(("message_stop", {})),
    st.just(("ping", {})),
    st.builds(lambda e: ("error", {"error": e}), json_values),
    st.tuples(st.text(max_size=12), json_values),
)


@settings(max_examples=400, deadline=None)
@given(st.lists(event_payloads, max_size=25), st.booleans())
def test_stream_translator_never_raises_and_assembles_what_it_streamed(events: list, include_usage: bool) -> None:
    translator = StreamTranslator(model="m", include_usage=include_usage, created=5)
    chunks = [chunk for event, data in events for chunk in translator.feed(event, data)]
    json.dumps(chunks)
    reply = translator.assembled()
    json.dumps(reply)
    streamed = [c for c in chunks if c.get("choices")]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in streamed)
    assert (reply["choices"][0]["message"]["content"] or "") == text
    arguments: dict[int, str] = {}
    for chunk in streamed:
        for call in chunk["choices"][0]["delta"].get("tool_calls", []):
            arguments[call["index"]] = arguments.get(call["index"], "") + call["function"]["arguments"]
    assembled_calls = reply["choices"][0]["message"].get("tool_calls", [])
    assert [c["function"]["arguments"] for c in assembled_calls] == [arguments[i] for i in range(len(arguments))]
    assert len({(c.get("id"), c.get("model"), c.get("created")) for c in chunks if "error" not in c}) <= 1
    assert isinstance(translator.usage, Usage)
