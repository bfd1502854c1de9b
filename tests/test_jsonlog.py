"""The JSON-lines sink and the flat record form it shares with the store."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from gateway.jsonlog import FIELDS, MAX_BODY_BYTES, JsonLogSink, interaction_to_dict, iso_utc, truncate_body
from gateway.record import Interaction, Usage

pytestmark = pytest.mark.usefixtures("io_loop")


def make(**fields) -> Interaction:  # type: ignore[no-untyped-def]
    base = dict(method="POST", path="/v1/chat/completions", endpoint="chat", key_name="alice",
                provider="openai", model="gpt-4o", status=200, duration_ms=12.5, ts=1_767_225_600.5,
                usage=Usage(100, 20, cached_tokens=10), cost_usd=0.0004, request='{"a": 1}', response='{"b": 2}')
    base.update(fields)
    return Interaction(**base)


class CountingStream(io.StringIO):
    """A text stream that counts write() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_iso_utc_is_millisecond_zulu_and_never_rounds_up() -> None:
    assert iso_utc(1_767_225_600.0) == "2026-01-01T00:00:00.000Z"
    assert iso_utc(1_767_225_600.1239) == "2026-01-01T00:00:00.123Z"
    assert iso_utc(1_767_225_659.99999) == "2026-01-01T00:00:59.999Z"


def test_truncate_body_keeps_small_bodies_and_wraps_big_ones_as_json() -> None:
    assert truncate_body(None) == (None, False)
    assert truncate_body('{"a": 1}') == ('{"a": 1}', False)
    exact = "x" * MAX_BODY_BYTES
    assert truncate_body(exact) == (exact, False)
    text, cut = truncate_body(exact + "y")
    assert cut and json.loads(text) == {"truncated": True, "original_bytes": MAX_BODY_BYTES + 1, "head": exact}


def test_truncate_body_cuts_utf8_on_a_character_boundary() -> None:
    body = "€" * 30_000  # 3 bytes each: 90,000 bytes
    text, cut = truncate_body(body)
    head = json.loads(text)["head"]
    assert cut and set(head) == {"€"} and len(head.encode()) == (MAX_BODY_BYTES // 3) * 3
    text, cut = truncate_body("é\ud800" * 40_000)  # a lone surrogate must not break the cut
    assert cut and json.loads(text)["original_bytes"] == 40_000 * 5


def test_interaction_to_dict_uses_the_column_names() -> None:
    flat = interaction_to_dict(make(id="r1", stream=True, error_message="e" * 20_000))
    assert tuple(flat) == FIELDS
    assert flat["id"] == "r1" and flat["ts"] == "2026-01-01T00:00:00.500Z" and flat["key"] == "alice"
    assert (flat["prompt_tokens"], flat["completion_tokens"], flat["total_tokens"], flat["cached_tokens"],
            flat["cache_write_tokens"]) == (100, 20, 120, 10, 0)
    assert flat["stream"] is True and flat["truncated"] is False and len(flat["error_message"]) == 8192
    assert interaction_to_dict(make(usage=None))["prompt_tokens"] is None


async def test_file_sink_appends_one_line_per_record(tmp_path: Path) -> None:
    path = tmp_path / "gateway.log"
    sink = JsonLogSink(path=str(path))
    await sink.write_batch([make(id="a"), make(id="b", request="bad \ud800 surrogate")])
    await sink.write_batch([make(id="c", response="z" * (MAX_BODY_BYTES + 10))])
    await sink.close()
    sink = JsonLogSink(path=str(path))  # reopened: appends
    await sink.write_batch([make(id="d")])
    await sink.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", "c", "d"]
    assert all(tuple(line) == ("timestamp", *FIELDS) for line in lines)
    assert all(line["timestamp"] == line["ts"] for line in lines)
    assert lines[0]["ts"] == "2026-01-01T00:00:00.500Z" and lines[0]["model"] == "gpt-4o"
    assert lines[0]["status"] == 200 and lines[0]["duration_ms"] == 12.5 and lines[0]["request"] == '{"a": 1}'
    assert lines[1]["request"] == "bad \ud800 surrogate"  # escaped as \\ud800 on disk, not an encoding error
    assert lines[2]["truncated"] is True and json.loads(lines[2]["response"])["truncated"] is True


async def test_stream_sink_writes_each_batch_in_one_call() -> None:
    stream = CountingStream()
    sink = JsonLogSink(stream=stream)
    await sink.write_batch([make(id=str(i)) for i in range(50)])
    await sink.write_batch([])
    await sink.close()
    assert stream.writes == 1
    assert [json.loads(line)["id"] for line in stream.getvalue().splitlines()] == [str(i) for i in range(50)]
    assert not stream.closed  # a stream it did not open is left open


def test_unwritable_path_fails_at_start(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        JsonLogSink(path=str(tmp_path / "missing-dir" / "gateway.log"))
