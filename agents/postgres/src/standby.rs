//! A restored data directory made a standby, and how far a standby has
//! come. [`convert`] turns a restore (see [`crate::restore`]) into a
//! standby: `standby.signal` instead of `recovery.signal`, and for a hot
//! standby the primary to stream from; the archive stays its
//! `restore_command`, so a standby that falls behind the primary's
//! retained WAL catches up from the repository (no replication slot: a
//! dead standby never fills the primary's disk). [`state`] reads the
//! standby's receive and replay positions and its lag.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use lifeboat_api::standby::StandbyState;

use crate::backup::{connect, PgError};
use crate::restore::Reached;

/// Make the restored data directory `data` a standby (streaming from
/// `primary_conninfo` when given). The conninfo must hold no password.
pub fn convert(data: &Path, primary_conninfo: Option<&str>) -> Result<(), PgError> {
    let io = |what: &str, e: std::io::Error| PgError::Config(format!("{what} in {}: {e}", data.display()));
    if let Some(c) = primary_conninfo {
        check_conninfo(c)?;
    }
    std::fs::remove_file(data.join("recovery.signal")).map_err(|e| io("removing recovery.signal", e))?;
    std::fs::write(data.join("standby.signal"), "").map_err(|e| io("writing standby.signal", e))?;
    let mut settings = String::from("# ---- a standby kept by lifeboat-agent standby ----\nhot_standby = 'on'\n");
    if let Some(c) = primary_conninfo {
        let _ = writeln!(settings, "primary_conninfo = '{}'", c.replace('\'', "''"));
    }
    crate::restore::append_settings(data, &settings)
}

/// A primary's conninfo is written into the standby's configuration: a
/// password there would sit in a file every backup of it copies.
pub fn check_conninfo(conninfo: &str) -> Result<(), PgError> {
    if crate::conninfo::holds_password(conninfo)? {
        return Err(PgError::Config(
            "the primary's conninfo holds a password; give it in a passfile on the recovery site's host (passfile=PATH, or ~postgres/.pgpass) instead".into(),
        ));
    }
    Ok(())
}

/// Promote the standby behind `conninfo` once it has replayed past
/// `after_lsn`, never before (what it lacks would be lost); a server
/// already promoted is only read. Returns what it had replayed and the
/// point it reached.
pub async fn promote_after(conninfo: &str, after_lsn: &str, timeout: Duration) -> Result<(String, Reached), PgError> {
    let started = Instant::now();
    let client = connect(conninfo).await?;
    let q = |context: &'static str| move |source| PgError::Query { context: context.into(), source };
    let replayed = loop {
        let row = client
            .query_one(
                "select pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, ''), coalesce(pg_last_wal_replay_lsn() > $1::text::pg_lsn, false)",
                &[&after_lsn],
            )
            .await
            .map_err(q("reading how far the standby replayed"))?;
        let (in_recovery, replayed, past): (bool, String, bool) = (row.get(0), row.get(1), row.get(2));
        if !in_recovery || past {
            break replayed;
        }
        if started.elapsed() > timeout {
            return Err(PgError::Wal(format!(
                "the standby replayed up to {replayed}, not past {after_lsn} (the old primary's last WAL) after {}s: promoting it would lose what lies between; is it streaming?",
                timeout.as_secs()
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let wait = i32::try_from(timeout.as_secs().clamp(1, 60)).unwrap_or(60);
    client.query_one("select pg_promote(true, $1)", &[&wait]).await.map_err(q("promoting the standby"))?;
    loop {
        let row = client
            .query_one(
                "select pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn()::text, ''), pg_last_xact_replay_timestamp()::text,
                        (select timeline_id from pg_control_checkpoint())",
                &[],
            )
            .await
            .map_err(q("waiting for the promotion"))?;
        if !row.get::<_, bool>(0) {
            let reached = Reached {
                lsn: row.get(1),
                last_transaction_time: row.get(2),
                timeline: row.get::<_, i32>(3) as u32,
                seconds_to_promote: started.elapsed().as_secs_f64(),
            };
            return Ok((replayed, reached));
        }
        if started.elapsed() > timeout {
            return Err(PgError::Wal(format!("the standby was not promoted within {}s; see its log", timeout.as_secs())));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

const STATE: &str = "select pg_is_in_recovery(),
       pg_last_wal_receive_lsn()::text,
       pg_last_wal_replay_lsn()::text,
       pg_last_xact_replay_timestamp()::text,
       coalesce((select status = 'streaming' from pg_stat_wal_receiver), false),
       case when pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() then 0::float8
            else extract(epoch from now() - pg_last_xact_replay_timestamp())::float8 end";

/// The standby's state as the server reports it; a server that does not
/// answer is reported as not running, with why.
pub async fn state(conninfo: &str) -> StandbyState {
    let mut out = StandbyState {
        checked_at: time::OffsetDateTime::now_utc(),
        running: false,
        in_recovery: false,
        streaming: false,
        receive_lsn: None,
        replay_lsn: None,
        last_replayed_transaction: None,
        replay_lag_seconds: None,
        problem: None,
    };
    let client = match connect(conninfo).await {
        Ok(c) => c,
        Err(e) => {
            out.problem = Some(e.to_string());
            return out;
        }
    };
    out.running = true;
    match client.query_one(STATE, &[]).await {
        Ok(row) => {
            out.in_recovery = row.get(0);
            out.receive_lsn = row.get(1);
            out.replay_lsn = row.get(2);
            out.last_replayed_transaction = row.get(3);
            out.streaming = out.in_recovery && row.get::<_, bool>(4);
            // Without a stream, what the standby lacks is unknown from here.
            out.replay_lag_seconds = if out.streaming { row.get::<_, Option<f64>>(5).map(|l| l.max(0.0)) } else { None };
        }
        Err(e) => out.problem = Some(format!("reading the standby's state: {e}")),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_in_the_primary_conninfo_is_refused() {
        assert!(check_conninfo("host=db port=5432 user=replicator").is_ok());
        let e = check_conninfo("host=db user=replicator password=hunter2").unwrap_err().to_string();
        assert!(e.contains("passfile") && !e.contains("hunter2"), "{e}");
        assert!(check_conninfo("postgres://replicator:hunter2@db/postgres").is_err());
    }

    #[test]
    fn a_restore_becomes_a_standby() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("recovery.signal"), "").unwrap();
        std::fs::write(dir.path().join("postgresql.auto.conf"), "restore_command = 'x'\n").unwrap();
        convert(dir.path(), Some("host=db user=o'brien")).unwrap();
        assert!(!dir.path().join("recovery.signal").exists() && dir.path().join("standby.signal").exists());
        let conf = std::fs::read_to_string(dir.path().join("postgresql.auto.conf")).unwrap();
        assert!(conf.contains("primary_conninfo = 'host=db user=o''brien'") && conf.starts_with("restore_command"), "{conf}");
    }
}
