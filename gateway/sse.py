"""Server-sent events: an incremental decoder (feed bytes, get whole events) and an encoder."""

from __future__ import annotations

import re
from dataclasses import dataclass

# An event ends at an empty line; lines may end in CRLF, LF or CR (the SSE spec allows all three).
# A CR directly followed by LF is one line end, never two (else every CRLF would end an event).
_EVENT_END = re.compile(rb"(?:\r\n|\r(?!\n)|\n)(?:\r\n|\r(?!\n)|\n)")
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")


@dataclass(slots=True)
class Event:
    """One decoded event with the exact bytes it arrived as (terminator included)."""

    raw: bytes
    event: str | None
    data: str


class Decoder:
    """Incremental SSE decoder: bytes may be split anywhere, even inside a UTF-8 character or a CRLF."""

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, chunk: bytes) -> list[Event]:
        """Add bytes; return every event they complete, in order."""
        buffer = self._buffer + chunk if self._buffer else chunk
        events: list[Event] = []
        start = 0
        while True:
            match = _EVENT_END.search(buffer, start)
            if match is None:
                break
            end = match.end()
            # A CR at the very end may be the first half of a CRLF still on its way.
            if end == len(buffer) and buffer.endswith(b"\r"):
                break
            events.append(_parse(buffer[start:end]))
            start = end
        self._buffer = buffer[start:]
        return events

    @property
    def pending(self) -> bytes:
        """Bytes of an event not yet complete (e.g. when the stream is cut)."""
        return self._buffer


def _parse(raw: bytes) -> Event:
    name: str | None = None
    data: list[str] = []
    for line in _LINE_SPLIT.split(raw.decode("utf-8", "replace")):
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        if value.startswith(" "):
            value = value[1:]
        if field == "data":
            data.append(value)
        elif field == "event":
            name = value
    return Event(raw=raw, event=name, data="\n".join(data))


def encode(data: str, event: str | None = None) -> bytes:
    """One event in the framing OpenAI and Anthropic use: optional `event:` line, one `data:` line, blank line."""
    if event is None:
        return b"data: " + data.encode("utf-8") + b"\n\n"
    return b"event: " + event.encode("utf-8") + b"\ndata: " + data.encode("utf-8") + b"\n\n"
