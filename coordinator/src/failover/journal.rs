//! The failover journal, in the coordinator's state database: each
//! failover (its assessment, state, who started it), each of its steps per
//! cell, and each approval. A step is written as `intent`, with the
//! idempotency key its side effect carries, before the side effect starts;
//! `done`, `failed` or `skipped` after. A resumed failover finds its steps
//! here: done ones are not repeated, an `intent` one is repeated under the
//! same key (an agent returns the job it already ran under that key; a hook
//! receiver treats a key it has seen as done). A failed step tried again
//! is a new attempt under a new key (`<key>-retry<N>`): the agent's failed
//! job under the old key stays as it was.

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::assess::Assessment;
use crate::clock::{self, ts};
use crate::store::sql::{params, Record, Session};
use crate::store::{instant, Store};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailoverState {
    Running,
    /// Waiting for `failover approve`.
    Waiting,
    Done,
    Failed,
    Aborted,
    /// Done, and every cell's new primary re-protected (`failover commit`).
    Committed,
    /// `failover failback` began (or stopped at a failed step).
    FailingBack,
    /// Every cell is home again.
    FailedBack,
}

impl FailoverState {
    pub fn as_str(self) -> &'static str {
        match self {
            FailoverState::Running => "running",
            FailoverState::Waiting => "waiting",
            FailoverState::Done => "done",
            FailoverState::Failed => "failed",
            FailoverState::Aborted => "aborted",
            FailoverState::Committed => "committed",
            FailoverState::FailingBack => "failing-back",
            FailoverState::FailedBack => "failed-back",
        }
    }

    fn parse(s: &str) -> Result<FailoverState> {
        [
            FailoverState::Running,
            FailoverState::Waiting,
            FailoverState::Done,
            FailoverState::Failed,
            FailoverState::Aborted,
            FailoverState::Committed,
            FailoverState::FailingBack,
            FailoverState::FailedBack,
        ]
        .into_iter()
        .find(|x| x.as_str() == s)
        .with_context(|| format!("the journal holds failover state {s:?}, which this build does not know"))
    }

    pub fn is_final(self) -> bool {
        matches!(
            self,
            FailoverState::Done | FailoverState::Failed | FailoverState::Aborted | FailoverState::Committed | FailoverState::FailedBack
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepState {
    /// Written before the side effect; still so after a crash mid-step.
    Intent,
    Done,
    Failed,
    Skipped,
}

impl StepState {
    fn as_str(self) -> &'static str {
        match self {
            StepState::Intent => "intent",
            StepState::Done => "done",
            StepState::Failed => "failed",
            StepState::Skipped => "skipped",
        }
    }

    fn parse(s: &str) -> Result<StepState> {
        [StepState::Intent, StepState::Done, StepState::Failed, StepState::Skipped]
            .into_iter()
            .find(|x| x.as_str() == s)
            .with_context(|| format!("the journal holds step state {s:?}, which this build does not know"))
    }
}

/// One failover as journaled.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failover {
    pub id: String,
    pub scenario: String,
    pub failed: String,
    /// A `--test` failover: into throw-away names, no fence, no route.
    pub test: bool,
    pub state: FailoverState,
    #[serde(with = "clock::ms")]
    pub created: OffsetDateTime,
    /// When the operator says the failure happened (default: `created`):
    /// what was lost is measured from it.
    #[serde(with = "clock::ms")]
    pub failed_at: OffsetDateTime,
    pub initiator: String,
    pub assessment: Assessment,
    #[serde(with = "clock::ms::option")]
    pub finished: Option<OffsetDateTime>,
    pub error: Option<String>,
}

/// One step of one cell (`cell` empty: the failover as a whole).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub cell: String,
    pub step: String,
    pub idempotency_key: String,
    pub state: StepState,
    #[serde(with = "clock::ms")]
    pub started: OffsetDateTime,
    #[serde(with = "clock::ms::option")]
    pub finished: Option<OffsetDateTime>,
    pub detail: serde_json::Value,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Approval {
    pub step: String,
    pub by: String,
    #[serde(with = "clock::ms")]
    pub at: OffsetDateTime,
}

fn json_column<T: serde::de::DeserializeOwned>(r: &Record, column: &str) -> Result<T> {
    serde_json::from_str(&r.required_text(column)?).with_context(|| format!("the journal's column {column}"))
}

impl Failover {
    /// A real failover (not a test) not yet done or aborted: it may still
    /// fence, restore and route, so another failover of its cells, or a
    /// scheduled test, waits for it (resume or abort it first).
    pub fn unfinished(&self) -> bool {
        !self.test && (!self.state.is_final() || self.state == FailoverState::Failed)
    }

    fn from_row(r: &Record) -> Result<Failover> {
        Ok(Failover {
            id: r.required_text("id")?,
            scenario: r.required_text("scenario")?,
            failed: r.required_text("failed")?,
            test: r.required_int("test")? != 0,
            state: FailoverState::parse(&r.required_text("state")?)?,
            created: instant(r, "created")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            failed_at: instant(r, "failed_at")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            initiator: r.required_text("initiator")?,
            assessment: json_column(r, "assessment")?,
            finished: instant(r, "finished")?,
            error: r.text("error")?,
        })
    }
}

impl StepRecord {
    fn from_row(r: &Record) -> Result<StepRecord> {
        let detail = r.text("detail")?;
        Ok(StepRecord {
            cell: r.required_text("cell")?,
            step: r.required_text("step")?,
            idempotency_key: r.required_text("key")?,
            state: StepState::parse(&r.required_text("state")?)?,
            started: instant(r, "started")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            finished: instant(r, "finished")?,
            detail: detail.and_then(|d| serde_json::from_str(&d).ok()).unwrap_or_default(),
            error: r.text("error")?,
        })
    }
}

/// A key's attempt suffix: `...-retryN` is attempt N ([`Journal::reopen_failed`]
/// makes them); only a trailing one counts (a cell's name may hold `-retry`).
fn retry_suffix(key: &str) -> Option<(&str, i64)> {
    let (first, n) = key.rsplit_once("-retry")?;
    n.bytes().all(|b| b.is_ascii_digit()).then(|| Some((first, n.parse().ok()?))).flatten()
}

/// The key of a step's first attempt.
fn first_key(key: &str) -> &str {
    retry_suffix(key).map_or(key, |(first, _)| first)
}

/// The attempt a step's key names (a key without a suffix: the first), so
/// an imported step's next attempt never reuses a key.
fn attempt_of(key: &str) -> i64 {
    retry_suffix(key).map_or(1, |(_, n)| n)
}

/// Write failover `f`'s row (`on_conflict`: empty, or `ON CONFLICT DO
/// NOTHING`); how many rows were added.
fn insert(db: &Session<'_>, f: &Failover, on_conflict: &str) -> Result<u64> {
    let assessment = serde_json::to_string(&f.assessment).expect("assessments serialise");
    db.execute(
        &format!(
            "INSERT INTO failovers (id, scenario, failed, test, state, created, failed_at, initiator, assessment, finished, error)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) {on_conflict}"
        ),
        params![
            &f.id,
            &f.scenario,
            &f.failed,
            f.test,
            f.state.as_str(),
            ts(f.created),
            ts(f.failed_at),
            &f.initiator,
            assessment,
            f.finished.map(ts),
            f.error.as_deref()
        ],
    )
}

/// The journal's operations, on the coordinator's state database.
pub struct Journal<'a>(pub &'a Store);

impl Journal<'_> {
    pub fn create(&self, f: &Failover) -> Result<()> {
        self.0.write(|db| insert(db, f, "")).context("journaling the failover")?;
        Ok(())
    }

    pub fn get(&self, id: &str) -> Result<Failover> {
        let found = self.0.db().query_as("SELECT * FROM failovers WHERE id = $1", params![id], Failover::from_row)?.pop();
        found.with_context(|| format!("no failover {id} in this coordinator's journal (lifeboat failover list shows them)"))
    }

    pub fn list(&self) -> Result<Vec<Failover>> {
        self.0.db().query_as("SELECT * FROM failovers ORDER BY created DESC", params![], Failover::from_row)
    }

    /// Move a failover to `state`; an aborted or done one stays so (an
    /// abort is never undone by a process still driving it).
    pub fn set_state(&self, id: &str, state: FailoverState, error: Option<&str>) -> Result<()> {
        let finished = state.is_final().then(|| ts(clock::now()));
        self.0.write(|db| {
            db.execute(
                "UPDATE failovers SET state = $2, error = $3, finished = $4 WHERE id = $1 AND state NOT IN ('aborted', 'done')",
                params![id, state.as_str(), error, finished],
            )
        })?;
        Ok(())
    }

    /// Mark a done failover committed (its new primaries re-protected).
    pub fn commit(&self, id: &str) -> Result<()> {
        self.0.write(|db| db.execute("UPDATE failovers SET state = 'committed' WHERE id = $1 AND state = 'done'", params![id]))?;
        Ok(())
    }

    pub fn steps(&self, id: &str) -> Result<Vec<StepRecord>> {
        self.0.db().query_as("SELECT * FROM failover_steps WHERE failover = $1 ORDER BY started, rowid", params![id], StepRecord::from_row)
    }

    pub fn step(&self, id: &str, cell: &str, step: &str) -> Result<Option<StepRecord>> {
        let sql = "SELECT * FROM failover_steps WHERE failover = $1 AND cell = $2 AND step = $3";
        Ok(self.0.db().query_as(sql, params![id, cell, step], StepRecord::from_row)?.pop())
    }

    /// Record the intent to carry out a step (kept as first written when
    /// it is already there: a resumed step keeps its key and start).
    pub fn intent(&self, id: &str, cell: &str, step: &str, key: &str) -> Result<()> {
        self.0.write(|db| {
            db.execute(
                "INSERT INTO failover_steps (failover, cell, step, key, state, started) VALUES ($1, $2, $3, $4, 'intent', $5)
             ON CONFLICT DO NOTHING",
                params![id, cell, step, key, ts(clock::now())],
            )
        })?;
        Ok(())
    }

    /// Close a step recorded with [`Journal::intent`].
    pub fn close(&self, id: &str, cell: &str, step: &str, state: StepState, detail: &serde_json::Value, error: Option<&str>) -> Result<()> {
        if state == StepState::Intent {
            bail!("a step is closed as done, failed or skipped");
        }
        let detail = (!detail.is_null()).then(|| detail.to_string());
        self.0.write(|db| {
            db.execute(
            "UPDATE failover_steps SET state = $4, finished = $5, detail = $6, error = $7 WHERE failover = $1 AND cell = $2 AND step = $3",
            params![id, cell, step, state.as_str(), ts(clock::now()), detail, error],
        )
        })?;
        Ok(())
    }

    /// Let the failed steps be tried again by a resume, each as a new
    /// attempt under a new key; a failed smoke check reopens its restore
    /// too (the checks run in it). Returns how many steps were reopened.
    pub fn reopen_failed(&self, id: &str) -> Result<usize> {
        self.reopen_failed_of(id, None)
    }

    /// [`Journal::reopen_failed`], of one cell's steps only when `cell` is given.
    pub fn reopen_failed_of(&self, id: &str, cell: Option<&str>) -> Result<usize> {
        self.0.write(|tx| {
            let again = tx.query_as(
                "SELECT cell, step, key, attempt FROM failover_steps WHERE failover = $1 AND (CAST($2 AS TEXT) IS NULL OR cell = $2)
                   AND (state = 'failed' OR (step = 'restore' AND state = 'done'
                   AND cell IN (SELECT cell FROM failover_steps WHERE failover = $1 AND step = 'smoke' AND state = 'failed')))",
                params![id, cell],
                |r| Ok((r.required_text("cell")?, r.required_text("step")?, r.required_text("key")?, r.required_int("attempt")?)),
            )?;
            for (cell, step, key, attempt) in &again {
                tx.execute(
                    "UPDATE failover_steps SET state = 'intent', finished = NULL, error = NULL, attempt = $4, key = $5
                     WHERE failover = $1 AND cell = $2 AND step = $3",
                    params![id, cell, step, attempt + 1, format!("{}-retry{}", first_key(key), attempt + 1)],
                )?;
            }
            Ok(again.len())
        })
    }

    /// The cells of failover `id` whose failback is complete (home again).
    pub fn home(&self, id: &str) -> Result<std::collections::BTreeSet<String>> {
        let sql = "SELECT cell FROM failover_steps WHERE failover = $1 AND step = $2 AND state = 'done'";
        let cells = self.0.db().query_as(sql, params![id, super::failback::HOME], |r| r.required_text("cell"))?;
        Ok(cells.into_iter().collect())
    }

    /// The cells of `f` not yet home again (failed back on their own or with the rest).
    pub fn away(&self, f: &Failover) -> Result<std::collections::BTreeSet<String>> {
        let home = self.home(&f.id)?;
        Ok(f.assessment.cells.iter().map(|a| a.cell.clone()).filter(|cell| !home.contains(cell)).collect())
    }

    pub fn approve(&self, id: &str, step: &str, by: &str) -> Result<bool> {
        let n = self.0.write(|db| {
            db.execute(
                "INSERT INTO failover_approvals (failover, step, by, at) VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
                params![id, step, by, ts(clock::now())],
            )
        })?;
        Ok(n == 1)
    }

    /// Add a failover another coordinator journaled (read back from its
    /// mirror, [`super::mirror`]) with its steps, keys and approvals as
    /// they were, so `resume` carries it on under the same keys. Returns
    /// false, changing nothing, when this journal already has it.
    pub fn import(&self, f: &Failover, steps: &[StepRecord], approvals: &[Approval]) -> Result<bool> {
        self.0.write(|tx| {
            if insert(tx, f, "ON CONFLICT DO NOTHING")? == 0 {
                return Ok(false);
            }
            for s in steps {
                let detail = (!s.detail.is_null()).then(|| s.detail.to_string());
                tx.execute(
                    "INSERT INTO failover_steps (failover, cell, step, key, attempt, state, started, finished, detail, error)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
                    params![
                        &f.id,
                        &s.cell,
                        &s.step,
                        &s.idempotency_key,
                        attempt_of(&s.idempotency_key),
                        s.state.as_str(),
                        ts(s.started),
                        s.finished.map(ts),
                        detail,
                        s.error.as_deref()
                    ],
                )?;
            }
            for a in approvals {
                tx.execute(
                    "INSERT INTO failover_approvals (failover, step, by, at) VALUES ($1, $2, $3, $4)",
                    params![&f.id, &a.step, &a.by, ts(a.at)],
                )?;
            }
            Ok(true)
        })
    }

    pub fn approvals(&self, id: &str) -> Result<Vec<Approval>> {
        self.0.db().query_as("SELECT step, by, at FROM failover_approvals WHERE failover = $1 ORDER BY at", params![id], |r| {
            Ok(Approval {
                step: r.required_text("step")?,
                by: r.required_text("by")?,
                at: instant(r, "at")?.unwrap_or(OffsetDateTime::UNIX_EPOCH),
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn failover(store: &Store) -> Failover {
        let assessment: Assessment = serde_json::from_value(serde_json::json!({
            "scenario": "s", "scope": "cell", "failed": "c", "computed_at": "2026-12-06T00:00:00Z",
            "steps": [], "parallelism": 1, "rto_target_seconds": 900.0, "cells": [], "problems": []
        }))
        .unwrap();
        let f = Failover {
            id: "fo-1".into(),
            scenario: "s".into(),
            failed: "c".into(),
            test: false,
            state: FailoverState::Running,
            created: clock::now(),
            failed_at: clock::now(),
            initiator: "me".into(),
            assessment,
            finished: None,
            error: None,
        };
        Journal(store).create(&f).unwrap();
        f
    }

    #[test]
    fn a_step_keeps_its_first_intent_and_closes_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("state.db")).unwrap();
        let f = failover(&store);
        let j = Journal(&store);
        j.intent(&f.id, "c", "fence", "key-1").unwrap();
        j.intent(&f.id, "c", "fence", "key-2").unwrap();
        let s = j.step(&f.id, "c", "fence").unwrap().unwrap();
        assert_eq!((s.idempotency_key.as_str(), s.state), ("key-1", StepState::Intent));
        j.close(&f.id, "c", "fence", StepState::Failed, &serde_json::json!({"epoch": 1}), Some("no")).unwrap();
        assert_eq!(j.reopen_failed(&f.id).unwrap(), 1);
        assert_eq!(j.step(&f.id, "c", "fence").unwrap().unwrap().idempotency_key, "key-1-retry2", "a new attempt, a new key");
        j.close(&f.id, "c", "fence", StepState::Failed, &serde_json::Value::Null, Some("no")).unwrap();
        j.reopen_failed(&f.id).unwrap();
        assert_eq!(j.step(&f.id, "c", "fence").unwrap().unwrap().idempotency_key, "key-1-retry3");
        // A failed smoke check tries its restore again.
        j.intent(&f.id, "c", "restore", "r").unwrap();
        j.close(&f.id, "c", "restore", StepState::Done, &serde_json::Value::Null, None).unwrap();
        j.intent(&f.id, "c", "smoke", "s").unwrap();
        j.close(&f.id, "c", "smoke", StepState::Failed, &serde_json::Value::Null, Some("rows")).unwrap();
        assert_eq!(j.reopen_failed(&f.id).unwrap(), 2);
        let restore = j.step(&f.id, "c", "restore").unwrap().unwrap();
        assert_eq!((restore.state, restore.idempotency_key.as_str()), (StepState::Intent, "r-retry2"));
        j.close(&f.id, "c", "fence", StepState::Done, &serde_json::json!({"epoch": 1}), None).unwrap();
        let s = j.step(&f.id, "c", "fence").unwrap().unwrap();
        assert_eq!((s.state, s.detail["epoch"].as_u64(), s.error), (StepState::Done, Some(1), None));
        assert!(j.approve(&f.id, "fence", "alice").unwrap());
        assert!(!j.approve(&f.id, "fence", "bob").unwrap(), "the first approval stands");
        assert_eq!(j.approvals(&f.id).unwrap()[0].by, "alice");
        j.set_state(&f.id, FailoverState::Done, None).unwrap();
        let again = Journal(&Store::open(&dir.path().join("state.db")).unwrap()).get(&f.id).unwrap();
        assert_eq!((again.state, again.finished.is_some()), (FailoverState::Done, true));
    }

    #[test]
    fn an_imported_failover_goes_on_under_its_keys() {
        let (from, to) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let old = Store::open(&from.path().join("state.db")).unwrap();
        let mut f = failover(&old);
        let j = Journal(&old);
        j.intent(&f.id, "c", "fence", "k-fence").unwrap();
        j.close(&f.id, "c", "fence", StepState::Failed, &serde_json::Value::Null, Some("no")).unwrap();
        j.reopen_failed(&f.id).unwrap();
        j.close(&f.id, "c", "fence", StepState::Failed, &serde_json::Value::Null, Some("no")).unwrap();
        j.intent(&f.id, "c", "restore", "k-restore").unwrap();
        j.approve(&f.id, "fence", "alice").unwrap();
        f.state = FailoverState::Failed;
        let (steps, approvals) = (j.steps(&f.id).unwrap(), j.approvals(&f.id).unwrap());

        let new = Store::open(&to.path().join("state.db")).unwrap();
        let n = Journal(&new);
        assert!(n.import(&f, &steps, &approvals).unwrap());
        assert!(!n.import(&f, &steps, &approvals).unwrap(), "imported once");
        assert_eq!(n.get(&f.id).unwrap().state, FailoverState::Failed);
        assert_eq!(n.approvals(&f.id).unwrap()[0].by, "alice");
        let restore = n.step(&f.id, "c", "restore").unwrap().unwrap();
        assert_eq!((restore.state, restore.idempotency_key.as_str()), (StepState::Intent, "k-restore"), "the intent resumes under its key");
        n.reopen_failed(&f.id).unwrap();
        assert_eq!(n.step(&f.id, "c", "fence").unwrap().unwrap().idempotency_key, "k-fence-retry3", "never a key used before");
    }

    #[test]
    fn a_cell_named_with_retry_keeps_a_key_per_step() {
        assert_eq!(first_key("lifeboat-fo-1-a-retry-restore"), "lifeboat-fo-1-a-retry-restore");
        assert_eq!(first_key("lifeboat-fo-1-a-retry-restore-retry12"), "lifeboat-fo-1-a-retry-restore");
        assert_eq!((attempt_of("lifeboat-fo-1-a-retry-restore"), attempt_of("x-retry-fence-retry3")), (1, 3));
    }
}
