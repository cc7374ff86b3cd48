//! The failover journal mirrored into the locations a failover relies on.
//! The state database is the journal of record; after every change the
//! engine also hands the failover as `failover status` shows it (steps with
//! their idempotency keys, approvals, per-cell figures) to each cell's
//! recovery site, whose agent stores it, create-only and timestamped, in
//! the location that cell is recovered from (`failovers/<cell>/<id>/` in
//! its repository). Those are the locations a failover needs to survive,
//! so the journal survives the coordinator's host with them; geo-copy
//! carries it on. `lifeboat failover mirrored` reads it back. Mirroring is
//! best effort: a failure is logged and the failover goes on (the next
//! change mirrors the whole journal again).

use futures::future::join_all;
use serde::Deserialize;
use time::OffsetDateTime;

use super::engine::Engine;
use super::journal::{Approval, Failover, StepRecord};

/// What is mirrored: the failover as `failover status` shows it, and when.
#[derive(serde::Serialize)]
struct MirrorDoc<'a> {
    #[serde(with = "crate::clock::ms")]
    mirrored_at: OffsetDateTime,
    #[serde(flatten)]
    view: &'a super::view::View,
}

/// A mirrored journal as read back: what a coordinator that lost its state
/// imports ([`super::journal::Journal::import`]).
#[derive(Debug, Deserialize)]
pub struct Mirrored {
    /// The coordinator's clock when it mirrored this version (absent from
    /// older mirrors): of two mirrors of one failover, the later is newer.
    #[serde(default, with = "crate::clock::ms::option")]
    pub mirrored_at: Option<OffsetDateTime>,
    pub failover: Failover,
    #[serde(default)]
    pub approvals: Vec<Approval>,
    #[serde(default)]
    pub steps: Vec<StepRecord>,
}

impl Mirrored {
    /// When it was mirrored (for older mirrors, its last change): of two
    /// mirrors of one failover, the later is newer.
    pub fn changed(&self) -> OffsetDateTime {
        if let Some(t) = self.mirrored_at {
            return t;
        }
        let steps = self.steps.iter().map(|s| s.finished.unwrap_or(s.started));
        let approvals = self.approvals.iter().map(|a| a.at);
        steps.chain(approvals).chain(self.failover.finished).fold(self.failover.created, OffsetDateTime::max)
    }
}

impl Engine<'_> {
    /// Mirror failover `id`'s journal to every cell's recovery site.
    pub(super) async fn mirror(&self, id: &str) {
        let view = match super::view::view(self.store, id) {
            Ok(v) => v,
            Err(e) => return tracing::warn!(failover = id, "reading the journal to mirror it: {e:#}"),
        };
        let json = serde_json::to_vec(&MirrorDoc { mirrored_at: crate::clock::now(), view: &view }).expect("a failover's view serialises");
        let puts = view.failover.assessment.cells.iter().filter_map(|c| Some((c, self.placed(c).ok()?.1, c.location.as_deref()?))).map(
            |(c, site, location)| {
                let json = json.clone();
                async move {
                    let client = crate::serve::site_client(site)?.guest_reports(&c.cell, location);
                    client.put_failover_journal(id, json).await?;
                    anyhow::Ok(())
                }
            },
        );
        let cells = view.failover.assessment.cells.iter().map(|c| c.cell.as_str());
        for (result, cell) in join_all(puts).await.into_iter().zip(cells) {
            if let Err(e) = result {
                tracing::warn!(failover = id, cell, "mirroring the failover journal to the cell's recovery site: {e:#}");
            }
        }
    }
}
