-- The gateway's first schema. Applied by gateway/store.py in one transaction,
-- recorded in schema_migrations. Migration files must not contain BEGIN/COMMIT.

CREATE TABLE schema_migrations (
    version    INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL,
    applied_at TEXT    NOT NULL            -- UTC, 'YYYY-MM-DDTHH:MM:SS.mmmZ'
);

-- One row per request through the gateway, rejected ones included.
-- The column names are a public interface: people query this table with SQL.
CREATE TABLE interactions (
    -- Insertion order; an INTEGER PRIMARY KEY so VACUUM cannot renumber it.
    seq                INTEGER PRIMARY KEY,
    id                 TEXT    NOT NULL UNIQUE,   -- the record's id (uuid4 hex)
    ts                 TEXT    NOT NULL,          -- arrival, UTC 'YYYY-MM-DDTHH:MM:SS.mmmZ'
    key                TEXT,                      -- the key's name or masked form, never the key
    provider           TEXT,
    model              TEXT,
    method             TEXT    NOT NULL,
    path               TEXT    NOT NULL,
    endpoint           TEXT    NOT NULL,
    stream             INTEGER NOT NULL DEFAULT 0 CHECK (stream IN (0, 1)),
    status             INTEGER NOT NULL,
    duration_ms        REAL    NOT NULL,
    ttfb_ms            REAL,
    upstream_ms        REAL,
    overhead_ms        REAL,
    prompt_tokens      INTEGER,                   -- NULL when the reply reported no usage
    completion_tokens  INTEGER,
    total_tokens       INTEGER,
    cached_tokens      INTEGER,
    cache_write_tokens INTEGER,
    cost_usd           REAL,                      -- NULL when the model's price is unknown
    error_type         TEXT,
    error_message      TEXT,
    client_ip          TEXT,
    incomplete         INTEGER NOT NULL DEFAULT 0 CHECK (incomplete IN (0, 1)),
    quota_counted      INTEGER NOT NULL DEFAULT 0 CHECK (quota_counted IN (0, 1)),
    truncated          INTEGER NOT NULL DEFAULT 0 CHECK (truncated IN (0, 1)),
    -- The bodies come last on purpose: SQLite reads a row's columns in order, so
    -- queries on the columns above never walk a large body's overflow pages.
    request            TEXT,                      -- JSON text, possibly truncated
    response           TEXT                       -- JSON text, possibly truncated
);

-- Newest first, time windows, prune; the rowid (seq) breaks ties in the index order.
CREATE INDEX interactions_ts ON interactions (ts);
-- Quota rebuild and per-key listings.
CREATE INDEX interactions_key_ts ON interactions (key, ts);
-- Dashboard filters: without these a rare model or status scans the whole table
-- (measured: 190 ms at 200k rows, 0.1 ms with the index; insert cost within noise).
CREATE INDEX interactions_model_ts ON interactions (model, ts);
CREATE INDEX interactions_status_ts ON interactions (status, ts);

-- Per-day totals, added to by gateway/store.py in the same transaction as the rows.
-- Usage over long windows reads this instead of grouping every row (measured at
-- 200k rows: ~0.6 s to group the raw rows for 30 days, ~20 ms with this table).
-- Not a trigger: an AFTER INSERT trigger copies each row, bodies included, and halved
-- insert throughput; one upsert per (day, key, provider, model) of a batch costs ~1 us a row.
-- prune() leaves it alone, so usage history outlives the pruned rows.
-- '' stands for a missing key/provider/model: primary key columns cannot be NULL.
CREATE TABLE usage_daily (
    day                TEXT    NOT NULL,          -- UTC 'YYYY-MM-DD' of ts
    key                TEXT    NOT NULL,
    provider           TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    requests           INTEGER NOT NULL,
    errors             INTEGER NOT NULL,          -- status >= 400
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    cost_usd           REAL    NOT NULL,          -- sum of the known costs
    unpriced           INTEGER NOT NULL,          -- requests with tokens but no known price
    PRIMARY KEY (day, key, provider, model)
) WITHOUT ROWID;
