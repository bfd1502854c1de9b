"""The JSON-lines log sink, and the flat form of a record that it shares with the store.

`interaction_to_dict` names the fields once: they are the `interactions` table's
column names, so a log line and a row read the same. This module does no SQL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TextIO

from gateway.record import Interaction

log = logging.getLogger(__name__)

# Bodies longer than this (in UTF-8 bytes) are cut to this many bytes, wrapped so the
# stored text stays valid JSON (a cut JSON document would make SQLite's json_extract
# fail a whole query), and marked truncated. 64 KiB keeps a row small enough that a
# batch of 500 stays a few MB while holding any ordinary chat request whole.
MAX_BODY_BYTES = 64 * 1024
# Upstream error messages are free text from the provider; cap them too.
MAX_ERROR_CHARS = 8 * 1024

# The field order of `interaction_to_dict`, which is also the column order of a row.
FIELDS: tuple[str, ...] = (
    "id", "ts", "key", "provider", "model", "method", "path", "endpoint", "stream", "status",
    "duration_ms", "ttfb_ms", "upstream_ms", "overhead_ms", "prompt_tokens", "completion_tokens",
    "total_tokens", "cached_tokens", "cache_write_tokens", "cost_usd", "error_type",
    "error_message", "client_ip", "incomplete", "quota_counted", "truncated", "request", "response",
)


def iso_utc(epoch: float) -> str:
    """Format epoch seconds as UTC 'YYYY-MM-DDTHH:MM:SS.mmmZ' (sorts as text, SQLite parses it)."""
    whole = int(epoch // 1)
    # Floor, not round: rounding up to 1000 ms would print an invalid time.
    millis = int((epoch - whole) * 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(whole)) + f".{millis:03d}Z"


def truncate_body(body: str | None, limit: int = MAX_BODY_BYTES) -> tuple[str | None, bool]:
    """Return the body, or a JSON wrapper holding its first `limit` bytes; and whether it was cut."""
    if body is None or len(body) <= limit // 4:  # even 4-byte characters fit: no encoding needed
        return body, False
    if body.isascii():  # O(1) in CPython: one byte per character
        size = len(body)
        if size <= limit:
            return body, False
        head = body[:limit]
    else:
        encoded = body.encode("utf-8", "surrogatepass")
        size = len(encoded)
        if size <= limit:
            return body, False
        # "ignore" drops the character cut in half (and any lone surrogate).
        head = encoded[:limit].decode("utf-8", "ignore")
    wrapper = {"truncated": True, "original_bytes": size, "head": head}
    return json.dumps(wrapper, ensure_ascii=False), True


def interaction_to_dict(record: Interaction) -> dict[str, Any]:
    """Flatten a record into the public field names (the table's columns), bodies truncated."""
    usage = record.usage
    request, cut_request = truncate_body(record.request)
    response, cut_response = truncate_body(record.response)
    message = record.error_message
    if message is not None and len(message) > MAX_ERROR_CHARS:
        message = message[:MAX_ERROR_CHARS]
    return {
        "id": record.id,
        "ts": iso_utc(record.ts),
        "key": record.key_name,
        "provider": record.provider,
        "model": record.model,
        "method": record.method,
        "path": record.path,
        "endpoint": record.endpoint,
        "stream": record.stream,
        "status": record.status,
        "duration_ms": record.duration_ms,
        "ttfb_ms": record.ttfb_ms,
        "upstream_ms": record.upstream_ms,
        "overhead_ms": record.overhead_ms,
        "prompt_tokens": usage.prompt_tokens if usage else None,
        "completion_tokens": usage.completion_tokens if usage else None,
        "total_tokens": usage.total_tokens if usage else None,
        "cached_tokens": usage.cached_tokens if usage else None,
        "cache_write_tokens": usage.cache_write_tokens if usage else None,
        "cost_usd": record.cost_usd,
        "error_type": record.error_type,
        "error_message": message,
        "client_ip": record.client_ip,
        "incomplete": record.incomplete,
        "quota_counted": record.quota_counted,
        "truncated": cut_request or cut_response,
        "request": request,
        "response": response,
    }


def _json_line(record: Interaction) -> str:
    # ensure_ascii: a lone surrogate in a body becomes a \\ud800 escape instead of an
    # encoding error at write time, and the line is plain ASCII whatever the stream's encoding.
    # `timestamp` leads the line (the log's documented field name); the rest are the table's columns.
    line = {"timestamp": iso_utc(record.ts), **interaction_to_dict(record)}
    return json.dumps(line, separators=(",", ":")) + "\n"


class JsonLogSink:
    """One JSON line per interaction, to a file `path` (opened once, append mode) or else to `stream` (stdout)."""

    def __init__(self, path: str | os.PathLike[str] | None = None, stream: TextIO | None = None) -> None:
        if path is not None:
            # Opened once, here, at start: an unwritable path fails the start, not every batch.
            self._stream: TextIO = open(path, "a", encoding="utf-8")
            self._owned = True
            self.name = f"jsonlog:{path}"
        else:
            self._stream = stream if stream is not None else sys.stdout
            self._owned = False
            self.name = "jsonlog:stream"
        # One thread: batches are written in order and a slow disk never stalls the event loop.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="jsonlog")

    async def write_batch(self, records: list[Interaction]) -> None:
        """Append the records as JSON lines in one write() call, off the event loop."""
        if not records:
            return
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, records)

    def _write(self, records: list[Interaction]) -> None:
        # Serialising here too keeps the JSON encoding of big bodies off the event loop.
        self._stream.write("".join([_json_line(r) for r in records]))
        self._stream.flush()

    async def close(self) -> None:
        """Flush, close an owned file, and stop the writer thread."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    def _close(self) -> None:
        self._stream.flush()
        if self._owned:
            self._stream.close()
