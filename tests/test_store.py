"""The SQLite store on real files: rows, poisoned rows, migrations, unusable files, queries, prune."""

from __future__ import annotations

import asyncio
import json
import os
import random
import re
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gateway import store as store_module
from gateway.jsonlog import MAX_BODY_BYTES
from gateway.record import Interaction, Usage
from gateway.store import SchemaTooNew, Store, StoreUnavailable

pytestmark = pytest.mark.usefixtures("io_loop")

ROOT = Path(__file__).resolve().parent.parent
MIGRATIONS = ROOT / "migrations"
DAY = 86400
MIDNIGHT = 1_767_225_600.0  # 2026-01-01T00:00:00Z
ISO = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")


def make(**fields) -> Interaction:  # type: ignore[no-untyped-def]
    """A plausible finished chat request; any field overridden."""
    base = dict(method="POST", path="/v1/chat/completions", endpoint="chat", client_ip="127.0.0.1",
                key_name="alice", provider="openai", model="gpt-4o", status=200, duration_ms=120.5,
                usage=Usage(prompt_tokens=100, completion_tokens=20), cost_usd=0.00045,
                request='{"model": "gpt-4o"}', response='{"id": "chatcmpl-1"}', quota_counted=True)
    base.update(fields)
    return Interaction(**base)


async def open_store(path: Path, migrations: Path = MIGRATIONS, **kwargs) -> Store:  # type: ignore[no-untyped-def]
    return await Store.open(str(path), migrations, **kwargs)


def sql(path: Path, query: str, args: tuple = ()) -> list[tuple]:
    with sqlite3.connect(path) as db:
        return db.execute(query, args).fetchall()


# --- rows -------------------------------------------------------------------------------------

async def test_batch_writes_one_row_per_record_with_its_fields(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        records = [make(key_name=f"k{i % 3}", ts=MIDNIGHT + i) for i in range(40)]
        special = make(id="special", ts=MIDNIGHT + 0.1239, stream=True, status=499, ttfb_ms=12.0, upstream_ms=100.0,
                       overhead_ms=3.5, usage=Usage(1000, 50, cached_tokens=200, cache_write_tokens=300),
                       cost_usd=None, error_type="client_closed_request", error_message="gone",
                       incomplete=True, quota_counted=False, provider="anthropic", model="claude-sonnet-4-5")
        assert await store.insert_batch(records + [special]) == 41
        assert sql(tmp_path / "g.db", "SELECT count(*) FROM interactions") == [(41,)]
        row = await store.get("special")
        assert row is not None
        assert row.ts == "2026-01-01T00:00:00.123Z" and ISO.match(row.ts)
        assert (row.key, row.provider, row.model, row.method, row.path, row.endpoint) == (
            "alice", "anthropic", "claude-sonnet-4-5", "POST", "/v1/chat/completions", "chat")
        assert (row.stream, row.status, row.incomplete, row.quota_counted, row.truncated) == (True, 499, True, False, False)
        assert (row.duration_ms, row.ttfb_ms, row.upstream_ms, row.overhead_ms) == (120.5, 12.0, 100.0, 3.5)
        assert (row.prompt_tokens, row.completion_tokens, row.total_tokens, row.cached_tokens,
                row.cache_write_tokens, row.cost_usd) == (1000, 50, 1050, 200, 300, None)
        assert (row.error_type, row.error_message, row.client_ip) == ("client_closed_request", "gone", "127.0.0.1")
        assert json.loads(row.request) == {"model": "gpt-4o"} and json.loads(row.response) == {"id": "chatcmpl-1"}
        # The public column names answer SQL, and ts works with SQLite's date functions.
        assert sql(tmp_path / "g.db", "SELECT key, date(ts), strftime('%s', ts) FROM interactions WHERE id = ?",
                   ("special",)) == [("alice", "2026-01-01", str(int(MIDNIGHT)))]
        health = await store.health()
        assert health.healthy and health.rows_written == 41 and health.failed_writes == 0
    finally:
        await store.close()


async def test_poisoned_rows_are_sanitised_or_dropped_alone(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        good = [make(ts=MIDNIGHT + i) for i in range(10)]
        surrogate = make(id="surrogate", request='{"text": "bad \ud800 half"}', error_message="x\udfffy")
        nul = make(id="nul", request='{"text": "a\x00b"}', model="gpt\x004o")
        huge = make(id="huge", request="x" * (10 * 1024 * 1024))
        overflow = make(id="overflow", usage=Usage(prompt_tokens=2**70, completion_tokens=1))
        duplicate = make(id=good[0].id)
        not_a_row = make(id="not-a-row", usage="a handler bug")
        batch = good[:5] + [surrogate, nul, huge, overflow, duplicate, not_a_row] + good[5:]
        assert await store.insert_batch(batch) == 14  # all but the duplicate id and the unconvertible record
        assert sql(tmp_path / "g.db", "SELECT count(*) FROM interactions") == [(14,)]
        row = await store.get("surrogate")
        assert row.request == '{"text": "bad \ufffd half"}' and row.error_message == "x\ufffdy"
        row = await store.get("nul")
        assert row.request == '{"text": "a\ufffdb"}' and row.model == "gpt\ufffd4o"
        assert sql(tmp_path / "g.db", "SELECT length(request) FROM interactions WHERE id = 'nul'") == [(15,)]  # not cut at NUL
        row = await store.get("huge")
        assert row.truncated
        wrapper = json.loads(row.request)  # still valid JSON: json_extract keeps working
        assert wrapper["truncated"] is True and wrapper["original_bytes"] == 10 * 1024 * 1024
        assert wrapper["head"] == "x" * MAX_BODY_BYTES
        assert sql(tmp_path / "g.db", "SELECT json_extract(request, '$.original_bytes') FROM interactions "
                   "WHERE truncated = 1") == [(10 * 1024 * 1024,)]
        row = await store.get("overflow")
        assert row.prompt_tokens is None and row.completion_tokens == 1
        # The daily totals count exactly the rows that went in.
        assert sum(u.requests for u in await store.usage(0, group_by=("day",))) == 14
        health = await store.health()
        assert health.dropped_rows == 2 and health.failed_writes == 2 and health.healthy
    finally:
        await store.close()


async def test_long_non_ascii_body_is_cut_on_a_character_boundary(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        body = json.dumps({"text": "é" * 40_000}, ensure_ascii=False)  # ~80 KB of two-byte characters
        record = make(response=body)
        await store.insert_batch([record, make(request="y" * MAX_BODY_BYTES)])
        row = await store.get(record.id)
        head = json.loads(row.response)["head"]
        assert row.truncated and body.startswith(head)
        assert MAX_BODY_BYTES - 1 <= len(head.encode()) <= MAX_BODY_BYTES
        assert [r.truncated for r in await store.recent()] == [False, True]  # exactly the limit is kept whole
    finally:
        await store.close()


# --- migrations ------------------------------------------------------------------------------

async def test_fresh_file_gets_every_migration_recorded(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    await store.close()
    rows = sql(tmp_path / "g.db", "SELECT version, name, applied_at FROM schema_migrations")
    assert [(v, n) for v, n, _ in rows] == [(1, "init")] and ISO.match(rows[0][2])
    assert sql(tmp_path / "g.db", "PRAGMA journal_mode") == [("wal",)]


async def test_up_to_date_file_reopens_without_migrating_again(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    await store.insert_batch([make(id="kept")])
    await store.close()
    store = await open_store(tmp_path / "g.db")
    try:
        assert (await store.get("kept")) is not None
    finally:
        await store.close()
    assert sql(tmp_path / "g.db", "SELECT count(*) FROM schema_migrations") == [(1,)]


async def test_older_schema_is_upgraded_in_order(tmp_path: Path) -> None:
    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir(), new.mkdir()
    shutil.copy(MIGRATIONS / "0001_init.sql", old)
    shutil.copy(MIGRATIONS / "0001_init.sql", new)
    (new / "0002_notes.sql").write_text("CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT);\n"
                                        "ALTER TABLE interactions ADD COLUMN team TEXT;\n")
    store = await open_store(tmp_path / "g.db", old)
    await store.insert_batch([make(id="before")])
    await store.close()
    store = await open_store(tmp_path / "g.db", new)
    try:
        assert (await store.get("before")) is not None
        await store.insert_batch([make(id="after")])  # the insert still works against the new column
    finally:
        await store.close()
    assert [v for v, _ in sql(tmp_path / "g.db", "SELECT version, name FROM schema_migrations")] == [1, 2]
    assert sql(tmp_path / "g.db", "SELECT count(*), count(team) FROM interactions") == [(2, 0)]


async def test_failed_migration_is_rolled_back_and_named(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    shutil.copy(MIGRATIONS / "0001_init.sql", broken)
    (broken / "0002_half.sql").write_text("CREATE TABLE half (x);\nINSERT INTO no_such_table VALUES (1);\n")
    with pytest.raises(StoreUnavailable, match=r"0002_half\.sql failed: no such table"):
        await open_store(tmp_path / "g.db", broken)
    assert sql(tmp_path / "g.db", "SELECT version FROM schema_migrations") == [(1,)]
    assert sql(tmp_path / "g.db", "SELECT name FROM sqlite_master WHERE name = 'half'") == []


async def test_badly_named_migration_is_refused(tmp_path: Path) -> None:
    odd = tmp_path / "odd"
    odd.mkdir()
    (odd / "1_init.sql").write_text("CREATE TABLE x (y);")
    with pytest.raises(StoreUnavailable, match="must look like 0001_name.sql"):
        await open_store(tmp_path / "g.db", odd)


async def test_database_newer_than_the_code_is_refused(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    await store.close()
    with sqlite3.connect(tmp_path / "g.db") as db:
        db.execute("INSERT INTO schema_migrations VALUES (7, 'future', '2030-01-01T00:00:00.000Z')")
    with pytest.raises(SchemaTooNew, match=r"schema version 7 is newer than this gateway's newest migration \(1\)"):
        await open_store(tmp_path / "g.db")


# --- files that cannot be used ------------------------------------------------------------------

async def test_directory_as_path_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match=f"database {re.escape(str(tmp_path))}: is a directory"):
        await open_store(tmp_path)


async def test_missing_parent_directory_is_refused_clearly(tmp_path: Path) -> None:
    with pytest.raises(StoreUnavailable, match="directory .*nowhere does not exist"):
        await open_store(tmp_path / "nowhere" / "g.db")


async def test_file_that_is_not_a_database_is_refused_clearly(tmp_path: Path) -> None:
    (tmp_path / "g.db").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreUnavailable, match="not an SQLite database"):
        await open_store(tmp_path / "g.db")


READ_ONLY_PROBE = """
import asyncio, sys
from pathlib import Path
from gateway.store import Store, StoreUnavailable
async def main():
    try:
        store = await Store.open(sys.argv[1], Path(sys.argv[2]))
    except StoreUnavailable as e:
        print("REFUSED", e)
        return
    await store.close()
    print("OPENED")
asyncio.run(main())
"""


def _open_without_file_privileges(path: Path) -> str:
    """Run Store.open in a child process that file modes bind: as root, drop the capabilities that bypass them."""
    command = [sys.executable, "-c", READ_ONLY_PROBE, str(path), str(MIGRATIONS)]
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv: root ignores file modes")
        command = [setpriv, "--bounding-set=-dac_override,-dac_read_search,-fowner"] + command
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=60)
    assert "REFUSED" in result.stdout or "OPENED" in result.stdout, result.stderr
    return result.stdout.strip()


async def test_read_only_file_is_refused_clearly(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    await store.close()
    (tmp_path / "g.db").chmod(0o444)
    try:
        out = _open_without_file_privileges(tmp_path / "g.db")
    finally:
        (tmp_path / "g.db").chmod(0o644)
    assert out.startswith(f"REFUSED database {tmp_path / 'g.db'}: ") and "read-only" in out


async def test_read_only_directory_is_refused_clearly(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)  # SQLite cannot create g.db (nor its -wal and -shm) here
    try:
        out = _open_without_file_privileges(folder / "g.db")
    finally:
        folder.chmod(0o755)
    assert out == f"REFUSED database {folder / 'g.db'}: directory {folder} is not writable, so the file cannot be created"


async def test_file_locked_by_another_connection_is_refused_within_the_busy_timeout(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "g.db") as db:  # rollback-journal mode: switching to WAL needs the lock
        db.execute("CREATE TABLE unrelated (x)")
    holder = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    started = time.monotonic()
    try:
        with pytest.raises(StoreUnavailable, match=r"locked by another connection \(gave up after 0.3 s\)"):
            await open_store(tmp_path / "g.db", busy_timeout=0.3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert 0.25 <= time.monotonic() - started < 3


async def test_write_while_locked_fails_the_batch_and_reports_unhealthy_until_it_works(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db", busy_timeout=0.2)
    try:
        holder = sqlite3.connect(tmp_path / "g.db", isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # the write lock; readers still read (WAL)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable, match="locked by another connection"):
            await store.write_batch([make(), make()])
        assert time.monotonic() - started < 3
        health = await store.health()
        assert not health.healthy and "locked" in health.last_error and health.failed_writes == 2
        assert await store.recent() == []  # reads keep working
        holder.execute("ROLLBACK")
        holder.close()
        assert await store.insert_batch([make()]) == 1
        health = await store.health()
        assert health.healthy and health.last_error is None
    finally:
        await store.close()


async def test_close_truncates_the_wal_and_periodic_checkpoints_too(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db", checkpoint_interval=0)
    await store.insert_batch([make() for _ in range(200)])
    assert os.path.getsize(tmp_path / "g.db-wal") == 0  # checkpointed (TRUNCATE) right after the batch
    await store.close()
    assert not (tmp_path / "g.db-wal").exists() or os.path.getsize(tmp_path / "g.db-wal") == 0
    health = await store.health()
    assert not health.healthy and health.last_error


# --- queries ------------------------------------------------------------------------------------

async def test_quota_timestamps_per_key_since(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        t = MIDNIGHT + 5000.25
        await store.insert_batch([
            make(key_name="a", ts=t + 2), make(key_name="a", ts=t), make(key_name="b", ts=t + 1.5),
            make(key_name="a", ts=t + 3, quota_counted=False), make(key_name="b", ts=t - 10),
            make(key_name=None, ts=t + 4)])
        assert await store.quota_timestamps(t - 1) == {"a": [t, t + 2], "b": [t + 1.5]}
        assert await store.quota_timestamps(t + 5) == {}
    finally:
        await store.close()


def _brute_usage(records: list[Interaction], since: float, until: float | None, group_by: tuple) -> dict:
    out: dict = {}
    for r in records:
        if r.ts < since or (until is not None and r.ts >= until):
            continue
        names = {"key": r.key_name, "provider": r.provider, "model": r.model,
                 "day": time.strftime("%Y-%m-%d", time.gmtime(r.ts))}
        t = out.setdefault(tuple(names[g] for g in group_by), [0, 0, 0, 0, 0, 0, 0.0, 0])
        u = r.usage or Usage()
        t[0] += 1
        t[1] += r.status >= 400
        t[2] += u.prompt_tokens
        t[3] += u.completion_tokens
        t[4] += u.cached_tokens
        t[5] += u.cache_write_tokens
        t[6] += r.cost_usd or 0.0
        t[7] += r.cost_usd is None and r.usage is not None and u.total_tokens > 0
    return out


async def test_usage_matches_a_brute_force_sum_over_any_window(tmp_path: Path) -> None:
    rnd = random.Random(7)
    records = []
    for _ in range(400):
        priced = rnd.random() < 0.8
        usage = None if rnd.random() < 0.1 else Usage(rnd.randint(1, 900), rnd.randint(0, 300),
                                                     rnd.randint(0, 50), rnd.randint(0, 50))
        records.append(make(ts=MIDNIGHT + rnd.uniform(0, 5 * DAY), key_name=rnd.choice(["a", "b", None]),
                            provider=rnd.choice(["openai", "anthropic"]), model=rnd.choice(["m1", "m2", None]),
                            status=rnd.choice([200, 200, 200, 429, 500]), usage=usage,
                            cost_usd=round(rnd.uniform(0, 0.01), 6) if priced else None))
    store = await open_store(tmp_path / "g.db")
    try:
        await store.insert_batch(records)
        windows = [(MIDNIGHT - DAY, None), (MIDNIGHT, MIDNIGHT + 5 * DAY), (MIDNIGHT + 3600.5, None),
                   (MIDNIGHT + 0.6 * DAY, MIDNIGHT + 0.9 * DAY), (MIDNIGHT + 0.6 * DAY, MIDNIGHT + 3.2 * DAY),
                   (MIDNIGHT + DAY, MIDNIGHT + 2 * DAY), (MIDNIGHT + 2 * DAY, MIDNIGHT + DAY)]
        for since, until in windows:
            for group_by in [("key", "model"), ("provider",), ("day", "key"), ("key", "provider", "model")]:
                expected = _brute_usage(records, since, until, group_by)
                got = {tuple(getattr(u, g) for g in group_by): u for u in await store.usage(since, until, group_by)}
                assert set(got) == set(expected), (since, until, group_by)
                for group, t in expected.items():
                    u = got[group]
                    assert [u.requests, u.errors, u.prompt_tokens, u.completion_tokens, u.cached_tokens,
                            u.cache_write_tokens, u.unpriced] == t[:6] + [t[7]], (since, until, group)
                    assert u.cost_usd == pytest.approx(t[6])
        with pytest.raises(ValueError, match="group_by"):
            await store.usage(MIDNIGHT, group_by=("status",))
    finally:
        await store.close()


async def test_recent_filters_and_pages_newest_first(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        records = [make(ts=MIDNIGHT + i, key_name=("a", "b")[i % 2], model=("m1", "m2", "m3")[i % 3],
                        provider="anthropic" if i % 5 == 0 else "openai",
                        status=(200, 429, 500, 502, 200, 404)[i % 6]) for i in range(60)]
        await store.insert_batch(records)
        newest = [r.id for r in sorted(records, key=lambda r: -r.ts)]
        page1, page2 = await store.recent(limit=25), await store.recent(limit=25, offset=25)
        assert [r.id for r in page1 + page2] == newest[:50]
        assert all(r.request is None and r.response is None for r in page1)
        assert (await store.recent(limit=1, include_bodies=True))[0].request == '{"model": "gpt-4o"}'

        def ids(pred) -> list[str]:  # type: ignore[no-untyped-def]
            return [r.id for r in sorted(records, key=lambda r: -r.ts) if pred(r)]

        assert [r.id for r in await store.recent(limit=100, key="a")] == ids(lambda r: r.key_name == "a")
        assert [r.id for r in await store.recent(limit=100, model="m2", key="b")] == ids(
            lambda r: r.model == "m2" and r.key_name == "b")
        assert [r.id for r in await store.recent(limit=100, provider="anthropic")] == ids(
            lambda r: r.provider == "anthropic")
        assert [r.id for r in await store.recent(limit=100, status=429)] == ids(lambda r: r.status == 429)
        assert [r.id for r in await store.recent(limit=100, status="5xx")] == ids(lambda r: r.status >= 500)
        assert [r.id for r in await store.recent(limit=100, status="4xx")] == ids(lambda r: 400 <= r.status < 500)
        assert [r.id for r in await store.recent(limit=100, status="error")] == ids(lambda r: r.status >= 400)
        assert [r.id for r in await store.recent(limit=100, status="2xx", model="m1")] == ids(
            lambda r: r.status == 200 and r.model == "m1")
        assert await store.recent(key="nobody") == []
        with pytest.raises(ValueError, match="status filter"):
            await store.recent(status="teapot")
        assert await store.get("no-such-id") is None
    finally:
        await store.close()


async def test_timeseries_buckets_counts_and_percentiles(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        durations = [float(d) for d in range(1, 21)]  # 20 requests in the first minute
        records = [make(ts=MIDNIGHT + i, duration_ms=d, status=500 if i < 2 else 200) for i, d in enumerate(durations)]
        records.append(make(ts=MIDNIGHT + 120, duration_ms=7.0))  # the third minute
        records.append(make(ts=MIDNIGHT + 180, duration_ms=1.0))  # at `until`: excluded
        await store.insert_batch(records)
        buckets = await store.timeseries(MIDNIGHT, 60, until=MIDNIGHT + 180)
        assert [b.start for b in buckets] == [MIDNIGHT, MIDNIGHT + 60, MIDNIGHT + 120, MIDNIGHT + 180]
        first = buckets[0]
        assert (first.requests, first.errors, first.avg_ms, first.p50_ms, first.p95_ms) == (20, 2, 10.5, 10.0, 19.0)
        assert (buckets[1].requests, buckets[1].avg_ms, buckets[1].p50_ms) == (0, None, None)
        assert (buckets[2].requests, buckets[2].p50_ms, buckets[2].p95_ms) == (1, 7.0, 7.0)
        assert buckets[3].requests == 0
        with pytest.raises(ValueError, match="bucket_s"):
            await store.timeseries(MIDNIGHT, 0)
    finally:
        await store.close()


async def test_distinct_values_for_filters(tmp_path: Path) -> None:
    store = await open_store(tmp_path / "g.db")
    try:
        await store.insert_batch([make(key_name="b", model="m2"), make(key_name="a", provider="anthropic", model="m1"),
                                  make(key_name=None, provider=None, model=None, status=401)])
        values = await store.distinct_values()
        assert (values.keys, values.providers, values.models) == (["a", "b"], ["anthropic", "openai"], ["m1", "m2"])
    finally:
        await store.close()


async def test_prune_deletes_in_chunks_and_keeps_daily_usage(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "PRUNE_CHUNK", 7)
    store = await open_store(tmp_path / "g.db")
    try:
        old = [make(ts=MIDNIGHT + i, cost_usd=0.01) for i in range(30)]
        new = [make(ts=MIDNIGHT + 2 * DAY + i) for i in range(5)]
        await store.insert_batch(old + new)
        assert await store.prune(MIDNIGHT + DAY) == 30
        assert await store.prune(MIDNIGHT + DAY) == 0
        assert sorted(r.id for r in await store.recent(limit=100)) == sorted(r.id for r in new)
        (day1,) = await store.usage(MIDNIGHT, MIDNIGHT + DAY, group_by=("day",))  # a whole pruned day
        assert (day1.day, day1.requests, day1.cost_usd) == ("2026-01-01", 30, pytest.approx(0.3))
    finally:
        await store.close()


async def test_a_prune_cancelled_mid_transaction_leaves_none_open(tmp_path: Path, caplog) -> None:
    # A shutdown cancels the pruner wherever it is. Cancelled between BEGIN and COMMIT, it must roll
    # back, or the final batch would meet "cannot start a transaction within a transaction" and the
    # closing checkpoint "database table is locked".
    store = await open_store(tmp_path / "g.db")
    await store.insert_batch([make(ts=MIDNIGHT)])
    execute, began = store._db.execute, asyncio.Event()

    async def pausing_after_begin(query, *args):  # type: ignore[no-untyped-def]
        result = await execute(query, *args)
        if query == "BEGIN IMMEDIATE" and not began.is_set():
            began.set()
            await asyncio.sleep(30)  # where a shutdown's cancel finds it
        return result

    store._db.execute = pausing_after_begin  # type: ignore[method-assign]
    pruning = asyncio.ensure_future(store.prune(time.time()))
    await began.wait()
    pruning.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pruning
    store._db.execute = execute  # type: ignore[method-assign]
    assert await store.insert_batch([make(), make()]) == 2
    await store.close()
    assert not [r for r in caplog.records if "checkpoint failed" in r.getMessage()]
    assert sql(tmp_path / "g.db", "SELECT count(*) FROM interactions") == [(3,)]
