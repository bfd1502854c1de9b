"""What recording costs: submit() on the event loop with the writer on and off, the rows/s the
writer sustains, and the store's queries on a large table. Run by hand, not by pytest:

    .venv/bin/python bench/store_bench.py [--rows 200000] [--skip-queries]

Everything happens in a temporary directory, deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.jsonlog import JsonLogSink  # noqa: E402
from gateway.record import Interaction, Usage  # noqa: E402
from gateway.recorder import Recorder  # noqa: E402
from gateway import store as store_module  # noqa: E402
from gateway.store import Store  # noqa: E402

MIGRATIONS = ROOT / "migrations"
REQUEST = '{"model": "gpt-4o", "messages": [{"role": "user", "content": "' + "hello " * 250 + '"}]}'  # ~1.6 KB
RESPONSE = '{"choices": [{"message": {"role": "assistant", "content": "' + "word " * 180 + '"}}]}'  # ~1 KB
MODELS = [("openai", "gpt-4o", 20), ("openai", "gpt-4o-mini", 30), ("openai", "gpt-4.1", 10),
          ("openai", "gpt-5", 10), ("openai", "o3", 5), ("anthropic", "claude-sonnet-4-5", 10),
          ("anthropic", "claude-haiku-4-5", 8), ("anthropic", "claude-opus-4-1", 3),
          ("anthropic", "claude-opus-4-5", 3), ("openai", "rare-model", 0.05)]


def record(rnd: random.Random, ts: float) -> Interaction:
    provider, model, _ = rnd.choices(MODELS, [m[2] for m in MODELS])[0]
    prompt, completion = rnd.randint(10, 5000), rnd.randint(1, 1000)
    return Interaction(
        method="POST", path="/v1/chat/completions", endpoint="chat", client_ip="127.0.0.1", ts=ts,
        key_name=f"key-{rnd.randint(0, 19)}", provider=provider, model=model,
        status=rnd.choices([200, 400, 429, 500, 502], [93, 2, 3, 1, 1])[0], duration_ms=rnd.uniform(100, 5000),
        ttfb_ms=50.0, upstream_ms=900.0, overhead_ms=1.0, usage=Usage(prompt, completion),
        cost_usd=(prompt * 2.5 + completion * 10) / 1e6, request=REQUEST, response=RESPONSE, quota_counted=True)


async def loop_lag(stop: asyncio.Event, samples: list[float]) -> None:
    """How late a 1 ms timer fires: what every other request on the loop would wait."""
    while not stop.is_set():
        start = time.perf_counter()
        await asyncio.sleep(0.001)
        samples.append((time.perf_counter() - start - 0.001) * 1000)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))] if values else float("nan")


async def recording_cost(tmp: Path, writer_on: bool, rate: int, seconds: float) -> dict:
    """Submit `rate` records/s for `seconds` (bursts every 10 ms) and measure submit() and loop lag."""
    rnd = random.Random(1)
    store = await Store.open(str(tmp / f"rec-{writer_on}.db"), MIGRATIONS)
    json_log = JsonLogSink(path=str(tmp / f"rec-{writer_on}.log"))
    recorder = Recorder([store, json_log], max_queue=10**7)
    if writer_on:
        recorder.start()
    stop, lags, submit_ns = asyncio.Event(), [], []
    lag_task = asyncio.get_running_loop().create_task(loop_lag(stop, lags))
    per_tick, ticks = max(1, rate // 100), int(seconds * 100)
    started = time.perf_counter()
    for tick in range(ticks):
        batch = [record(rnd, time.time()) for _ in range(per_tick)]
        t0 = time.perf_counter_ns()
        for r in batch:
            recorder.submit(r)
        submit_ns.append((time.perf_counter_ns() - t0) / per_tick)
        await asyncio.sleep(max(0.0, started + (tick + 1) * 0.01 - time.perf_counter()))
    stop.set()
    await lag_task
    t0 = time.perf_counter()
    await recorder.close(timeout=120)
    drain = time.perf_counter() - t0
    await json_log.close()
    await store.close()
    return {"submit_ns": statistics.median(submit_ns), "lag_p50": pct(lags, 0.5), "lag_p99": pct(lags, 0.99),
            "lag_max": max(lags), "drain_s": drain, "written": recorder.stats()["written"]}


async def writer_throughput(tmp: Path, n: int) -> float:
    """Rows/s the writer sustains into SQLite plus the JSON log, with everything queued up front."""
    rnd = random.Random(2)
    records = [record(rnd, time.time()) for _ in range(n)]
    store = await Store.open(str(tmp / "throughput.db"), MIGRATIONS)
    json_log = JsonLogSink(path=str(tmp / "throughput.log"))
    recorder = Recorder([store, json_log], max_queue=n)
    for r in records:
        recorder.submit(r)
    t0 = time.perf_counter()
    recorder.start()
    await recorder.close(timeout=600)
    elapsed = time.perf_counter() - t0
    await json_log.close()
    await store.close()
    return n / elapsed


async def timed(label: str, make_call, reps: int = 3) -> None:  # type: ignore[no-untyped-def]
    best, result = float("inf"), None
    for _ in range(reps):
        t0 = time.perf_counter()
        result = await make_call()
        best = min(best, time.perf_counter() - t0)
    size = len(result) if isinstance(result, list) else result
    print(f"  {label:44s} {best * 1000:9.1f} ms" + (f"   ({size} results)" if isinstance(size, int) else ""))


async def queries(tmp: Path, rows: int) -> None:
    """Fill a store with `rows` over 30 days and time each query, usage both ways."""
    rnd, now, span = random.Random(3), time.time(), 30 * 86400
    path = tmp / "queries.db"
    stamps = sorted(now - rnd.random() * span for _ in range(rows))
    store = await Store.open(str(path), MIGRATIONS)
    try:
        t0 = time.perf_counter()
        for i in range(0, rows, 500):
            await store.insert_batch([record(rnd, t) for t in stamps[i:i + 500]])
        insert_s = time.perf_counter() - t0
        print(f"\n{rows:,} rows over 30 days ({path.stat().st_size / 1e6:.0f} MB): "
              f"insert_batch {rows / insert_s:,.0f} rows/s, usage_daily included")
        await insert_rates(tmp, [record(rnd, t) for t in stamps[:50_000]])
        await time_queries(store, now)
    finally:
        t0 = time.perf_counter()
        await store.close()  # always: an open aiosqlite thread would keep the process alive
    print(f"  close (optimize + checkpoint)                {(time.perf_counter() - t0) * 1000:9.1f} ms")


async def insert_rates(tmp: Path, sample: list[Interaction]) -> None:
    """insert_batch rows/s into fresh files with and without the usage_daily upserts: the summary's write cost."""
    keep = store_module.daily_totals
    for label, daily_totals in (("with usage_daily", keep), ("without usage_daily", lambda rows: iter(()))):
        store = await Store.open(str(tmp / f"rate-{len(label)}.db"), MIGRATIONS)
        store_module.daily_totals = daily_totals
        t0 = time.perf_counter()
        try:
            for i in range(0, len(sample), 500):
                await store.insert_batch(sample[i:i + 500])
        finally:
            store_module.daily_totals = keep
            await store.close()
        print(f"  insert_batch {label}: {len(sample) / (time.perf_counter() - t0):,.0f} rows/s "
              f"({len(sample):,} rows, fresh file)")


async def time_queries(store: Store, now: float) -> None:
    """Best of three for each query the dashboard and the quota rebuild make."""
    for days in (30, 7, 1):
        since = now - days * 86400
        await timed(f"usage {days}d by key,model: usage_daily + edges", lambda: store.usage(since))
        await timed(f"usage {days}d by key,model: rows only", lambda: store._usage_rows(
            {}, ("key", "model"), since, None))
    await timed("recent 50", lambda: store.recent())
    await timed("recent 50, offset 5000", lambda: store.recent(offset=5000))
    await timed("recent 50, a rare model", lambda: store.recent(model="rare-model"))
    await timed("recent 50, key + status 5xx", lambda: store.recent(key="key-3", status="5xx"))
    await timed("recent 50, status error", lambda: store.recent(status="error"))
    await timed("timeseries 1h / 60 s (p50, p95)", lambda: store.timeseries(now - 3600, 60))
    await timed("timeseries 24h / 1 h (p50, p95)", lambda: store.timeseries(now - 86400, 3600))
    await timed("timeseries 7d / 1 h (p50, p95)", lambda: store.timeseries(now - 7 * 86400, 3600))
    await timed("distinct_values", lambda: store.distinct_values())
    await timed("quota_timestamps 1h", lambda: store.quota_timestamps(now - 3600))
    await timed("quota_timestamps 24h", lambda: store.quota_timestamps(now - 86400))
    await timed("get by id", lambda: store.get("nope"))
    await timed("prune the oldest day (chunks of 2000)", lambda: store.prune(now - 29 * 86400), reps=1)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000, help="rows for the query figures")
    parser.add_argument("--rate", type=int, default=2000, help="records/s submitted in the recording test")
    parser.add_argument("--skip-queries", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="store-bench-") as name:
        tmp = Path(name)
        print(f"recording {args.rate} records/s for 5 s (store + JSON log file sinks):")
        for writer_on in (False, True):
            r = await recording_cost(tmp, writer_on, args.rate, 5.0)
            print(f"  writer {'on ' if writer_on else 'off'}: submit() {r['submit_ns']:,.0f} ns/record; "
                  f"loop lag p50 {r['lag_p50']:.2f} ms, p99 {r['lag_p99']:.2f} ms, max {r['lag_max']:.1f} ms; "
                  f"close() drained {r['written']:,} in {r['drain_s']:.2f} s")
        rate = await writer_throughput(tmp, 50_000)
        print(f"writer throughput, 50k queued records, store + JSON log: {rate:,.0f} records/s")
        if not args.skip_queries:
            await queries(tmp, args.rows)


if __name__ == "__main__":
    asyncio.run(main())
