//! Keeping the plan's standbys while the coordinator runs: every
//! `--standby-interval`, each cell whose plan keeps a standby is looked up
//! at its first recovery site (a read: the guest's recovery points carry
//! it); only a standby that is missing, stopped, or kept with another mode,
//! location or port than the plan's gets a `standby` job (bootstrap, start,
//! or bootstrap again; see [`needs_job`]), so the site's job history holds
//! repairs, not a job per pass. A cell that failed over (a failover
//! other than a test, not aborted) is left alone: its standby became its
//! primary, and a new one comes with re-protecting it. A cell with no
//! Postgres point at its site yet (no base backup) is not tried, and a
//! repair that failed is tried again after a backoff (the interval,
//! doubling up to an hour), so a broken standby does not fill the site's
//! job history with failures. What each pass
//! finds is kept for the status (`CellStatus.standby`); without
//! `--signing-key` standbys are only looked at, never repaired.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use lifeboat_api::standby::StandbyStatus;

use super::Coordinator;
use crate::failover::journal::{FailoverState, Journal};
use crate::failover::standby::{ensure, needs_job, reported, wanted, StandbyView};
use crate::plan::{CellPlan, Standby};

/// The cells a failover moved: no standby is kept for them.
fn failed_over(c: &Coordinator) -> anyhow::Result<BTreeSet<String>> {
    let journal = Journal(&c.store);
    // A failed-back cell is home again: its standby is kept again.
    let moved = journal.list()?.into_iter().filter(|f| !f.test && !matches!(f.state, FailoverState::Aborted | FailoverState::FailedBack));
    let mut away = BTreeSet::new();
    for f in moved {
        away.extend(journal.away(&f)?);
    }
    Ok(away)
}

/// Record what the site said of `cell`'s standby, for the status.
fn record(c: &Coordinator, cell: &CellPlan, answer: Result<Option<StandbyStatus>, String>) {
    let view = StandbyView::of(&c.plan, cell, answer);
    c.standbys.lock().expect("standbys").insert(cell.name.clone(), view);
}

/// Per cell: repairs that failed in a row, and when to try again.
#[derive(Default)]
pub struct Backoff(HashMap<String, (u32, OffsetDateTime)>);

impl Backoff {
    fn due(&self, cell: &str, now: OffsetDateTime) -> bool {
        self.0.get(cell).is_none_or(|(_, next)| now >= *next)
    }

    fn failed(&mut self, cell: &str, interval: Duration, now: OffsetDateTime) {
        let failures = self.0.get(cell).map_or(0, |(n, _)| *n) + 1;
        let wait = interval.saturating_mul(1 << failures.min(12)).min(Duration::from_secs(3600));
        self.0.insert(cell.to_string(), (failures, now + wait));
    }
}

/// One pass over the plan's standbys.
pub async fn keep(c: &Arc<Coordinator>, backoff: &mut Backoff, interval: Duration) {
    let skip = match c.blocking(failed_over).await {
        Ok(s) => s,
        Err(e) => return tracing::error!("standbys: reading the failover journal: {e:#}"),
    };
    c.standbys.lock().expect("standbys").retain(|cell, _| !skip.contains(cell));
    let cells = c.plan.cells.iter().filter(|cell| cell.failover.standby != Standby::None && !skip.contains(&cell.name));
    for cell in cells {
        let now = crate::clock::now();
        let answer = reported(&c.plan, cell).await.map_err(|e| format!("{e:#}"));
        // Nothing to bootstrap from before the cell's first base backup.
        let bootstrappable =
            |r: &lifeboat_api::Recovery| r.locations.iter().any(|l| l.postgres.as_ref().is_some_and(|p| p.recoverable_to.is_some()));
        let Ok((_, want)) = wanted(&c.plan, cell) else { continue };
        let repair = matches!(&answer, Ok(r) if needs_job(r.standby.as_ref(), &want) && bootstrappable(r)) && backoff.due(&cell.name, now);
        record(c, cell, answer.map(|r| r.standby));
        let Some(signer) = c.cfg.signer.as_ref().filter(|_| repair) else { continue };
        let kept = ensure(&c.plan, cell, signer).await;
        match (kept.standby, kept.error) {
            (Some(s), _) => {
                tracing::info!(cell = %cell.name, port = s.port, action = %s.action, "standby kept");
                backoff.0.remove(&cell.name);
                record(c, cell, Ok(Some(s)));
            }
            (None, e) => {
                backoff.failed(&cell.name, interval, now);
                tracing::error!(cell = %cell.name, error = e.unwrap_or_default(), "standby could not be kept");
            }
        }
    }
}
