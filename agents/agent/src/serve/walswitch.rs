//! Keeping an idle cell's WAL archive current. Postgres' `archive_timeout`
//! forces a segment switch only after "important" WAL; background records
//! (running-transaction snapshots) then sit in an unfinished segment, so
//! the archive's newest segment ages although no data is at risk, and
//! nothing tells a reader that. Every few seconds the agent looks at
//! Postgres' own archiver state, and when nothing finished waits to be
//! archived (no `.ready` file), the current segment holds WAL, and the
//! last archiving is older than `--pg-switch-after`, it calls
//! `pg_switch_wal()`.
//! It never switches while archiving fails or lags (that would only pile
//! segments up in `pg_wal`), on a standby, or at a segment boundary.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_postgres::lsn::{Lsn, SEGMENT_SIZE};

use super::Agent;

pub async fn run(agent: Arc<Agent>, after: Duration) {
    let Some(server) = agent.pg.clone() else { return };
    let every = (after / 2).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        match tokio::time::timeout(Duration::from_secs(10), tick(&server, after)).await {
            Ok(Ok(true)) => tracing::info!("forced a WAL segment switch: nothing archived for {after:?} and the current segment holds WAL"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::debug!("WAL switch check: {e:#}"),
            Err(_) => tracing::debug!("WAL switch check timed out"),
        }
    }
}

async fn tick(server: &lifeboat_postgres::conninfo::Server, after: Duration) -> anyhow::Result<bool> {
    let client = server.connect().await?;
    // Pending: finished WAL files Postgres has not archived yet (`.ready`
    // in archive_status; needs superuser or pg_monitor).
    let row = client
        .query_one(
            "select pg_is_in_recovery(), pg_current_wal_insert_lsn()::text,
                    extract(epoch from now() - last_archived_time)::float8,
                    coalesce(last_failed_time > last_archived_time, false),
                    (select count(*) from pg_ls_archive_statusdir() where name like '%.ready')
             from pg_stat_archiver",
            &[],
        )
        .await?;
    let in_recovery: bool = row.get(0);
    let insert: Option<String> = row.get(1);
    let age: Option<f64> = row.get(2);
    let failing: bool = row.get(3);
    let pending: i64 = row.get(4);
    let (Some(insert), Some(age)) = (insert, age) else { return Ok(false) };
    let insert: Lsn = insert.parse().map_err(|e| anyhow::anyhow!("WAL position {insert}: {e}"))?;
    let at_boundary = insert.0.is_multiple_of(SEGMENT_SIZE);
    if in_recovery || failing || pending > 0 || at_boundary || age < after.as_secs_f64() {
        return Ok(false);
    }
    client.execute("select pg_switch_wal()", &[]).await?;
    Ok(true)
}
