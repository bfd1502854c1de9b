"""The recorder: batching, the queue-full policy, failing sinks, and flushing at close."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from gateway.jsonlog import JsonLogSink
from gateway.record import Interaction
from gateway.recorder import Recorder
from gateway.store import Store

pytestmark = pytest.mark.usefixtures("io_loop")

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def make(i: int = 0) -> Interaction:
    return Interaction(method="POST", path="/v1/chat/completions", endpoint="chat", id=f"r{i}", status=200)


class ListSink:
    """Remembers every batch; optionally slow, or failing for its first `fail_first` batches."""

    def __init__(self, name: str = "list", delay: float = 0.0, fail_first: int = 0) -> None:
        self.name = name
        self.batches: list[list[str]] = []
        self.delay = delay
        self.fail_first = fail_first
        self.calls = 0

    async def write_batch(self, records: list[Interaction]) -> None:
        self.calls += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.calls <= self.fail_first:
            raise OSError("disk on fire")
        self.batches.append([r.id for r in records])

    @property
    def ids(self) -> list[str]:
        return [i for batch in self.batches for i in batch]


class HangingSink:
    name = "hanging"

    async def write_batch(self, records: list[Interaction]) -> None:
        await asyncio.Event().wait()


async def test_records_are_written_in_batches_in_order() -> None:
    sink = ListSink()
    recorder = Recorder([sink], batch_size=100, flush_interval=0.01)
    recorder.start()
    for i in range(250):
        assert recorder.submit(make(i))
    await recorder.close()
    assert sink.ids == [f"r{i}" for i in range(250)]
    assert max(len(b) for b in sink.batches) <= 100 and len(sink.batches) >= 3
    stats = recorder.stats()
    assert (stats["queued"], stats["submitted"], stats["written"], stats["dropped"], stats["failed"]) == (0, 250, 250, 0, 0)


async def test_a_few_records_wait_at_most_the_flush_interval() -> None:
    sink = ListSink()
    recorder = Recorder([sink], batch_size=500, flush_interval=0.05)
    recorder.start()
    started = time.monotonic()
    for i in range(3):
        recorder.submit(make(i))
    while not sink.batches and time.monotonic() - started < 2:
        await asyncio.sleep(0.005)
    assert sink.batches == [["r0", "r1", "r2"]]  # one batch, not three
    assert time.monotonic() - started < 0.5
    await recorder.close()


async def test_full_queue_drops_the_new_record_counts_it_and_warns_once(caplog: pytest.LogCaptureFixture) -> None:
    sink = ListSink()
    recorder = Recorder([sink], max_queue=10)  # not started: nothing drains the queue
    with caplog.at_level(logging.WARNING, logger="gateway.recorder"):
        accepted = [recorder.submit(make(i)) for i in range(25)]
    assert accepted == [True] * 10 + [False] * 15
    assert recorder.stats()["dropped"] == 15 and recorder.stats()["queued"] == 10
    warnings = [r for r in caplog.records if "dropped" in r.getMessage()]
    assert len(warnings) == 1 and "full (10)" in warnings[0].getMessage()  # rate-limited
    await recorder.close()
    assert sink.ids == [f"r{i}" for i in range(10)]  # the first ten were kept


async def test_submit_wait_waits_briefly_for_room_then_drops() -> None:
    recorder = Recorder([ListSink()], max_queue=2, put_wait=0.05)
    recorder.submit(make(0)), recorder.submit(make(1))
    started = time.monotonic()
    assert await recorder.submit_wait(make(2)) is False  # nobody drains: gives up after put_wait
    assert 0.04 <= time.monotonic() - started < 1
    recorder.start()  # now the writer makes room
    assert await recorder.submit_wait(make(3)) is True
    await recorder.close()
    assert recorder.stats()["dropped"] == 1


async def test_failing_sink_is_counted_and_does_not_stop_the_other(caplog: pytest.LogCaptureFixture) -> None:
    broken, good = ListSink("broken", fail_first=1000), ListSink("good")
    recorder = Recorder([broken, good], batch_size=10, flush_interval=0.005)
    recorder.start()
    with caplog.at_level(logging.ERROR, logger="gateway.recorder"):
        for i in range(35):
            recorder.submit(make(i))
        await recorder.close()
    assert good.ids == [f"r{i}" for i in range(35)]
    stats = recorder.stats()
    sink = stats["sinks"]["broken"]
    assert sink["failed_batches"] == broken.calls >= 4 and sink["failed_records"] == 35 and sink["failing"]
    assert "disk on fire" in sink["last_error"]
    assert stats["sinks"]["good"]["records"] == 35 and stats["failed"] == 35 and stats["failed_batches"] == broken.calls
    assert len([r for r in caplog.records if "sink broken failed" in r.getMessage()]) == 1  # once per burst


async def test_sink_that_recovers_is_healthy_again(caplog: pytest.LogCaptureFixture) -> None:
    flaky = ListSink("flaky", fail_first=1)
    recorder = Recorder([flaky], batch_size=1, flush_interval=0.001)
    recorder.start()
    with caplog.at_level(logging.WARNING, logger="gateway.recorder"):
        for i in range(3):
            recorder.submit(make(i))
        await recorder.close()
    assert flaky.ids == ["r1", "r2"]
    assert recorder.stats()["sinks"]["flaky"]["failing"] is False
    assert any("recovered" in r.getMessage() for r in caplog.records)


async def test_slow_sink_does_not_slow_the_other_sinks_write() -> None:
    slow, fast = ListSink("slow", delay=0.3), ListSink("fast")
    recorder = Recorder([slow, fast], flush_interval=0.001)
    recorder.start()
    recorder.submit(make(0))
    await asyncio.sleep(0.1)
    assert fast.ids == ["r0"] and slow.ids == []  # written concurrently
    await recorder.close()
    assert slow.ids == ["r0"]


async def test_close_flushes_everything_queued_then_refuses() -> None:
    sink = ListSink(delay=0.01)
    recorder = Recorder([sink], batch_size=100, flush_interval=1.0)
    recorder.start()
    for i in range(1000):
        recorder.submit(make(i))
    await recorder.close(timeout=10)
    assert len(sink.ids) == 1000
    assert recorder.submit(make(1000)) is False and recorder.stats()["dropped"] == 1


async def test_close_gives_up_after_its_timeout_and_counts_the_rest() -> None:
    recorder = Recorder([HangingSink()], batch_size=10)
    recorder.start()
    for i in range(25):
        recorder.submit(make(i))
    started = time.monotonic()
    await recorder.close(timeout=0.1)
    assert time.monotonic() - started < 1
    assert recorder.stats()["dropped"] == 15  # the batch in flight is lost with the sink, not counted here


async def test_store_and_json_log_receive_the_same_records(tmp_path: Path) -> None:
    store = await Store.open(str(tmp_path / "g.db"), MIGRATIONS)
    log_sink = JsonLogSink(path=str(tmp_path / "gateway.log"))
    recorder = Recorder([store, log_sink], batch_size=64, flush_interval=0.005)
    recorder.start()
    for i in range(300):
        recorder.submit(make(i))
    await recorder.close()
    await log_sink.close()
    try:
        assert (await store.health()).rows_written == 300
        assert len(await store.recent(limit=1000)) == 300
    finally:
        await store.close()
    lines = (tmp_path / "gateway.log").read_text().splitlines()
    assert sorted(json.loads(line)["id"] for line in lines) == sorted(f"r{i}" for i in range(300))
