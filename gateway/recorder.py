"""The write queue between the request path and the sinks (the store, the JSON log).

Handlers call `submit(record)`: a synchronous append to a bounded in-memory queue,
never a wait on the disk. One writer task drains the queue in batches and hands each
batch to every sink concurrently.

Queue-full policy: the arriving record is dropped and counted (`dropped`), with a
warning logged at most once every `WARN_EVERY_S` seconds that says how many were
dropped since the last one. Requests are never slowed to save their log record: a full
queue means the sinks are far behind (10,000 records ~ seconds of peak traffic), and
waiting would turn a slow disk into slow replies. A caller that would rather wait a
little can `await submit_wait(record)`, which waits at most `put_wait` for room.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from gateway.record import Interaction

log = logging.getLogger(__name__)

WARN_EVERY_S = 10.0


class Sink(Protocol):
    """Somewhere records go: the store, the JSON log."""

    async def write_batch(self, records: list[Interaction]) -> None:
        """Write the batch; raise if it was not written (the recorder counts and logs it)."""


@dataclass(slots=True)
class SinkStats:
    """One sink's counters."""

    name: str
    batches: int = 0
    records: int = 0
    failed_batches: int = 0
    failed_records: int = 0
    failing: bool = False  # the last batch failed
    last_error: str | None = None


class Recorder:
    """A bounded queue of interaction records and the one task that writes them to the sinks."""

    def __init__(self, sinks: list[Sink], *, max_queue: int = 10000, batch_size: int = 500,
                 flush_interval: float = 0.05, put_wait: float = 0.1) -> None:
        self._sinks = list(sinks)
        names = [getattr(s, "name", type(s).__name__) for s in self._sinks]
        # Unique names: they key the per-sink counters in stats().
        self._stats = [SinkStats(n if names.count(n) == 1 else f"{n}#{i}") for i, n in enumerate(names)]
        self._queue: deque[Interaction] = deque()
        self._max_queue = max_queue
        self._batch_size = batch_size
        self._flush_interval = flush_interval
        self._put_wait = put_wait
        self._wake = asyncio.Event()  # work to do: first record, a full batch, or close
        self._room = asyncio.Event()  # the writer took records out
        self._task: asyncio.Task | None = None
        self._closing = False
        self.submitted = 0
        self.written = 0
        self.dropped = 0
        self.failed = 0
        self._dropped_unwarned = 0
        self._last_warning = -float("inf")

    def submit(self, record: Interaction) -> bool:
        """Queue a record for the writer without waiting; False if it was dropped (queue full or closed)."""
        if self._closing or len(self._queue) >= self._max_queue:
            self._drop()
            return False
        self._queue.append(record)
        self.submitted += 1
        if len(self._queue) == 1 or len(self._queue) >= min(self._batch_size, self._max_queue):
            self._wake.set()
        return True

    async def submit_wait(self, record: Interaction) -> bool:
        """Like submit, but wait up to put_wait seconds for room before dropping."""
        deadline = time.monotonic() + self._put_wait
        while not self._closing and len(self._queue) >= self._max_queue:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self._room.clear()
            try:
                await asyncio.wait_for(self._room.wait(), remaining)
            except asyncio.TimeoutError:
                break
        return self.submit(record)

    def _drop(self) -> None:
        self.dropped += 1
        self._dropped_unwarned += 1
        now = time.monotonic()
        if now - self._last_warning >= WARN_EVERY_S:
            # Rate-limited: under overload one line per interval, not one per request.
            log.warning("recorder queue %s: dropped %d record(s) since the last warning (%d in all)",
                        "closed" if self._closing else f"full ({self._max_queue})",
                        self._dropped_unwarned, self.dropped)
            self._last_warning = now
            self._dropped_unwarned = 0

    def stats(self) -> dict[str, Any]:
        """Counters for /health and metrics: queued, submitted, written, dropped, failed, failed_batches, sinks."""
        return {
            "queued": len(self._queue),  # waiting now
            "submitted": self.submitted,
            "written": self.written,  # handed to the sinks; each sink's outcome is under "sinks"
            "dropped": self.dropped,  # refused: queue full or recorder closed
            "failed": self.failed,  # records of batches at least one sink failed to write
            "failed_batches": sum(s.failed_batches for s in self._stats),
            "sinks": {s.name: asdict(s) for s in self._stats},
        }

    def start(self) -> None:
        """Start the writer task on the running event loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="recorder-writer")

    async def close(self, timeout: float = 10.0) -> None:
        """Refuse new records, write everything queued, then stop; what is left after `timeout` is dropped."""
        self._closing = True
        self._wake.set()
        if self._task is None:
            self.start()
        try:
            await asyncio.wait_for(asyncio.shield(self._task), timeout)
        except asyncio.TimeoutError:
            self._task.cancel()
            left = len(self._queue)
            self._queue.clear()
            self.dropped += left
            log.error("recorder: %d record(s) not written within %.1f s of close; dropped", left, timeout)

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            if len(self._queue) < min(self._batch_size, self._max_queue) and not self._closing:
                # Give a batch a moment to fill: one transaction for many records is far
                # cheaper than one each. submit() wakes us early once a batch is full.
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), self._flush_interval)
                except asyncio.TimeoutError:
                    pass
            count = min(len(self._queue), self._batch_size)
            batch = [self._queue.popleft() for _ in range(count)]
            self._room.set()
            # Concurrently: a slow sink delays the next batch but never another sink's write.
            outcomes = await asyncio.gather(*(self._write(i, batch) for i in range(len(self._sinks))))
            self.written += len(batch)
            if not all(outcomes):
                self.failed += len(batch)

    async def _write(self, index: int, batch: list[Interaction]) -> bool:
        stats = self._stats[index]
        try:
            await self._sinks[index].write_batch(batch)
        except asyncio.CancelledError:
            raise
        except Exception as e:
            stats.failed_batches += 1
            stats.failed_records += len(batch)
            stats.last_error = f"{type(e).__name__}: {e}"
            if not stats.failing:  # once per burst of failures, not once per batch
                log.error("recorder: sink %s failed, %d record(s) lost: %s", stats.name, len(batch),
                          stats.last_error, exc_info=not isinstance(e, OSError))
            stats.failing = True
            return False
        if stats.failing:
            log.warning("recorder: sink %s recovered after %d failed batch(es) in all",
                        stats.name, stats.failed_batches)
        stats.failing = False
        stats.batches += 1
        stats.records += len(batch)
        return True
