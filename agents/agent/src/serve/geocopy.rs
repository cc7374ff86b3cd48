//! Continuous geo-copy: every `--copy-interval`, the agent copies its
//! repository to each `--copy-to` location (`repo copy`: only what is
//! missing, WAL first, every object verified at the destination, manifests
//! last). A pass that ends without failures means the destination holds,
//! verified, everything the source held when the pass started; that
//! instant is the location's "copied through" time. Lag in seconds is now
//! minus that time (or minus the agent's start, before any pass succeeded);
//! lag in bytes is what the newest pass found missing. Each location keeps
//! what earlier passes checked there, so an unchanged object is read once,
//! not every pass.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use time::OffsetDateTime;

use lifeboat_repository::copy::{copy_checked, default_jobs, Checked};

use super::Agent;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Location {
    location: String,
}

pub struct GeoCopy {
    synced: Mutex<HashMap<String, OffsetDateTime>>,
    /// Per location, what earlier passes checked there (not read again while unchanged).
    checked: Mutex<HashMap<String, Checked>>,
    copied_at: Family<Location, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lag_bytes: Family<Location, Gauge>,
    passes: Family<Location, Counter>,
    failures: Family<Location, Counter>,
}

impl GeoCopy {
    /// Register the geo-copy metrics (`lifeboat_agent_geo_copy_*`).
    pub fn new(metrics: &super::metrics::Metrics) -> GeoCopy {
        let g = GeoCopy {
            synced: Mutex::default(),
            checked: Mutex::default(),
            copied_at: Family::default(),
            lag_bytes: Family::default(),
            passes: Family::default(),
            failures: Family::default(),
        };
        let mut registry = metrics.registry();
        let root = registry.sub_registry_with_prefix("geo_copy");
        // A timestamp (the coordinator's lifeboat_geo_copy_lag_seconds is the
        // age it gives); 0 until the first complete pass.
        root.register("last_success_timestamp_seconds", "When the newest complete copy pass to a location started", g.copied_at.clone());
        root.register("lag_bytes", "Bytes the newest copy pass found missing, per location", g.lag_bytes.clone());
        root.register("passes", "Complete copy passes, per location", g.passes.clone());
        root.register("failures", "Copy passes that failed or left objects behind, per location", g.failures.clone());
        g
    }

    pub fn synced(&self, location: &str) -> Option<OffsetDateTime> {
        self.synced.lock().expect("geo-copy state").get(location).copied()
    }

    /// Bring the pass timestamps up to date (called before metrics are rendered).
    pub fn refresh(&self, locations: &[(String, String)]) {
        for (name, _) in locations {
            let at = self.synced(name).map_or(0.0, |t| t.unix_timestamp_nanos() as f64 / 1e9);
            self.copied_at.get_or_create(&Location { location: name.clone() }).set(at);
        }
    }
}

/// Copy to every location, forever, one pass every `interval`.
pub async fn run(agent: Arc<Agent>, interval: Duration) {
    loop {
        for (name, url) in agent.config.copy_to.clone() {
            use tracing::Instrument as _;
            let span = tracing::info_span!("geo_copy", cell = %agent.config.cell, location = %name);
            pass(&agent, &name, &url).instrument(span).await;
        }
        tokio::time::sleep(interval).await;
    }
}

async fn pass(agent: &Agent, name: &str, url: &str) {
    let label = Location { location: name.to_string() };
    let started = OffsetDateTime::now_utc();
    let g = &agent.geo_copy;
    let mut checked = g.checked.lock().expect("geo-copy state").remove(name).unwrap_or_default();
    let result = async {
        let store = crate::context::store(url).await?;
        anyhow::Ok(copy_checked(&agent.repo, store, default_jobs(url), &mut checked).await?)
    }
    .await;
    g.checked.lock().expect("geo-copy state").insert(name.to_string(), checked);
    match result {
        Ok(report) if report.failures.is_empty() => {
            g.synced.lock().expect("geo-copy state").insert(name.to_string(), started);
            g.lag_bytes.get_or_create(&label).set(report.bytes_copied as i64);
            g.passes.get_or_create(&label).inc();
            if report.objects_copied > 0 {
                tracing::info!(location = name, objects = report.objects_copied, bytes = report.bytes_copied, "geo-copy pass");
            }
        }
        Ok(report) => {
            g.failures.get_or_create(&label).inc();
            tracing::warn!(location = name, failures = ?report.failures, "geo-copy pass left objects behind");
        }
        Err(e) => {
            g.failures.get_or_create(&label).inc();
            tracing::warn!(location = name, "geo-copy pass failed: {e:#}");
        }
    }
}
