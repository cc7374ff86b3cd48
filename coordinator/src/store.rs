//! The coordinator's state in an embedded SQLite database: runs (scheduled
//! and operator-started, with attempts, agent job ids and outcomes), the
//! last time each schedule fired, the last recovery points read from each
//! agent, and the alert state. Written with `synchronous=FULL`, so a run
//! recorded is a run kept across a crash or restart.
//!
//! A scheduled run is unique per (cell, kind, scheduled instant): a second
//! insert of the same occurrence is ignored, which is what keeps a
//! restarted coordinator from running anything twice.

use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_api::Recovery;

use crate::clock::{self, parse_ts, ts};
use crate::runs::{RunKind, RunResult, RunState, Trigger};

const SCHEMA: &str = "
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

/// One run: a unit of scheduled or operator-requested work for one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    pub id: i64,
    pub cell: String,
    pub kind: RunKind,
    pub trigger: Trigger,
    #[serde(with = "clock::ms::option")]
    pub scheduled_for: Option<OffsetDateTime>,
    #[serde(with = "clock::ms")]
    pub created: OffsetDateTime,
    pub state: RunState,
    pub attempt: i64,
    #[serde(with = "clock::ms")]
    pub next_attempt_at: OffsetDateTime,
    /// When the run should be done by (the next occurrence of its schedule).
    #[serde(with = "clock::ms::option")]
    pub deadline: Option<OffsetDateTime>,
    /// It ran past its deadline.
    pub overdue: bool,
    pub agent_job: Option<String>,
    #[serde(with = "clock::ms::option")]
    pub submitted_at: Option<OffsetDateTime>,
    #[serde(with = "clock::ms::option")]
    pub finished: Option<OffsetDateTime>,
    pub error: Option<String>,
    pub result: Option<RunResult>,
}

/// A column that does not hold what the schema says.
fn bad_column(column: &str, value: &str) -> rusqlite::Error {
    rusqlite::Error::InvalidColumnType(0, format!("{column} = {value:?}"), rusqlite::types::Type::Text)
}

pub(crate) fn instant(r: &Row<'_>, column: &str) -> rusqlite::Result<Option<OffsetDateTime>> {
    let text: Option<String> = r.get(column)?;
    text.map(|t| clock::parse(&t).map_err(|_| bad_column(column, &t))).transpose()
}

impl Run {
    fn from_row(r: &Row<'_>) -> rusqlite::Result<Run> {
        let text = |column: &str| r.get::<_, String>(column);
        let required = |column: &str| instant(r, column)?.ok_or_else(|| bad_column(column, "NULL"));
        let kind = text("kind")?;
        let trigger = text("trigger")?;
        let state = text("state")?;
        Ok(Run {
            id: r.get("id")?,
            cell: r.get("cell")?,
            kind: RunKind::parse(&kind).ok_or_else(|| bad_column("kind", &kind))?,
            trigger: Trigger::parse(&trigger).ok_or_else(|| bad_column("trigger", &trigger))?,
            scheduled_for: instant(r, "scheduled_for")?,
            created: required("created")?,
            state: RunState::parse(&state).ok_or_else(|| bad_column("state", &state))?,
            attempt: r.get("attempt")?,
            next_attempt_at: required("next_attempt_at")?,
            deadline: instant(r, "deadline")?,
            overdue: r.get::<_, i64>("overdue")? != 0,
            agent_job: r.get("agent_job")?,
            submitted_at: instant(r, "submitted_at")?,
            finished: instant(r, "finished")?,
            error: r.get("error")?,
            // A result from before results were typed is not shown.
            result: r.get::<_, Option<String>>("result")?.and_then(|s| serde_json::from_str(&s).ok()),
        })
    }
}

pub struct Store {
    conn: Mutex<Connection>,
    /// Random per database: part of every idempotency key, so a fresh
    /// database never collides with jobs an agent remembers from another.
    pub instance: String,
}

pub struct NewRun<'a> {
    pub cell: &'a str,
    pub kind: RunKind,
    pub trigger: Trigger,
    pub scheduled_for: Option<OffsetDateTime>,
    pub deadline: Option<OffsetDateTime>,
}

impl Store {
    pub fn open(path: &Path) -> Result<Store> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let conn = Connection::open(path).with_context(|| format!("opening the state database {}", path.display()))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        conn.execute_batch(SCHEMA).with_context(|| format!("creating the schema in {}", path.display()))?;
        let instance: Option<String> = conn.query_row("SELECT value FROM meta WHERE key = 'instance'", [], |r| r.get(0)).optional()?;
        let instance = match instance {
            Some(i) => i,
            None => {
                let i = format!("{:08x}", rand::random::<u32>());
                conn.execute("INSERT INTO meta (key, value) VALUES ('instance', ?1)", [&i])?;
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1')", [])?;
                conn.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created', ?1)", [ts(clock::now())])?;
                i
            }
        };
        Ok(Store { conn: Mutex::new(conn), instance })
    }

    pub(crate) fn db(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().expect("state database lock")
    }

    /// Record a run; a scheduled occurrence already recorded is not added
    /// again (returns None).
    pub fn insert_run(&self, run: &NewRun<'_>, now: OffsetDateTime) -> Result<Option<i64>> {
        let db = self.db();
        let n = db.execute(
            "INSERT OR IGNORE INTO runs (cell, kind, trigger, scheduled_for, created, state, next_attempt_at, deadline)
             VALUES (?1, ?2, ?3, ?4, ?5, 'pending', ?5, ?6)",
            params![run.cell, run.kind.as_str(), run.trigger.as_str(), run.scheduled_for.map(ts), ts(now), run.deadline.map(ts)],
        )?;
        Ok((n == 1).then(|| db.last_insert_rowid()))
    }

    pub fn run(&self, id: i64) -> Result<Option<Run>> {
        Ok(self.db().query_row("SELECT * FROM runs WHERE id = ?1", [id], Run::from_row).optional()?)
    }

    fn query(&self, sql: &str, params: impl rusqlite::Params) -> Result<Vec<Run>> {
        let db = self.db();
        let mut stmt = db.prepare(sql)?;
        let rows = stmt.query_map(params, Run::from_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(rows)
    }

    /// Newest first, optionally one cell's.
    pub fn runs(&self, cell: Option<&str>, limit: usize) -> Result<Vec<Run>> {
        self.query("SELECT * FROM runs WHERE (?1 IS NULL OR cell = ?1) ORDER BY id DESC LIMIT ?2", params![cell, limit as i64])
    }

    /// Runs not finished yet, oldest first.
    pub fn open_runs(&self) -> Result<Vec<Run>> {
        self.query("SELECT * FROM runs WHERE state IN ('pending', 'submitted') ORDER BY id", [])
    }

    /// When this state database was made (the coordinator started watching).
    pub fn created(&self) -> Result<OffsetDateTime> {
        let db = self.db();
        let v: Option<String> = db.query_row("SELECT value FROM meta WHERE key = 'created'", [], |r| r.get(0)).optional()?;
        match v {
            Some(v) => parse_ts(&v),
            None => {
                // A database from before this was recorded: from now on.
                let now = ts(clock::now());
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('created', ?1)", [&now])?;
                parse_ts(&now)
            }
        }
    }

    /// Finished drills of a cell within the last 400 days, newest first.
    pub fn drills(&self, cell: &str) -> Result<Vec<crate::compliance::DrillRecord>> {
        let since = ts(clock::now() - time::Duration::days(400));
        let runs = self.query(
            "SELECT * FROM runs WHERE cell = ?1 AND kind = 'drill' AND state IN ('succeeded', 'failed') AND finished >= ?2 ORDER BY finished DESC",
            params![cell, since],
        )?;
        let mut out = Vec::new();
        for r in runs {
            let Some(finished) = r.finished else { continue };
            let report = match r.result {
                Some(RunResult::Drill { report, .. }) => Some(*report),
                _ => None,
            };
            out.push(crate::compliance::DrillRecord { finished, passed: r.state == RunState::Succeeded, report });
        }
        Ok(out)
    }

    /// The newest successful run of a kind for a cell.
    pub fn last_success(&self, cell: &str, kind: RunKind) -> Result<Option<Run>> {
        Ok(self
            .query(
                "SELECT * FROM runs WHERE cell = ?1 AND kind = ?2 AND state = 'succeeded' ORDER BY finished DESC LIMIT 1",
                params![cell, kind.as_str()],
            )?
            .pop())
    }

    /// The cell's verify standing: the newest full and the newest sampled
    /// verify each count, so a sampled pass (which may not read a damaged
    /// older object) never clears what a full one found. A failed one is
    /// reported over a passed one; else the newest.
    pub fn last_verify(&self, cell: &str) -> Result<Option<crate::compliance::VerifyStatus>> {
        let sql = "SELECT * FROM runs WHERE cell = ?1 AND kind = ?2 AND state IN ('succeeded', 'failed') ORDER BY finished DESC LIMIT 1";
        let mut newest = Vec::new();
        for kind in [RunKind::Verify, RunKind::VerifySample] {
            newest.extend(self.query(sql, params![cell, kind.as_str()])?.pop());
        }
        let Some(run) = newest.into_iter().filter(|r| r.finished.is_some()).max_by_key(|r| (r.state == RunState::Failed, r.finished))
        else {
            return Ok(None);
        };
        let finished = run.finished.expect("filtered");
        let passed = run.state == RunState::Succeeded;
        let problem =
            (!passed).then(|| run.error.as_deref().and_then(|e| e.lines().find(|l| !l.trim().is_empty())).unwrap_or("failed").to_string());
        Ok(Some(crate::compliance::VerifyStatus { finished, passed, problem }))
    }

    pub fn mark_submitted(&self, id: i64, job: &str, now: OffsetDateTime) -> Result<()> {
        self.db().execute(
            "UPDATE runs SET state = 'submitted', agent_job = ?2, submitted_at = COALESCE(submitted_at, ?3) WHERE id = ?1",
            params![id, job, ts(now)],
        )?;
        Ok(())
    }

    pub fn finish(&self, id: i64, state: RunState, error: Option<&str>, result: Option<&RunResult>, now: OffsetDateTime) -> Result<()> {
        let result = result.map(|r| serde_json::to_string(r).expect("results serialise"));
        self.db().execute(
            "UPDATE runs SET state = ?2, error = ?3, result = ?4, finished = ?5 WHERE id = ?1",
            params![id, state.as_str(), error, result, ts(now)],
        )?;
        Ok(())
    }

    /// Back to pending for another attempt at `at`.
    pub fn retry(&self, id: i64, error: &str, at: OffsetDateTime) -> Result<()> {
        self.db().execute(
            "UPDATE runs SET state = 'pending', attempt = attempt + 1, agent_job = NULL, error = ?2, next_attempt_at = ?3 WHERE id = ?1",
            params![id, error, ts(at)],
        )?;
        Ok(())
    }

    /// Postpone a pending run (its agent could not be reached) without using an attempt.
    pub fn postpone(&self, id: i64, error: &str, at: OffsetDateTime) -> Result<()> {
        self.db().execute("UPDATE runs SET error = ?2, next_attempt_at = ?3 WHERE id = ?1", params![id, error, ts(at)])?;
        Ok(())
    }

    pub fn mark_overdue(&self, id: i64) -> Result<bool> {
        Ok(self.db().execute("UPDATE runs SET overdue = 1 WHERE id = ?1 AND overdue = 0", [id])? == 1)
    }

    pub fn last_fired(&self, cell: &str, kind: RunKind) -> Result<Option<OffsetDateTime>> {
        let s: Option<String> = self
            .db()
            .query_row("SELECT last_fired FROM marks WHERE cell = ?1 AND kind = ?2", [cell, kind.as_str()], |r| r.get(0))
            .optional()?;
        s.map(|s| parse_ts(&s)).transpose()
    }

    pub fn set_last_fired(&self, cell: &str, kind: RunKind, at: OffsetDateTime) -> Result<()> {
        self.db().execute(
            "INSERT INTO marks (cell, kind, last_fired) VALUES (?1, ?2, ?3)
             ON CONFLICT (cell, kind) DO UPDATE SET last_fired = excluded.last_fired",
            params![cell, kind.as_str(), ts(at)],
        )?;
        Ok(())
    }

    pub fn save_recovery(&self, cell: &str, body: &Recovery, now: OffsetDateTime) -> Result<()> {
        self.db().execute(
            "INSERT INTO recovery (cell, fetched_at, body) VALUES (?1, ?2, ?3)
             ON CONFLICT (cell) DO UPDATE SET fetched_at = excluded.fetched_at, body = excluded.body",
            params![cell, ts(now), serde_json::to_string(body).expect("recovery points serialise")],
        )?;
        Ok(())
    }

    /// The last recovery points read from a cell's agent, and when.
    /// A body of another shape (from an older agent) counts as never read.
    pub fn recovery(&self, cell: &str) -> Result<Option<(OffsetDateTime, Recovery)>> {
        let row: Option<(String, String)> = self
            .db()
            .query_row("SELECT fetched_at, body FROM recovery WHERE cell = ?1", [cell], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        let Some((t, body)) = row else { return Ok(None) };
        match serde_json::from_str(&body) {
            Ok(recovery) => Ok(Some((parse_ts(&t)?, recovery))),
            Err(e) => {
                tracing::debug!(cell, "the stored recovery points have another shape: {e}");
                Ok(None)
            }
        }
    }

    /// The verdict last alerted for (cell, location, system), if any.
    pub fn alert(&self, cell: &str, location: &str, system: &str) -> Result<Option<(String, String)>> {
        Ok(self
            .db()
            .query_row(
                "SELECT verdict, since FROM alerts WHERE cell = ?1 AND location = ?2 AND system = ?3",
                [cell, location, system],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?)
    }

    pub fn set_alert(&self, cell: &str, location: &str, system: &str, verdict: Option<&str>, now: OffsetDateTime) -> Result<()> {
        let db = self.db();
        match verdict {
            Some(v) => db.execute(
                "INSERT INTO alerts (cell, location, system, verdict, since) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (cell, location, system) DO UPDATE SET verdict = excluded.verdict, since = excluded.since",
                params![cell, location, system, v, ts(now)],
            )?,
            None => db.execute("DELETE FROM alerts WHERE cell = ?1 AND location = ?2 AND system = ?3", [cell, location, system])?,
        };
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scheduled_occurrence_is_recorded_once_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let now = clock::now();
        let at = now - time::Duration::minutes(5);
        let run = NewRun { cell: "a", kind: RunKind::PgFull, trigger: Trigger::Schedule, scheduled_for: Some(at), deadline: None };
        let store = Store::open(&path).unwrap();
        let id = store.insert_run(&run, now).unwrap().unwrap();
        assert_eq!(store.insert_run(&run, now).unwrap(), None, "the same occurrence twice");
        store.mark_submitted(id, "j-1", now).unwrap();
        let instance = store.instance.clone();
        drop(store);
        let store = Store::open(&path).unwrap();
        assert_eq!(store.instance, instance);
        let runs = store.open_runs().unwrap();
        assert_eq!((runs.len(), runs[0].state, runs[0].agent_job.as_deref()), (1, RunState::Submitted, Some("j-1")));
        store.retry(id, "boom", now).unwrap();
        assert_eq!(store.run(id).unwrap().unwrap().attempt, 2);
        // Operator runs are never deduplicated.
        let manual = NewRun { cell: "a", kind: RunKind::PgFull, trigger: Trigger::Operator, scheduled_for: None, deadline: None };
        assert!(store.insert_run(&manual, now).unwrap().is_some());
        assert!(store.insert_run(&manual, now).unwrap().is_some());
    }
}
