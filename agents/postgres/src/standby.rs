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

use lifeboat_api::standby::StandbyState;

use crate::backup::{connect, PgError};

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
    let auto = data.join("postgresql.auto.conf");
    let mut text = std::fs::read_to_string(&auto).map_err(|e| io("reading postgresql.auto.conf", e))?;
    text.push_str(&settings);
    std::fs::write(&auto, text).map_err(|e| io("writing postgresql.auto.conf", e))
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
