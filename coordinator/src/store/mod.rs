//! The coordinator's state: runs (scheduled and operator-started, with
//! attempts, agent job ids and outcomes), the last time each schedule
//! fired, the last recovery points read from each agent, the alert state
//! and the failover journal ([`crate::failover::journal`]). By default in
//! an embedded SQLite database written with `synchronous=FULL`, so a run
//! recorded is a run kept across a crash or restart; with a `postgres://`
//! state, in a Postgres that several coordinators share, one of them
//! leading through the lease in [`lease`].
//!
//! A scheduled run is unique per (cell, kind, scheduled instant): a second
//! insert of the same occurrence is ignored, which is what keeps a
//! restarted coordinator from running anything twice.

mod lease;
mod postgres;
mod schema;
pub mod sql;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use lifeboat_api::Recovery;

use crate::clock::{self, parse_ts, ts};
use crate::runs::{RunKind, RunResult, RunState, Trigger};
use sql::{params, Db, Record, Session};

pub use lease::FailoverLock;

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
fn bad_column(column: &str, value: &str) -> anyhow::Error {
    anyhow::anyhow!("the state database's column {column} holds {value:?}, which this build does not read")
}

pub(crate) fn instant(r: &Record, column: &str) -> Result<Option<OffsetDateTime>> {
    r.text(column)?.map(|t| clock::parse(&t).map_err(|_| bad_column(column, &t))).transpose()
}

impl Run {
    fn from_row(r: &Record) -> Result<Run> {
        let required = |column: &str| instant(r, column)?.ok_or_else(|| bad_column(column, "NULL"));
        let kind = r.required_text("kind")?;
        let trigger = r.required_text("trigger")?;
        let state = r.required_text("state")?;
        Ok(Run {
            id: r.required_int("id")?,
            cell: r.required_text("cell")?,
            kind: RunKind::parse(&kind).ok_or_else(|| bad_column("kind", &kind))?,
            trigger: Trigger::parse(&trigger).ok_or_else(|| bad_column("trigger", &trigger))?,
            scheduled_for: instant(r, "scheduled_for")?,
            created: required("created")?,
            state: RunState::parse(&state).ok_or_else(|| bad_column("state", &state))?,
            attempt: r.required_int("attempt")?,
            next_attempt_at: required("next_attempt_at")?,
            deadline: instant(r, "deadline")?,
            overdue: r.required_int("overdue")? != 0,
            agent_job: r.text("agent_job")?,
            submitted_at: instant(r, "submitted_at")?,
            finished: instant(r, "finished")?,
            error: r.text("error")?,
            // A result from before results were typed is not shown.
            result: r.text("result")?.and_then(|s| serde_json::from_str(&s).ok()),
        })
    }
}

pub struct Store {
    db: Db,
    /// Set by a coordinator on a shared state: every write checks, in its
    /// own transaction, that this holder still has the lease at this epoch.
    fence: Mutex<Option<lease::Fence>>,
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

/// A schedule of `cell` and `kind` reached occurrence `at`: its run, if one
/// is to be added, and where its mark moves; `missed` counts the
/// occurrences it stands for (more than 1 after the coordinator was down).
pub struct Firing<'a> {
    pub run: Option<NewRun<'a>>,
    pub cell: &'a str,
    pub kind: RunKind,
    pub at: OffsetDateTime,
    pub missed: u64,
}

fn insert_run(db: &Session<'_>, run: &NewRun<'_>, now: OffsetDateTime) -> Result<Option<i64>> {
    let added = db.query_one(
        "INSERT INTO runs (cell, kind, trigger, scheduled_for, created, state, next_attempt_at, deadline)
     VALUES ($1, $2, $3, $4, $5, 'pending', $5, $6) ON CONFLICT DO NOTHING RETURNING id",
        params![run.cell, run.kind.as_str(), run.trigger.as_str(), run.scheduled_for.map(ts), ts(now), run.deadline.map(ts)],
    )?;
    added.map(|r| r.required_int("id")).transpose()
}

/// Whether `--state` names a shared Postgres rather than a SQLite file.
pub fn is_postgres(state: &Path) -> bool {
    let s = state.to_string_lossy();
    s.starts_with("postgres://") || s.starts_with("postgresql://")
}

fn open_sqlite(path: &Path) -> Result<Db> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut conn = rusqlite::Connection::open(path).with_context(|| format!("opening the state database {}", path.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    conn.set_prepared_statement_cache_capacity(128);
    schema::migrate_sqlite(&mut conn).with_context(|| format!("migrating the state database {}", path.display()))?;
    Ok(Db::Sqlite(Mutex::new(conn)))
}

impl Store {
    /// Open the state: a SQLite file (made when missing), or a Postgres
    /// named by a `postgres://` URL (its schema made or brought up to date).
    pub fn open(state: &Path) -> Result<Store> {
        let db =
            if is_postgres(state) { Db::Pg(Mutex::new(postgres::PgConn::connect(&state.to_string_lossy())?)) } else { open_sqlite(state)? };
        // Coordinators opening one Postgres together agree on the first instance written.
        let fresh = format!("{:08x}", rand::random::<u32>());
        db.execute("INSERT INTO meta (key, value) VALUES ('instance', $1) ON CONFLICT DO NOTHING", params![&fresh])?;
        db.execute("INSERT INTO meta (key, value) VALUES ('schema', '1') ON CONFLICT DO NOTHING", params![])?;
        db.execute("INSERT INTO meta (key, value) VALUES ('created', $1) ON CONFLICT DO NOTHING", params![ts(clock::now())])?;
        let instance = db.query_one("SELECT value FROM meta WHERE key = 'instance'", params![])?;
        let instance = instance.context("the state database keeps no instance")?.required_text("value")?;
        Ok(Store { db, instance, fence: Mutex::new(None) })
    }

    /// The database, for the journal's statements.
    pub(crate) fn db(&self) -> &Db {
        &self.db
    }

    /// Shared with other coordinators (Postgres): one of them leads.
    pub fn shared(&self) -> bool {
        self.db.shared()
    }

    /// Record a run; a scheduled occurrence already recorded is not added
    /// again (returns None).
    pub fn insert_run(&self, run: &NewRun<'_>, now: OffsetDateTime) -> Result<Option<i64>> {
        self.write(|db| insert_run(db, run, now))
    }

    pub fn run(&self, id: i64) -> Result<Option<Run>> {
        Ok(self.query("SELECT * FROM runs WHERE id = $1", params![id])?.pop())
    }

    fn query(&self, sql: &str, params: &[sql::Value]) -> Result<Vec<Run>> {
        self.db.query_as(sql, params, Run::from_row)
    }

    /// Newest first, optionally one cell's.
    pub fn runs(&self, cell: Option<&str>, limit: usize) -> Result<Vec<Run>> {
        self.query(
            "SELECT * FROM runs WHERE (CAST($1 AS TEXT) IS NULL OR cell = $1) ORDER BY id DESC LIMIT $2",
            params![cell, limit as i64],
        )
    }

    /// Runs not finished yet, oldest first.
    pub fn open_runs(&self) -> Result<Vec<Run>> {
        self.query("SELECT * FROM runs WHERE state IN ('pending', 'submitted') ORDER BY id", params![])
    }

    /// When this state database was made (the coordinator started watching).
    pub fn created(&self) -> Result<OffsetDateTime> {
        let row = self.db.query_one("SELECT value FROM meta WHERE key = 'created'", params![])?;
        parse_ts(&row.context("the state database keeps no creation time")?.required_text("value")?)
    }

    /// Finished drills of a cell within the last 400 days, newest first.
    pub fn drills(&self, cell: &str) -> Result<Vec<crate::compliance::DrillRecord>> {
        let since = ts(clock::now() - time::Duration::days(400));
        let runs = self.query(
            "SELECT * FROM runs WHERE cell = $1 AND kind = 'drill' AND state IN ('succeeded', 'failed') AND finished >= $2 ORDER BY finished DESC",
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
                "SELECT * FROM runs WHERE cell = $1 AND kind = $2 AND state = 'succeeded' ORDER BY finished DESC LIMIT 1",
                params![cell, kind.as_str()],
            )?
            .pop())
    }

    /// The cell's verify standing: the newest full and the newest sampled
    /// verify each count, so a sampled pass (which may not read a damaged
    /// older object) never clears what a full one found. A failed one is
    /// reported over a passed one; else the newest.
    pub fn last_verify(&self, cell: &str) -> Result<Option<crate::compliance::VerifyStatus>> {
        let sql = "SELECT * FROM runs WHERE cell = $1 AND kind = $2 AND state IN ('succeeded', 'failed') ORDER BY finished DESC LIMIT 1";
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
        self.write(|db| {
            db.execute(
                "UPDATE runs SET state = 'submitted', agent_job = $2, submitted_at = COALESCE(submitted_at, $3) WHERE id = $1",
                params![id, job, ts(now)],
            )
        })?;
        Ok(())
    }

    pub fn finish(&self, id: i64, state: RunState, error: Option<&str>, result: Option<&RunResult>, now: OffsetDateTime) -> Result<()> {
        let result = result.map(|r| serde_json::to_string(r).expect("results serialise"));
        self.write(|db| {
            db.execute(
                "UPDATE runs SET state = $2, error = $3, result = $4, finished = $5 WHERE id = $1",
                params![id, state.as_str(), error, result, ts(now)],
            )
        })?;
        Ok(())
    }

    /// Back to pending for another attempt at `at`.
    pub fn retry(&self, id: i64, error: &str, at: OffsetDateTime) -> Result<()> {
        self.write(|db| {
            db.execute(
            "UPDATE runs SET state = 'pending', attempt = attempt + 1, agent_job = NULL, error = $2, next_attempt_at = $3 WHERE id = $1",
            params![id, error, ts(at)],
        )
        })?;
        Ok(())
    }

    /// Postpone a pending run (its agent could not be reached) without using an attempt.
    pub fn postpone(&self, id: i64, error: &str, at: OffsetDateTime) -> Result<()> {
        self.write(|db| db.execute("UPDATE runs SET error = $2, next_attempt_at = $3 WHERE id = $1", params![id, error, ts(at)]))?;
        Ok(())
    }

    pub fn mark_overdue(&self, id: i64) -> Result<bool> {
        Ok(self.write(|db| db.execute("UPDATE runs SET overdue = 1 WHERE id = $1 AND overdue = 0", params![id]))? == 1)
    }

    /// Every schedule's mark: the occurrence of (cell, kind) last turned
    /// into a run (or when the schedule was first seen), by cell and kind.
    pub fn marks(&self) -> Result<HashMap<String, HashMap<RunKind, OffsetDateTime>>> {
        let rows = self.db.query_as("SELECT cell, kind, last_fired FROM marks", params![], |r| {
            Ok((r.required_text("cell")?, r.required_text("kind")?, parse_ts(&r.required_text("last_fired")?)?))
        })?;
        let mut marks: HashMap<String, HashMap<RunKind, OffsetDateTime>> = HashMap::new();
        for (cell, kind, at) in rows {
            if let Some(kind) = RunKind::parse(&kind) {
                marks.entry(cell).or_default().insert(kind, at);
            }
        }
        Ok(marks)
    }

    /// One scheduler tick's decisions, kept or lost together (one
    /// transaction, one sync for hundreds of cells): each firing's run
    /// added (None: covered, or already there) and its mark moved.
    pub fn fire(&self, firings: &[Firing<'_>], now: OffsetDateTime) -> Result<Vec<Option<i64>>> {
        self.write(|db| {
            let mut added = Vec::with_capacity(firings.len());
            for f in firings {
                added.push(match &f.run {
                    Some(run) => insert_run(db, run, now)?,
                    None => None,
                });
                db.execute(
                    "INSERT INTO marks (cell, kind, last_fired) VALUES ($1, $2, $3)
                 ON CONFLICT (cell, kind) DO UPDATE SET last_fired = excluded.last_fired",
                    params![f.cell, f.kind.as_str(), ts(f.at)],
                )?;
            }
            Ok(added)
        })
    }

    pub fn save_recovery(&self, cell: &str, body: &Recovery, now: OffsetDateTime) -> Result<()> {
        self.write(|db| {
            db.execute(
                "INSERT INTO recovery (cell, fetched_at, body) VALUES ($1, $2, $3)
             ON CONFLICT (cell) DO UPDATE SET fetched_at = excluded.fetched_at, body = excluded.body",
                params![cell, ts(now), serde_json::to_string(body).expect("recovery points serialise")],
            )
        })?;
        Ok(())
    }

    /// The last recovery points read from a cell's agent, and when.
    /// A body of another shape (from an older agent) counts as never read.
    pub fn recovery(&self, cell: &str) -> Result<Option<(OffsetDateTime, Recovery)>> {
        let Some(row) = self.db.query_one("SELECT fetched_at, body FROM recovery WHERE cell = $1", params![cell])? else {
            return Ok(None);
        };
        match serde_json::from_str(&row.required_text("body")?) {
            Ok(recovery) => Ok(Some((parse_ts(&row.required_text("fetched_at")?)?, recovery))),
            Err(e) => {
                tracing::debug!(cell, "the stored recovery points have another shape: {e}");
                Ok(None)
            }
        }
    }

    /// The verdict last alerted for (cell, location, system), if any.
    pub fn alert(&self, cell: &str, location: &str, system: &str) -> Result<Option<(String, String)>> {
        let row = self.db.query_one(
            "SELECT verdict, since FROM alerts WHERE cell = $1 AND location = $2 AND system = $3",
            params![cell, location, system],
        )?;
        row.map(|r| Ok((r.required_text("verdict")?, r.required_text("since")?))).transpose()
    }

    pub fn set_alert(&self, cell: &str, location: &str, system: &str, verdict: Option<&str>, now: OffsetDateTime) -> Result<()> {
        match verdict {
            Some(v) => self.write(|db| {
                db.execute(
                    "INSERT INTO alerts (cell, location, system, verdict, since) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (cell, location, system) DO UPDATE SET verdict = excluded.verdict, since = excluded.since",
                    params![cell, location, system, v, ts(now)],
                )
            })?,
            None => self.write(|db| {
                db.execute("DELETE FROM alerts WHERE cell = $1 AND location = $2 AND system = $3", params![cell, location, system])
            })?,
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
