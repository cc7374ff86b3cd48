//! Turning a running primary's WAL archiving on: what re-protecting a
//! failover's new primary does to it. [`read`] says how the server
//! archives now; [`set_command`] sets `archive_command` (a reload) and,
//! when `archive_mode` is off, `archive_mode = on` too (which takes a
//! restart: the caller's); [`switch_and_wait`] closes the current WAL
//! segment and waits until the archiver has archived through it, which
//! proves the command works end to end.

use std::time::{Duration, Instant};

use tokio_postgres::Client;

use crate::backup::PgError;

/// How a running server archives, read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archiving {
    pub mode: String,
    pub command: String,
    pub in_recovery: bool,
    /// The timeline it writes WAL on.
    pub timeline: u32,
}

fn q(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> PgError {
    move |source| PgError::Query { context: context.into(), source }
}

/// The server's archiving settings and timeline.
pub async fn read(client: &Client) -> Result<Archiving, PgError> {
    let row = client
        .query_one(
            "select current_setting('archive_mode'), current_setting('archive_command'), pg_is_in_recovery(),
                    case when pg_is_in_recovery() then (select timeline_id from pg_control_checkpoint())
                         else ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int end",
            &[],
        )
        .await
        .map_err(q("reading the archiving settings (this needs a superuser)"))?;
    Ok(Archiving { mode: row.get(0), command: row.get(1), in_recovery: row.get(2), timeline: row.get::<_, i32>(3) as u32 })
}

/// What [`set_command`] changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// It archived with that command already.
    None,
    /// The command was set and the configuration reloaded.
    Reloaded,
    /// `archive_mode` was off: it is set, and takes effect at the next start.
    NeedsRestart,
}

/// Make the server archive with `command` (written with `ALTER SYSTEM`, so
/// it outlives a restart).
pub async fn set_command(client: &Client, now: &Archiving, command: &str) -> Result<Change, PgError> {
    let mode_on = now.mode != "off";
    if mode_on && now.command == command {
        return Ok(Change::None);
    }
    let literal = format!("'{}'", command.replace('\'', "''"));
    client.batch_execute(&format!("ALTER SYSTEM SET archive_command = {literal}")).await.map_err(q("setting archive_command"))?;
    if !mode_on {
        client.batch_execute("ALTER SYSTEM SET archive_mode = 'on'").await.map_err(q("setting archive_mode"))?;
        return Ok(Change::NeedsRestart);
    }
    client.query_one("select pg_reload_conf()", &[]).await.map_err(q("reloading the configuration"))?;
    Ok(Change::Reloaded)
}

/// Whether `last_archived` (`pg_stat_archiver.last_archived_wal`) shows
/// segment `switched` archived. Segment names sort by timeline, then
/// position; a `.backup` or `.partial` file is named after its segment
/// and archived after it (in name order); a `.history` file names none.
fn archived_through(last_archived: &str, switched: &str) -> bool {
    last_archived.get(..24).is_some_and(|segment| segment >= switched)
}

/// The archiver's progress (`pg_stat_archiver`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archived {
    /// The segment this call switched out of (archived by now).
    pub switched: String,
    pub last_archived: String,
    pub failed_count: i64,
}

/// Switch to a new WAL segment and wait until the one switched out of is
/// archived; on timeout, say what the archiver last failed on.
pub async fn switch_and_wait(client: &Client, timeout: Duration) -> Result<Archived, PgError> {
    let started = Instant::now();
    // A reload reaches the archiver a moment after pg_reload_conf returns.
    let switched: String = client.query_one("select pg_walfile_name(pg_switch_wal())", &[]).await.map_err(q("switching WAL"))?.get(0);
    loop {
        let row = client
            .query_one("select coalesce(last_archived_wal, ''), failed_count, coalesce(last_failed_wal, '') from pg_stat_archiver", &[])
            .await
            .map_err(q("reading pg_stat_archiver"))?;
        let (last_archived, failed_count, last_failed): (String, i64, String) = (row.get(0), row.get(1), row.get(2));
        if archived_through(&last_archived, &switched) {
            return Ok(Archived { switched, last_archived, failed_count });
        }
        if started.elapsed() > timeout {
            return Err(PgError::Wal(format!(
                "the archiver has not archived {switched} after {}s (last archived {}, {failed_count} failure(s), last failed {}); \
                 see the server's log for why archive_command fails",
                timeout.as_secs(),
                if last_archived.is_empty() { "nothing" } else { &last_archived },
                if last_failed.is_empty() { "none" } else { &last_failed },
            )));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::archived_through;

    #[test]
    fn a_backup_history_file_counts_as_its_segment() {
        let switched = "000000020000000000000004";
        assert!(archived_through("000000020000000000000004", switched));
        assert!(archived_through("000000020000000000000004.00000028.backup", switched), "archived after its segment");
        assert!(archived_through("000000020000000000000005", switched));
        assert!(!archived_through("000000020000000000000003", switched));
        assert!(!archived_through("000000010000000000000009.partial", switched), "an older timeline");
        assert!(!archived_through("00000002.history", switched));
        assert!(!archived_through("", switched));
    }
}
