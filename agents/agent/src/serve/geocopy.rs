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
    started: OffsetDateTime,
    synced: Mutex<HashMap<String, OffsetDateTime>>,
    /// Per location, what earlier passes checked there (not read again while unchanged).
    checked: Mutex<HashMap<String, Checked>>,
    lag_seconds: Family<Location, Gauge<f64, std::sync::atomic::AtomicU64>>,
    lag_bytes: Family<Location, Gauge>,
    passes: Family<Location, Counter>,
    failures: Family<Location, Counter>,
}

impl GeoCopy {
    /// Register the geo-copy metrics (names are the platform's, unprefixed).
    pub fn new(metrics: &super::metrics::Metrics) -> GeoCopy {
        let g = GeoCopy {
            started: OffsetDateTime::now_utc(),
            synced: Mutex::default(),
            checked: Mutex::default(),
            lag_seconds: Family::default(),
            lag_bytes: Family::default(),
            passes: Family::default(),
            failures: Family::default(),
        };
        let mut registry = metrics.registry();
        let root = registry.sub_registry_with_prefix("lifeboat_geo_copy");
        root.register("lag_seconds", "Age of the newest complete copy pass, per location", g.lag_seconds.clone());
        root.register("lag_bytes", "Bytes the newest copy pass found missing, per location", g.lag_bytes.clone());
        root.register("passes", "Complete copy passes, per location", g.passes.clone());
        root.register("failures", "Copy passes that failed or left objects behind, per location", g.failures.clone());
        g
    }

    pub fn synced(&self, location: &str) -> Option<OffsetDateTime> {
        self.synced.lock().expect("geo-copy state").get(location).copied()
    }

    /// Bring the lag gauges up to now (called before metrics are rendered).
    pub fn refresh(&self, locations: &[(String, String)]) {
        let now = OffsetDateTime::now_utc();
        for (name, _) in locations {
            let since = self.synced(name).unwrap_or(self.started);
            self.lag_seconds.get_or_create(&Location { location: name.clone() }).set((now - since).as_seconds_f64());
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
