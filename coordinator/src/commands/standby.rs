//! `lifeboat standby ensure`: have every recovery site keep the standbys
//! the plan asks for (see `crate::failover::standby`), bootstrapping the
//! missing ones and starting the stopped ones, and show them. Run it after
//! a plan change and from cron (the served coordinator does it on its own
//! schedule, see `serve`). Exit 1 when a standby could not be kept.

use std::path::Path;

use anyhow::Result;

use super::Done;
use crate::failover::standby::{ensure as keep, Kept};
use crate::plan::Standby;
use crate::report::keys::Signer;
use crate::serve::load_plan;

/// `standby ensure --plans DIR --signing-key K [--cell C]`.
pub async fn ensure(plans: &Path, signing_key: &Path, only: Option<&str>) -> Result<Done<Vec<Kept>>> {
    let plan = load_plan(plans)?;
    let signer = Signer::from_file(signing_key)?;
    let cells: Vec<_> = plan.cells.iter().filter(|c| only.is_none_or(|o| o == c.name)).collect();
    if let Some(o) = only.filter(|_| cells.is_empty()) {
        anyhow::bail!("no cell {o:?} in plan {}", plan.name);
    }
    let mut out = Vec::new();
    for cell in cells.into_iter().filter(|c| c.failover.standby != Standby::None) {
        out.push(keep(&plan, cell, &signer).await);
    }
    let text = out.iter().map(line).collect::<Vec<_>>().join("\n");
    let ok = out.iter().all(|k| k.error.is_none());
    let text = if out.is_empty() { "no cell of the plan keeps a standby".into() } else { text };
    Ok(Done { value: out, text, ok })
}

fn line(k: &Kept) -> String {
    let site = k.site.as_deref().unwrap_or("-");
    match (&k.standby, &k.error) {
        (Some(s), _) => {
            let lag = match s.state.replay_lag_seconds {
                Some(l) => format!("lag {l:.1}s"),
                None => "not streaming".into(),
            };
            format!("{}: {} standby at {site} port {} {} (backup {}), {lag}", k.cell, s.mode.as_str(), s.port, s.action, s.backup)
        }
        (None, e) => format!("{}: standby at {site} FAILED: {}", k.cell, e.as_deref().unwrap_or("unknown")),
    }
}
