//! Keeping an idle cell's WAL archive current. Postgres' `archive_timeout`
//! forces a segment switch only after "important" WAL; background records
//! (running-transaction snapshots) then sit in an unfinished segment, so
//! the archive's newest segment ages although no data is at risk, and
//! nothing tells a reader that. Every few seconds the agent looks at
//! Postgres' own archiver state, and when the archive is caught up except
//! for the current segment, that segment holds WAL, and the newest archived
//! segment is older than `--pg-switch-after`, it calls `pg_switch_wal()`.
//! It never switches while archiving fails or lags (that would only pile
//! segments up in `pg_wal`), on a standby, or at a segment boundary.

use std::sync::Arc;
use std::time::Duration;

use lifeboat_postgres::lsn::{Lsn, SEGMENT_SIZE};
use lifeboat_postgres::walname::WalFile;

use super::Agent;

pub async fn run(agent: Arc<Agent>, after: Duration) {
    let Some(conninfo) = agent.pg_conninfo.clone() else { return };
    let every = (after / 2).max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        match tokio::time::timeout(Duration::from_secs(10), tick(&conninfo, after)).await {
            Ok(Ok(true)) => tracing::info!("forced a WAL segment switch: nothing archived for {after:?} and the current segment holds WAL"),
            Ok(Ok(false)) => {}
            Ok(Err(e)) => tracing::debug!("WAL switch check: {e:#}"),
            Err(_) => tracing::debug!("WAL switch check timed out"),
        }
    }
}

async fn tick(conninfo: &str, after: Duration) -> anyhow::Result<bool> {
    let client = lifeboat_postgres::backup::connect(conninfo).await?;
    let row = client
        .query_one(
            "select pg_is_in_recovery(), pg_current_wal_insert_lsn()::text, last_archived_wal,
                    extract(epoch from now() - last_archived_time)::float8,
                    coalesce(last_failed_time > last_archived_time, false)
             from pg_stat_archiver",
            &[],
        )
        .await?;
    let in_recovery: bool = row.get(0);
    let insert: Option<String> = row.get(1);
    let last_archived: Option<String> = row.get(2);
    let age: Option<f64> = row.get(3);
    let failing: bool = row.get(4);
    let (Some(insert), Some(last_archived), Some(age)) = (insert, last_archived, age) else { return Ok(false) };
    let insert: Lsn = insert.parse().map_err(|e| anyhow::anyhow!("WAL position {insert}: {e}"))?;
    let Some(WalFile::Segment { segno, .. }) = WalFile::parse(&last_archived) else { return Ok(false) };
    let at_boundary = insert.0 % SEGMENT_SIZE == 0;
    let caught_up_but_current = insert.segno() == segno + 1;
    if in_recovery || failing || at_boundary || !caught_up_but_current || age < after.as_secs_f64() {
        return Ok(false);
    }
    client.execute("select pg_switch_wal()", &[]).await?;
    Ok(true)
}
