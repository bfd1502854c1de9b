"""The only module with SQL: interactions kept in SQLite through aiosqlite, returned as dataclasses.

Two connections, each opened once: a writer (migrations, inserts, prune, checkpoints)
and a query_only reader, so a slow dashboard query never delays the record writer
(WAL lets them run at the same time). The schema lives in migrations/*.sql.

WAL growth: SQLite's auto-checkpoint (every ~1000 pages) copies the WAL back after
commits; every `checkpoint_interval` seconds the writer also runs
`wal_checkpoint(TRUNCATE)`, which waits for readers on an old snapshot and then empties
the file, and `journal_size_limit` caps what a reset WAL keeps. `close()` truncates it too.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
import sqlite3
import time
from collections.abc import Iterable, Iterator
from dataclasses import fields
from pathlib import Path

import aiosqlite

from gateway.jsonlog import FIELDS, iso_utc
from gateway.record import Interaction
from gateway.storage import (DistinctValues, InteractionRow, StoreHealth, TimeBucket, UsageRow, daily_totals,
                             row_from_interaction, sanitise_row)

log = logging.getLogger(__name__)

BUSY_TIMEOUT_S = 5.0
CHECKPOINT_INTERVAL_S = 300.0
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024
PRUNE_CHUNK = 2000  # rows per delete transaction: keeps each hold of the write lock short
HEALTH_TTL_S = 2.0
HEALTH_PROBE_TIMEOUT_S = 1.0
MAX_PAGE = 1000
MAX_BUCKETS = 10_000
DAY_S = 86400

_MIGRATION_FILE = re.compile(r"^(\d{4})_([A-Za-z0-9_]+)\.sql$")
# Errors that belong to one row (bad value, duplicate id), as opposed to the database.
_ROW_ERRORS = (ValueError, OverflowError, TypeError, sqlite3.IntegrityError, sqlite3.DataError,
               sqlite3.InterfaceError, sqlite3.ProgrammingError)
_EPOCH_MS = "CAST(round((julianday(ts) - 2440587.5) * 86400000.0) AS INTEGER)"

_UPSERT_DAILY = (
    "INSERT INTO usage_daily (day, key, provider, model, requests, errors, prompt_tokens, completion_tokens, "
    "cached_tokens, cache_write_tokens, cost_usd, unpriced) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (day, key, provider, model) DO UPDATE SET requests = requests + excluded.requests, "
    "errors = errors + excluded.errors, prompt_tokens = prompt_tokens + excluded.prompt_tokens, "
    "completion_tokens = completion_tokens + excluded.completion_tokens, "
    "cached_tokens = cached_tokens + excluded.cached_tokens, "
    "cache_write_tokens = cache_write_tokens + excluded.cache_write_tokens, "
    "cost_usd = cost_usd + excluded.cost_usd, unpriced = unpriced + excluded.unpriced")
_INSERT = f"INSERT INTO interactions ({', '.join(FIELDS)}) VALUES ({', '.join('?' * len(FIELDS))})"
_COLUMNS = ", ".join(FIELDS)
_COLUMNS_NO_BODIES = ", ".join(FIELDS[:-2]) + ", NULL, NULL"
_STATUS_CLASSES = {"2xx": (200, 299), "3xx": (300, 399), "4xx": (400, 499), "5xx": (500, 599), "error": (400, 999)}
_CAUSES = (
    (("locked", "busy"), "locked by another connection (gave up after {timeout:g} s)"),
    (("readonly", "read-only"), "read-only (the file or its directory is not writable)"),
    (("unable to open",), "cannot open the file (missing directory, a directory, or no permission)"),
    (("not a database",), "not an SQLite database"),
    (("malformed",), "the database file is corrupt"),
    (("full",), "the disk is full"),
)
_GROUPS_RAW = {"key": "coalesce(key, '')", "provider": "coalesce(provider, '')",
               "model": "coalesce(model, '')", "day": "substr(ts, 1, 10)"}
assert tuple(f.name for f in fields(InteractionRow)) == FIELDS, "InteractionRow must mirror jsonlog.FIELDS"
_BOOL_FIELDS = frozenset(i for i, f in enumerate(FIELDS) if f in ("stream", "incomplete", "quota_counted", "truncated"))


class StoreUnavailable(Exception):
    """The database cannot be opened or written: read-only, locked, missing directory, corrupt..."""


class SchemaTooNew(StoreUnavailable):
    """The database was migrated by a newer gateway than this one."""


def _collect(rows: Iterable[tuple], into: list[tuple]) -> Iterator[tuple]:
    # Passes rows through to executemany, keeping them for daily_totals.
    for row in rows:
        into.append(row)
        yield row


def _explain(path: str, error: BaseException, busy_timeout: float) -> str:
    """One line naming the path and the cause, SQLite's own message kept in brackets."""
    text = str(error).lower()
    cause = next((c for needles, c in _CAUSES if any(n in text for n in needles)), "unusable")
    return f"database {path}: {cause.format(timeout=busy_timeout)} ({error})"


def _check_path(path: str) -> None:
    # Python can name these causes; SQLite would only say "unable to open database file".
    if path == ":memory:" or path.startswith("file:"):
        return
    p = Path(path)
    if p.is_dir():
        raise StoreUnavailable(f"database {path}: is a directory, not a file")
    if not p.parent.is_dir():
        raise StoreUnavailable(f"database {path}: directory {p.parent} does not exist")
    if p.exists() and not os.access(p, os.R_OK | os.W_OK):
        raise StoreUnavailable(f"database {path}: the file is read-only for this user")
    if not p.exists() and not os.access(p.parent, os.W_OK | os.X_OK):
        raise StoreUnavailable(f"database {path}: directory {p.parent} is not writable, so the file cannot be created")


def _read_migrations(directory: Path) -> list[tuple[int, str, str]]:
    """(version, name, sql) of every NNNN_name.sql in `directory`, in version order."""
    if not directory.is_dir():
        raise StoreUnavailable(f"migrations directory {directory} does not exist")
    found: dict[int, tuple[int, str, str]] = {}
    for file in sorted(directory.glob("*.sql")):
        match = _MIGRATION_FILE.match(file.name)
        if match is None:
            raise StoreUnavailable(f"migration {file}: the name must look like 0001_name.sql")
        version = int(match[1])
        if version in found:
            raise StoreUnavailable(f"migration {file}: version {version} appears twice")
        found[version] = (version, match[2], file.read_text(encoding="utf-8"))
    if not found:
        raise StoreUnavailable(f"migrations directory {directory} holds no NNNN_name.sql file")
    return [found[v] for v in sorted(found)]


async def _connect(path: str, busy_timeout: float, *, query_only: bool = False) -> aiosqlite.Connection:
    # isolation_level=None: we issue BEGIN IMMEDIATE / COMMIT ourselves.
    db = await aiosqlite.connect(path, isolation_level=None)
    try:
        await db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        await db.execute("PRAGMA foreign_keys = ON")
        await db.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL keeps it consistent
        if query_only:
            await db.execute("PRAGMA query_only = ON")
    except BaseException:
        await db.close()
        raise
    return db


async def _applied_versions(db: aiosqlite.Connection) -> set[int]:
    exists = await db.execute_fetchall(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'")
    if not exists:
        return set()
    return {v for (v,) in await db.execute_fetchall("SELECT version FROM schema_migrations")}


async def _rollback(db: aiosqlite.Connection) -> None:
    try:
        await db.execute("ROLLBACK")
    except sqlite3.Error:
        pass  # no transaction was open


async def _migrate(db: aiosqlite.Connection, path: str, migrations: list[tuple[int, str, str]]) -> None:
    applied = await _applied_versions(db)
    newest = migrations[-1][0]
    if applied and max(applied) > newest:
        raise SchemaTooNew(f"database {path}: schema version {max(applied)} is newer than this gateway's "
                           f"newest migration ({newest}); run a newer gateway or use another database file")
    for version, name, sql in migrations:
        if version in applied:
            continue
        # One script, one transaction: executescript would commit a transaction opened apart.
        script = (f"BEGIN IMMEDIATE;\n{sql}\n;\nINSERT INTO schema_migrations (version, name, applied_at) "
                  f"VALUES ({version}, '{name}', strftime('%Y-%m-%dT%H:%M:%fZ', 'now'));\nCOMMIT;")
        try:
            await db.executescript(script)
        except sqlite3.Error as e:
            await _rollback(db)
            if version in await _applied_versions(db):
                continue  # another gateway process applied it first
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise StoreUnavailable(f"database {path}: migration {version:04d}_{name}.sql failed: {e}") from e
        log.info("applied migration %04d_%s to %s", version, name, path)


def _status_range(status: int | str) -> tuple[int, int]:
    if isinstance(status, int):
        return status, status
    if status in _STATUS_CLASSES:
        return _STATUS_CLASSES[status]
    if status.isdigit():
        return int(status), int(status)
    raise ValueError(f"status filter {status!r}: expected a number, 2xx, 3xx, 4xx, 5xx or error")


def _to_row(values: tuple) -> InteractionRow:
    return InteractionRow(*(bool(v) if i in _BOOL_FIELDS else v for i, v in enumerate(values)))


class Store:
    """Interactions in one SQLite file: batched inserts, dashboard queries, prune, health."""

    def __init__(self, path: str, writer: aiosqlite.Connection, reader: aiosqlite.Connection,
                 *, busy_timeout: float, checkpoint_interval: float) -> None:
        self.path = path
        self.name = "store"
        self._db = writer
        self._ro = reader
        self._busy_timeout = busy_timeout
        self._write_lock = asyncio.Lock()  # one write transaction at a time on the writer
        self._checkpoint_interval = checkpoint_interval
        self._last_checkpoint = time.monotonic()
        self._closed = False
        self.rows_written = 0
        self.failed_writes = 0
        self.dropped_rows = 0
        self._write_error: str | None = None  # set while writes fail, cleared by the next success
        self._probe_at = -math.inf
        self._probe_error: str | None = None

    @classmethod
    async def open(cls, path: str, migrations_dir: Path, *, busy_timeout: float = BUSY_TIMEOUT_S,
                   checkpoint_interval: float = CHECKPOINT_INTERVAL_S) -> Store:
        """Open (creating if needed) and migrate the database; StoreUnavailable says why it cannot be used."""
        path = str(path)
        migrations = _read_migrations(Path(migrations_dir))
        _check_path(path)
        writer = reader = None
        try:
            writer = await _connect(path, busy_timeout)
            mode = (await writer.execute_fetchall("PRAGMA journal_mode = WAL"))[0][0]
            if mode != "wal" and path != ":memory:":
                log.warning("database %s: journal_mode is %s, not wal; readers will block the writer", path, mode)
            await writer.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            await _migrate(writer, path, migrations)
            # ":memory:" is private to its connection: the reader must be the writer.
            reader = writer if path == ":memory:" else await _connect(path, busy_timeout, query_only=True)
        except BaseException as e:
            for db in {id(c): c for c in (reader, writer) if c is not None}.values():
                await db.close()
            if isinstance(e, sqlite3.Error):
                raise StoreUnavailable(_explain(path, e, busy_timeout)) from e
            raise
        return cls(path, writer, reader, busy_timeout=busy_timeout, checkpoint_interval=checkpoint_interval)

    async def close(self) -> None:
        """Truncate the WAL into the database file and close both connections (their threads would outlive the loop)."""
        if self._closed:
            return
        self._closed = True
        async with self._write_lock:
            if self._ro is not self._db:
                await self._ro.close()  # first, so no reader snapshot holds the checkpoint back
            try:
                await self._db.execute("PRAGMA optimize")  # refreshes planner statistics for ad-hoc queries
                await self._db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as e:
                log.warning("database %s: final checkpoint failed: %s", self.path, e)
            await self._db.close()

    # -- writing ---------------------------------------------------------------------------

    async def write_batch(self, records: list[Interaction]) -> None:
        """The Recorder's sink interface: insert_batch, raising StoreUnavailable if nothing could be written."""
        await self.insert_batch(records)

    async def insert_batch(self, records: list[Interaction]) -> int:
        """Insert records in one transaction; a row SQLite refuses is sanitised or dropped alone. Returns rows written."""
        if not records:
            return 0
        if self._closed:
            raise StoreUnavailable(f"database {self.path}: the store is closed")
        async with self._write_lock:
            try:
                try:
                    rows: list[tuple] = []
                    await self._db.execute("BEGIN IMMEDIATE")
                    # Generators: the rows are built in the database thread, not on the event loop.
                    await self._db.executemany(_INSERT, _collect(map(row_from_interaction, records), rows))
                    await self._db.executemany(_UPSERT_DAILY, daily_totals(rows))
                    await self._db.execute("COMMIT")
                    written = len(records)
                except Exception as e:
                    if isinstance(e, sqlite3.OperationalError) or type(e) is sqlite3.DatabaseError:
                        raise  # the database's trouble (locked, I/O, corrupt), not a row's
                    await _rollback(self._db)  # some rows may be in already: start over, one at a time
                    written = await self._insert_one_by_one(records)
                await self._maybe_checkpoint()
            except sqlite3.Error as e:
                await _rollback(self._db)
                self.failed_writes += len(records)
                self._write_error = _explain(self.path, e, self._busy_timeout)
                raise StoreUnavailable(self._write_error) from e
            except asyncio.CancelledError:
                # An open transaction would make every later write fail ("within a transaction").
                await _rollback(self._db)
                raise
        self.rows_written += written
        self._write_error = None
        return written

    async def _insert_one_by_one(self, records: list[Interaction]) -> int:
        written: list[tuple] = []
        await self._db.execute("BEGIN IMMEDIATE")
        for record in records:
            try:
                row = row_from_interaction(record)
            except Exception:
                log.exception("dropped record %s: cannot be made a row", getattr(record, "id", "?"))
                self.dropped_rows += 1
                self.failed_writes += 1
                continue
            try:
                await self._db.execute(_INSERT, row)
                written.append(row)
                continue
            except _ROW_ERRORS as e:
                first_error = e
            try:
                clean = sanitise_row(row)
                await self._db.execute(_INSERT, clean)
                written.append(clean)
                log.warning("record %s sanitised before insert: %s", row[0], first_error)
            except _ROW_ERRORS as e:
                self.dropped_rows += 1
                self.failed_writes += 1
                log.warning("dropped record %s: %s", row[0], e)
        await self._db.executemany(_UPSERT_DAILY, daily_totals(written))
        await self._db.execute("COMMIT")
        return len(written)

    async def _maybe_checkpoint(self) -> None:
        if time.monotonic() - self._last_checkpoint < self._checkpoint_interval:
            return
        self._last_checkpoint = time.monotonic()
        try:
            busy, wal_pages, copied = (await self._db.execute_fetchall("PRAGMA wal_checkpoint(TRUNCATE)"))[0]
        except sqlite3.Error as e:
            log.warning("database %s: checkpoint failed: %s", self.path, e)
            return
        if busy:
            log.warning("database %s: checkpoint incomplete (%s of %s WAL pages copied): "
                        "a reader holds an old snapshot", self.path, copied, wal_pages)

    async def prune(self, older_than: float) -> int:
        """Delete rows with ts before `older_than` in small transactions (no VACUUM); returns rows deleted."""
        cutoff, total = iso_utc(older_than), 0
        while True:
            async with self._write_lock:
                try:
                    await self._db.execute("BEGIN IMMEDIATE")
                    cursor = await self._db.execute(
                        "DELETE FROM interactions WHERE seq IN "
                        "(SELECT seq FROM interactions WHERE ts < ? ORDER BY ts LIMIT ?)", (cutoff, PRUNE_CHUNK))
                    deleted = cursor.rowcount
                    await self._db.execute("COMMIT")
                except sqlite3.Error as e:
                    await _rollback(self._db)
                    raise StoreUnavailable(_explain(self.path, e, self._busy_timeout)) from e
                except asyncio.CancelledError:
                    await _rollback(self._db)  # a shutdown cancels the pruner: leave no transaction open
                    raise
            total += deleted
            if deleted < PRUNE_CHUNK:
                return total
            await asyncio.sleep(0)  # the lock is FIFO: a waiting batch goes between two chunks

    # -- reading (the query_only connection) -----------------------------------------------

    async def quota_timestamps(self, since: float) -> dict[str, list[float]]:
        """Epoch seconds of each key's quota-counted requests since `since`, oldest first."""
        rows = await self._ro.execute_fetchall(
            f"SELECT key, {_EPOCH_MS} FROM interactions INDEXED BY interactions_ts "
            "WHERE ts >= ? AND quota_counted = 1 AND key IS NOT NULL ORDER BY ts", (iso_utc(since),))
        out: dict[str, list[float]] = {}
        for key, ms in rows:
            out.setdefault(key, []).append(ms / 1000)
        return out

    async def usage(self, since: float, until: float | None = None,
                    group_by: tuple[str, ...] = ("key", "model")) -> list[UsageRow]:
        """Requests, errors, tokens and cost per group in [since, until): whole UTC days from usage_daily, the edges from rows."""
        unknown = set(group_by) - set(_GROUPS_RAW)
        if unknown or not group_by:
            raise ValueError(f"group_by {group_by!r}: expected some of {sorted(_GROUPS_RAW)}")
        first_day = math.ceil(since / DAY_S) * DAY_S
        last_day = None if until is None else math.floor(until / DAY_S) * DAY_S
        totals: dict[tuple, list] = {}
        if last_day is not None and last_day <= first_day:
            await self._usage_rows(totals, group_by, since, until)
        else:
            await self._usage_rows(totals, group_by, since, first_day)
            await self._usage_days(totals, group_by, first_day, last_day)
            if last_day is not None and until is not None and until > last_day:
                await self._usage_rows(totals, group_by, last_day, until)
        result = []
        for group, t in sorted(totals.items()):
            named = {g: (v or None) for g, v in zip(group_by, group)}  # '' stood for NULL
            result.append(UsageRow(named.get("key"), named.get("provider"), named.get("model"), named.get("day"), *t))
        return result

    async def _usage_rows(self, totals: dict, group_by: tuple[str, ...], start: float, end: float | None) -> None:
        if end is not None and end <= start:
            return
        cols = ", ".join(_GROUPS_RAW[g] for g in group_by)
        where, args = "ts >= ?", [iso_utc(start)]
        if end is not None:
            where, args = where + " AND ts < ?", args + [iso_utc(end)]
        # INDEXED BY: grouping by key tempts the planner into scanning the key index whole.
        _add(totals, len(group_by), await self._ro.execute_fetchall(
            f"SELECT {cols}, count(*), coalesce(sum(status >= 400), 0), coalesce(sum(prompt_tokens), 0), "
            "coalesce(sum(completion_tokens), 0), coalesce(sum(cached_tokens), 0), "
            "coalesce(sum(cache_write_tokens), 0), total(cost_usd), "
            "coalesce(sum(cost_usd IS NULL AND coalesce(total_tokens, 0) > 0), 0) "
            f"FROM interactions INDEXED BY interactions_ts WHERE {where} GROUP BY {cols}", args))

    async def _usage_days(self, totals: dict, group_by: tuple[str, ...], start: float, end: float | None) -> None:
        cols = ", ".join(group_by)
        where, args = "day >= ?", [iso_utc(start)[:10]]
        if end is not None:
            where, args = where + " AND day < ?", args + [iso_utc(end)[:10]]
        _add(totals, len(group_by), await self._ro.execute_fetchall(
            f"SELECT {cols}, sum(requests), sum(errors), sum(prompt_tokens), sum(completion_tokens), "
            "sum(cached_tokens), sum(cache_write_tokens), total(cost_usd), sum(unpriced) "
            f"FROM usage_daily WHERE {where} GROUP BY {cols}", args))

    async def recent(self, *, limit: int = 50, offset: int = 0, key: str | None = None,
                     provider: str | None = None, model: str | None = None,
                     status: int | str | None = None, include_bodies: bool = False) -> list[InteractionRow]:
        """Newest first, filtered; status takes a code or "2xx"/"4xx"/"5xx"/"error". Bodies only if asked."""
        where, args = [], []
        for column, value in (("key", key), ("provider", provider), ("model", model)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if status is not None:
            where.append("status BETWEEN ? AND ?")
            args.extend(_status_range(status))
        sql = f"SELECT {_COLUMNS if include_bodies else _COLUMNS_NO_BODIES} FROM interactions"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, seq DESC LIMIT ? OFFSET ?"
        args += [max(0, min(limit, MAX_PAGE)), max(0, offset)]
        return [_to_row(r) for r in await self._ro.execute_fetchall(sql, args)]

    async def get(self, id: str) -> InteractionRow | None:
        """One interaction by its id, bodies included."""
        rows = await self._ro.execute_fetchall(f"SELECT {_COLUMNS} FROM interactions WHERE id = ?", (id,))
        return _to_row(rows[0]) if rows else None

    async def timeseries(self, since: float, bucket_s: int, until: float | None = None) -> list[TimeBucket]:
        """Requests, errors, average/p50/p95 duration per bucket from `since`, empty buckets included."""
        until = time.time() if until is None else until
        if bucket_s < 1 or (until - since) / bucket_s > MAX_BUCKETS:
            raise ValueError(f"bucket_s {bucket_s}: must be >= 1 and give at most {MAX_BUCKETS} buckets")
        # Nearest-rank percentiles with window functions, so the sorting happens in SQLite's thread.
        rows = await self._ro.execute_fetchall(
            f"WITH w AS (SELECT {_EPOCH_MS} / :ms AS b, duration_ms AS d, status FROM interactions "
            "INDEXED BY interactions_ts WHERE ts >= :since AND ts < :until), "
            "r AS (SELECT b, d, status, row_number() OVER (PARTITION BY b ORDER BY d) AS rn, "
            "count(*) OVER (PARTITION BY b) AS n FROM w) "
            "SELECT b, count(*), sum(status >= 400), avg(d), min(CASE WHEN rn >= 0.5 * n THEN d END), "
            "min(CASE WHEN rn >= 0.95 * n THEN d END) FROM r GROUP BY b ORDER BY b",
            {"ms": bucket_s * 1000, "since": iso_utc(since), "until": iso_utc(until)})
        found = {b: r for b, *r in rows}
        first, last = int(since * 1000) // (bucket_s * 1000), int(until * 1000) // (bucket_s * 1000)
        return [TimeBucket(float(b * bucket_s), *found[b]) if b in found
                else TimeBucket(float(b * bucket_s), 0, 0, None, None, None) for b in range(first, last + 1)]

    async def distinct_values(self) -> DistinctValues:
        """Keys, providers and models ever recorded (from usage_daily, which prune leaves alone)."""
        out = []
        for column in ("key", "provider", "model"):
            rows = await self._ro.execute_fetchall(
                f"SELECT DISTINCT {column} FROM usage_daily WHERE {column} != '' ORDER BY {column}")
            out.append([v for (v,) in rows])
        return DistinctValues(*out)

    async def health(self) -> StoreHealth:
        """Healthy when the last write succeeded and a cheap read (cached for a few seconds) answers."""
        now = time.monotonic()
        if now - self._probe_at >= HEALTH_TTL_S:
            self._probe_at = now
            try:
                await asyncio.wait_for(self._ro.execute_fetchall("SELECT count(*) FROM schema_migrations"),
                                       HEALTH_PROBE_TIMEOUT_S)
                self._probe_error = None
            except asyncio.TimeoutError:
                self._probe_error = f"database {self.path}: no answer within {HEALTH_PROBE_TIMEOUT_S:g} s"
            except (sqlite3.Error, ValueError) as e:  # aiosqlite raises ValueError once closed
                self._probe_error = _explain(self.path, e, self._busy_timeout)
        error = self._probe_error or self._write_error
        return StoreHealth(error is None, self.path, error, self.rows_written, self.failed_writes, self.dropped_rows)


def _add(totals: dict[tuple, list], width: int, rows) -> None:
    for row in rows:
        group, values = tuple(row[:width]), list(row[width:])
        if group in totals:
            totals[group] = [a + b for a, b in zip(totals[group], values)]
        else:
            totals[group] = values
