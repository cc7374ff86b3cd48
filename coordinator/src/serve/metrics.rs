//! The coordinator's Prometheus metrics: RPO exposure and verdict per cell,
//! location and system, geo-copy lag, last successful backup per kind, runs
//! by kind and outcome with durations, scheduling latency, overdue runs.
//! Labels are names from the plan; never URLs or secrets.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use chrono::{DateTime, Utc};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::compliance::{Status, Verdict};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Exposure {
    cell: String,
    location: String,
    system: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellLocation {
    cell: String,
    location: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CellKind {
    cell: String,
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindOutcome {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Mutex<Registry>,
    exposure: Family<Exposure, FloatGauge>,
    target: Family<Exposure, FloatGauge>,
    verdict: Family<Exposure, Gauge>,
    copy_lag: Family<CellLocation, FloatGauge>,
    last_success: Family<CellKind, FloatGauge>,
    runs: Family<KindOutcome, Counter>,
    durations: Family<KindOutcome, Histogram>,
    latency: Histogram,
    overdue: Family<Kind, Counter>,
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            exposure: Family::default(),
            target: Family::default(),
            verdict: Family::default(),
            copy_lag: Family::default(),
            last_success: Family::default(),
            runs: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            // 1 ms to about 33 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            overdue: Family::default(),
        };
        {
            let mut r = m.registry.lock().expect("metrics registry");
            let l = r.sub_registry_with_prefix("lifeboat");
            l.register("cell_rpo_exposure_seconds", "Now minus the newest recoverable point, per cell, location and system", m.exposure.clone());
            l.register("cell_rpo_target_seconds", "The tier's RPO, per cell, location and system", m.target.clone());
            l.register("cell_rpo_verdict", "0 ok, 1 at risk, 2 breached", m.verdict.clone());
            l.register("geo_copy_lag_seconds", "Age of the newest complete copy pass to a location", m.copy_lag.clone());
            l.register("backup_last_success_timestamp_seconds", "When the newest successful run of a kind finished", m.last_success.clone());
            l.register("runs", "Runs finished, by kind and outcome (retried: an attempt failed, another follows)", m.runs.clone());
            l.register("run_duration_seconds", "Run time from submission to outcome", m.durations.clone());
            l.register("scheduler_latency_seconds", "From a run's scheduled instant to its submission to the agent", m.latency.clone());
            l.register("runs_overdue", "Runs still going past their window", m.overdue.clone());
        }
        m
    }

    pub fn finished(&self, kind: &str, outcome: &str, seconds: Option<f64>) {
        let labels = KindOutcome { kind: kind.into(), outcome: outcome.into() };
        self.runs.get_or_create(&labels).inc();
        if let Some(s) = seconds {
            self.durations.get_or_create(&labels).observe(s);
        }
    }

    pub fn last_success(&self, cell: &str, kind: &str, at: DateTime<Utc>) {
        let t = at.timestamp_millis() as f64 / 1000.0;
        self.last_success.get_or_create(&CellKind { cell: cell.into(), kind: kind.into() }).set(t);
    }

    pub fn scheduling_latency(&self, seconds: f64) {
        self.latency.observe(seconds.max(0.0));
    }

    pub fn overdue(&self, kind: &str) {
        self.overdue.get_or_create(&Kind { kind: kind.into() }).inc();
    }

    /// Set the compliance gauges from a freshly computed status.
    pub fn status(&self, status: &Status) {
        for c in &status.cells {
            for l in &c.locations {
                for (system, point) in [("postgres", &l.postgres), ("kafka", &l.kafka)] {
                    let Some(p) = point else { continue };
                    let labels = Exposure { cell: c.cell.clone(), location: l.location.clone(), system: system.into() };
                    // Nothing recoverable: exposure is unbounded; +Inf says so.
                    self.exposure.get_or_create(&labels).set(p.exposure_seconds.unwrap_or(f64::INFINITY));
                    self.target.get_or_create(&labels).set(p.target_seconds);
                    let v = match p.verdict {
                        Verdict::Ok => 0,
                        Verdict::AtRisk => 1,
                        Verdict::Breached => 2,
                    };
                    self.verdict.get_or_create(&labels).set(v);
                }
                if let Some(lag) = l.copy_lag_seconds {
                    self.copy_lag.get_or_create(&CellLocation { cell: c.cell.clone(), location: l.location.clone() }).set(lag);
                }
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("metrics registry")).expect("writing to a String");
        out
    }
}
