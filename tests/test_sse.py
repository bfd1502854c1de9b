"""The SSE decoder: bytes split anywhere (inside a CRLF, inside a UTF-8 character) give the same events."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import sse

STREAM = (
    b'event: message_start\r\ndata: {"type": "message_start", "text": "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x98\x80"}\r\n\r\n'
    b": a comment\n\n"
    b"data: line one\ndata: line two\n\n"
    b'data: {"choices": [{"delta": {"content": "\xe4\xbd\xa0\xe5\xa5\xbd"}}]}\r\r'
    b"data: [DONE]\n\n"
)


def decode_in_pieces(data: bytes, cuts: list[int]) -> list[sse.Event]:
    decoder, events, start = sse.Decoder(), [], 0
    for cut in sorted(set(cuts)) + [len(data)]:
        events += decoder.feed(data[start:cut])
        start = cut
    assert decoder.pending == b""
    return events


def test_whole_stream_decodes_to_the_expected_events():
    events = decode_in_pieces(STREAM, [])
    assert [e.event for e in events] == ["message_start", None, None, None, None]
    assert events[0].data == '{"type": "message_start", "text": "héllo € 😀"}'
    assert events[2].data == "line one\nline two"
    assert events[3].data == '{"choices": [{"delta": {"content": "你好"}}]}'
    assert events[4].data == "[DONE]"
    assert b"".join(e.raw for e in events) == STREAM  # byte for byte, terminators included


def test_byte_by_byte_gives_the_same_events():
    whole = decode_in_pieces(STREAM, [])
    one_by_one = decode_in_pieces(STREAM, list(range(1, len(STREAM))))
    assert [(e.raw, e.event, e.data) for e in one_by_one] == [(e.raw, e.event, e.data) for e in whole]


@settings(max_examples=300)
@given(st.lists(st.integers(min_value=1, max_value=len(STREAM) - 1), max_size=30))
def test_any_split_gives_the_same_events(cuts):
    whole = decode_in_pieces(STREAM, [])
    assert [(e.raw, e.data) for e in decode_in_pieces(STREAM, cuts)] == [(e.raw, e.data) for e in whole]


def test_incomplete_event_stays_pending():
    decoder = sse.Decoder()
    assert decoder.feed(b"data: {\"partial\": ") == []
    assert decoder.pending == b"data: {\"partial\": "


def test_encode_matches_the_providers_framing():
    assert sse.encode("{}") == b"data: {}\n\n"
    assert sse.encode("{}", "error") == b"event: error\ndata: {}\n\n"
