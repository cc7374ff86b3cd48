//! The state database's schema, as numbered migrations run by `refinery`
//! (its history in `refinery_schema_history`). SQLite and Postgres each
//! have their own text of every migration; the tables, columns and
//! meanings are the same. Instants are RFC 3339 text in both, numbers
//! 64-bit. A migration, once released, is never edited: add the next one.
//!
//! Version 1 of SQLite is written with `IF NOT EXISTS` so that a database
//! made before migrations were tracked takes it as a no-op.

use anyhow::Result;
use refinery::{Migration, Runner};

const SQLITE_V1: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    cell TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for TEXT,
    created TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 1,
    next_attempt_at TEXT NOT NULL,
    deadline TEXT,
    overdue INTEGER NOT NULL DEFAULT 0,
    agent_job TEXT,
    submitted_at TEXT,
    finished TEXT,
    error TEXT,
    result TEXT
);
CREATE UNIQUE INDEX IF NOT EXISTS runs_occurrence ON runs(cell, kind, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX IF NOT EXISTS runs_state ON runs(state);
CREATE TABLE IF NOT EXISTS marks (cell TEXT NOT NULL, kind TEXT NOT NULL, last_fired TEXT NOT NULL, PRIMARY KEY (cell, kind));
CREATE TABLE IF NOT EXISTS recovery (cell TEXT PRIMARY KEY, fetched_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS failovers (
    id TEXT PRIMARY KEY, scenario TEXT NOT NULL, failed TEXT NOT NULL, test INTEGER NOT NULL,
    state TEXT NOT NULL, created TEXT NOT NULL, failed_at TEXT NOT NULL, initiator TEXT NOT NULL,
    assessment TEXT NOT NULL, finished TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS failover_steps (
    failover TEXT NOT NULL, cell TEXT NOT NULL, step TEXT NOT NULL, key TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 1,
    state TEXT NOT NULL, started TEXT NOT NULL, finished TEXT, detail TEXT, error TEXT,
    PRIMARY KEY (failover, cell, step)
);
CREATE TABLE IF NOT EXISTS failover_approvals (
    failover TEXT NOT NULL, step TEXT NOT NULL, by TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (failover, step)
);
CREATE TABLE IF NOT EXISTS alerts (
    cell TEXT NOT NULL, location TEXT NOT NULL, system TEXT NOT NULL,
    verdict TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (cell, location, system)
);
";

/// The same tables in Postgres, plus the leader lease (SQLite has one
/// coordinator and no lease). `failover_steps.rowid` keeps insertion
/// order as SQLite's implicit rowid does.
const POSTGRES_V1: &str = "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE runs (
    id BIGSERIAL PRIMARY KEY,
    cell TEXT NOT NULL,
    kind TEXT NOT NULL,
    trigger TEXT NOT NULL,
    scheduled_for TEXT,
    created TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt BIGINT NOT NULL DEFAULT 1,
    next_attempt_at TEXT NOT NULL,
    deadline TEXT,
    overdue BIGINT NOT NULL DEFAULT 0,
    agent_job TEXT,
    submitted_at TEXT,
    finished TEXT,
    error TEXT,
    result TEXT
);
CREATE UNIQUE INDEX runs_occurrence ON runs(cell, kind, scheduled_for) WHERE scheduled_for IS NOT NULL;
CREATE INDEX runs_state ON runs(state);
CREATE TABLE marks (cell TEXT NOT NULL, kind TEXT NOT NULL, last_fired TEXT NOT NULL, PRIMARY KEY (cell, kind));
CREATE TABLE recovery (cell TEXT PRIMARY KEY, fetched_at TEXT NOT NULL, body TEXT NOT NULL);
CREATE TABLE failovers (
    id TEXT PRIMARY KEY, scenario TEXT NOT NULL, failed TEXT NOT NULL, test BIGINT NOT NULL,
    state TEXT NOT NULL, created TEXT NOT NULL, failed_at TEXT NOT NULL, initiator TEXT NOT NULL,
    assessment TEXT NOT NULL, finished TEXT, error TEXT
);
CREATE TABLE failover_steps (
    rowid BIGSERIAL,
    failover TEXT NOT NULL, cell TEXT NOT NULL, step TEXT NOT NULL, key TEXT NOT NULL, attempt BIGINT NOT NULL DEFAULT 1,
    state TEXT NOT NULL, started TEXT NOT NULL, finished TEXT, detail TEXT, error TEXT,
    PRIMARY KEY (failover, cell, step)
);
CREATE TABLE failover_approvals (
    failover TEXT NOT NULL, step TEXT NOT NULL, by TEXT NOT NULL, at TEXT NOT NULL,
    PRIMARY KEY (failover, step)
);
CREATE TABLE alerts (
    cell TEXT NOT NULL, location TEXT NOT NULL, system TEXT NOT NULL,
    verdict TEXT NOT NULL, since TEXT NOT NULL,
    PRIMARY KEY (cell, location, system)
);
CREATE TABLE leader (
    id BIGINT PRIMARY KEY CHECK (id = 1),
    holder TEXT NOT NULL,
    address TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    expires TIMESTAMPTZ NOT NULL
);
";

/// Version 2: a cell's runs of one kind by when they finished, for the
/// status of every cell (its newest drills and verifies) without reading
/// every run of every cell: hundreds of cells write thousands a day.
const V2_RUNS_BY_CELL: &str = "CREATE INDEX runs_cell_kind_finished ON runs(cell, kind, finished);";

fn runner(versions: &[(&str, &str)]) -> Result<Runner> {
    let migrations = versions.iter().map(|(name, sql)| Migration::unapplied(name, sql)).collect::<Result<Vec<_>, _>>()?;
    Ok(Runner::new(&migrations))
}

pub fn migrate_sqlite(db: &mut rusqlite::Connection) -> Result<()> {
    runner(&[("V1__state", SQLITE_V1), ("V2__runs_by_cell", V2_RUNS_BY_CELL)])?.run(db)?;
    Ok(())
}

/// Coordinators starting together take turns (an advisory lock), so one
/// migrates and the others find it done.
pub async fn migrate_postgres(db: &mut tokio_postgres::Client) -> Result<()> {
    const MIGRATING: i64 = 0x6c69_6665_626f_6174; // "lifeboat"
    db.execute("SELECT pg_advisory_lock($1)", &[&MIGRATING]).await?;
    let migrated = runner(&[("V1__state", POSTGRES_V1), ("V2__runs_by_cell", V2_RUNS_BY_CELL)])?.run_async(db).await;
    db.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATING]).await?;
    migrated?;
    Ok(())
}
