//! Leadership among coordinators sharing a Postgres state, and the lock
//! that keeps one failover in one pair of hands.
//!
//! The lease is one row (`leader`): a coordinator takes it when it is free
//! or expired and keeps it by renewing it before it expires; every change
//! of holder adds one to its **epoch**, which the leader carries on every
//! request to agents so they can refuse a leader that lost the lease (see
//! `serve::leader`). Expiry is judged by the database's clock alone
//! (`clock_timestamp()`), so the coordinators' clocks need not agree.
//!
//! A failover is locked, while one process carries it out, by a file
//! beside a SQLite state, or by a Postgres advisory lock held by the
//! connection to a shared one (released when the lock is dropped, or when
//! that connection is lost).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde::Serialize;

use super::postgres::PgConn;
use super::sql::{params, Db, Session};
use super::Store;

/// Who holds the lease, as the database has it.
#[derive(Debug, Clone, Serialize)]
pub struct LeaderRow {
    pub holder: String,
    /// Where the holder serves its API.
    pub address: String,
    pub epoch: u64,
    /// When the lease runs out unless renewed (RFC 3339, the database's clock).
    pub expires: String,
    pub expired: bool,
}

/// Who must hold the lease, at which epoch, for this process's writes
/// to the shared state to be kept.
#[derive(Clone)]
pub struct Fence {
    holder: String,
    /// The epoch this process leads (or last led) with.
    epoch: Arc<lifeboat_client::CoordinatorEpoch>,
}

/// Held while one process carries out a failover.
pub enum FailoverLock {
    File(#[allow(dead_code)] std::fs::File),
    Pg { conn: PgConn, id: String },
}

impl Drop for FailoverLock {
    fn drop(&mut self) {
        if let FailoverLock::Pg { conn, id } = self {
            conn.held.lock().expect("held failovers").remove(id.as_str());
            conn.later("SELECT pg_advisory_unlock(hashtext($1))", params![format!("failover {id}")]);
        }
    }
}

impl Store {
    /// Take the lease, or keep it, for `lease` from now: the epoch while
    /// `holder` has it, None while another does. The epoch is new when the
    /// lease changes hands, the same while one holder renews it.
    pub fn lease(&self, holder: &str, address: &str, lease: Duration) -> Result<Option<u64>> {
        let Db::Pg(_) = self.db() else { bail!("a lease needs a shared (Postgres) state") };
        let row = self.db().query_one(
            "INSERT INTO leader (id, holder, address, epoch, expires)
             VALUES (1, $1, $2, 1, clock_timestamp() + $3::bigint * interval '1 millisecond')
             ON CONFLICT (id) DO UPDATE SET
                 holder = excluded.holder, address = excluded.address, expires = excluded.expires,
                 epoch = CASE WHEN leader.holder = excluded.holder THEN leader.epoch ELSE leader.epoch + 1 END
             WHERE leader.holder = excluded.holder OR leader.expires < clock_timestamp()
             RETURNING epoch",
            params![holder, address, lease.as_millis() as i64],
        )?;
        row.map(|r| Ok(r.required_int("epoch")? as u64)).transpose()
    }

    /// From now on, write only while `holder` leads at the epoch in
    /// `epoch`: each write is a transaction that first reads the lease row
    /// `FOR SHARE` (so a new leader's takeover waits for it to end, and any
    /// write after that takeover fails). A SQLite state is not fenced.
    pub fn fence(&self, holder: &str, epoch: Arc<lifeboat_client::CoordinatorEpoch>) {
        *self.fence.lock().expect("fence") = Some(Fence { holder: holder.to_string(), epoch });
    }

    /// Run `work` in one transaction, fenced when [`Store::fence`] says so.
    pub(crate) fn write<T>(&self, work: impl FnOnce(&Session<'_>) -> Result<T>) -> Result<T> {
        let fence = self.fence.lock().expect("fence").clone().filter(|_| self.shared());
        let Some(f) = fence else { return self.db().transaction(work) };
        self.db().transaction(|s| {
            let epoch = f.epoch.get();
            let held = s.query_one(
                "SELECT epoch FROM leader WHERE id = 1 AND holder = $1 AND epoch = $2 AND expires > clock_timestamp() FOR SHARE",
                params![&f.holder, epoch as i64],
            )?;
            if held.is_none() {
                bail!("this coordinator does not hold the lease (epoch {epoch}): another one leads, so this one writes nothing");
            }
            work(s)
        })
    }

    /// Give the lease up now (a clean stop), so another takes it at once.
    pub fn resign(&self, holder: &str) -> Result<()> {
        self.db().execute("UPDATE leader SET expires = clock_timestamp() WHERE holder = $1", params![holder])?;
        Ok(())
    }

    /// Who leads, if anyone ever has (None too for a SQLite state).
    pub fn leader(&self) -> Result<Option<LeaderRow>> {
        if !self.shared() {
            return Ok(None);
        }
        let row = self.db().query_one(
            "SELECT holder, address, epoch, to_char(expires AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"') AS expires,
                    (expires < clock_timestamp()) AS expired
             FROM leader WHERE id = 1",
            params![],
        )?;
        row.map(|r| {
            Ok(LeaderRow {
                holder: r.required_text("holder")?,
                address: r.required_text("address")?,
                epoch: r.required_int("epoch")? as u64,
                expires: r.required_text("expires")?,
                expired: r.required_int("expired")? != 0,
            })
        })
        .transpose()
    }

    /// Lock failover `id` for this process, or say who holds it. `state`
    /// is the `--state` this store was opened from.
    pub fn lock_failover(&self, state: &Path, id: &str) -> Result<FailoverLock> {
        match self.db() {
            Db::Sqlite(_) => lock_file(state, id).map(FailoverLock::File),
            Db::Pg(_) => {
                let conn = self.db().pg()?.clone();
                let busy = || {
                    format!("failover {id} is being carried out by another lifeboat process on the shared state {}; wait for it, or stop it first", conn.shown)
                };
                if !conn.held.lock().expect("held failovers").insert(id.to_string()) {
                    bail!(busy());
                }
                let got = conn.query("SELECT pg_try_advisory_lock(hashtext($1)) AS got", params![format!("failover {id}")]);
                if got.as_ref().ok().and_then(|g| g.first()).and_then(|r| r.int("got").ok().flatten()) != Some(1) {
                    conn.held.lock().expect("held failovers").remove(id);
                    got?;
                    bail!(busy());
                }
                Ok(FailoverLock::Pg { conn, id: id.to_string() })
            }
        }
    }
}

fn lock_file(state: &Path, id: &str) -> Result<std::fs::File> {
    let path = PathBuf::from(format!("{}.failover-{id}.lock", state.display()));
    match lifeboat_process::try_lock_file(&path).with_context(|| format!("opening {}", path.display()))? {
        Some(file) => Ok(file),
        None => bail!(
            "failover {id} is being carried out by another lifeboat process (it holds {}); wait for it, or stop it first",
            path.display()
        ),
    }
}
