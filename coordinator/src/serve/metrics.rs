//! The coordinator's Prometheus metrics: RPO exposure and verdict per cell,
//! location and system, geo-copy lag, last successful backup per kind, runs
//! by kind and outcome with durations, scheduling latency, overdue runs;
//! per cell the last drill's demonstrated RTO and RPO, the time since its
//! last passing drill, its restore success rate and drill verdict; requests
//! refused for want of a token.
//! Labels are names from the plan; never URLs or secrets.

use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use time::OffsetDateTime;

use crate::runs::RunKind;
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
struct Cell {
    cell: String,
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScenarioFailure {
    scenario: String,
    failed: String,
}

type FloatGauge = Gauge<f64, AtomicU64>;

pub struct Metrics {
    registry: Mutex<Registry>,
    exposure: Family<Exposure, FloatGauge>,
    target: Family<Exposure, FloatGauge>,
    verdict: Family<Exposure, Gauge>,
    copy_lag: Family<CellLocation, FloatGauge>,
    recoverable_at: Family<Exposure, FloatGauge>,
    copied_at: Family<CellLocation, FloatGauge>,
    drill_passed_at: Family<Cell, FloatGauge>,
    drill_period: Family<Cell, FloatGauge>,
    rto_target: Family<Cell, FloatGauge>,
    leading: Gauge,
    last_success: Family<CellKind, FloatGauge>,
    runs: Family<KindOutcome, Counter>,
    durations: Family<KindOutcome, Histogram>,
    latency: Histogram,
    overdue: Family<Kind, Counter>,
    drill_rto: Family<Cell, FloatGauge>,
    drill_rpo: Family<Cell, FloatGauge>,
    drill_since_pass: Family<Cell, FloatGauge>,
    drill_success: Family<Cell, FloatGauge>,
    drill_verdict: Family<Cell, Gauge>,
    test_finished: Family<ScenarioFailure, FloatGauge>,
    test_passed: Family<ScenarioFailure, Gauge>,
    chaos_finished: Family<ScenarioFailure, FloatGauge>,
    chaos_passed: Family<ScenarioFailure, Gauge>,
    unauthorized: Counter,
}

fn verdict_number(v: Verdict) -> i64 {
    match v {
        Verdict::Ok => 0,
        Verdict::AtRisk => 1,
        Verdict::Breached => 2,
    }
}

fn duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

/// Seconds since the Unix epoch, as Prometheus timestamps are.
fn seconds(at: OffsetDateTime) -> f64 {
    at.unix_timestamp_nanos() as f64 / 1e9
}

impl Metrics {
    pub fn new() -> Metrics {
        let m = Metrics {
            registry: Mutex::new(Registry::default()),
            exposure: Family::default(),
            target: Family::default(),
            verdict: Family::default(),
            copy_lag: Family::default(),
            recoverable_at: Family::default(),
            copied_at: Family::default(),
            drill_passed_at: Family::default(),
            drill_period: Family::default(),
            rto_target: Family::default(),
            leading: Gauge::default(),
            last_success: Family::default(),
            runs: Family::default(),
            durations: Family::new_with_constructor(duration_histogram as fn() -> Histogram),
            // 1 ms to about 33 s.
            latency: Histogram::new(exponential_buckets(0.001, 2.0, 16)),
            overdue: Family::default(),
            drill_rto: Family::default(),
            drill_rpo: Family::default(),
            drill_since_pass: Family::default(),
            drill_success: Family::default(),
            drill_verdict: Family::default(),
            test_finished: Family::default(),
            test_passed: Family::default(),
            chaos_finished: Family::default(),
            chaos_passed: Family::default(),
            unauthorized: Counter::default(),
        };
        {
            let mut r = m.registry.lock().expect("metrics registry");
            let l = r.sub_registry_with_prefix("lifeboat");
            l.register(
                "cell_rpo_exposure_seconds",
                "Now minus the newest recoverable point, per cell, location and system",
                m.exposure.clone(),
            );
            l.register("cell_rpo_target_seconds", "The tier's RPO, per cell, location and system", m.target.clone());
            l.register("cell_rpo_verdict", "0 ok, 1 at risk, 2 breached", m.verdict.clone());
            l.register(
                "geo_copy_lag_seconds",
                "Now minus the start of the newest complete copy pass to a location, as the agent reported it",
                m.copy_lag.clone(),
            );
            // Timestamps, the Prometheus convention: their age keeps growing
            // in queries (time() - x) even while this coordinator stalls.
            l.register(
                "cell_recoverable_timestamp_seconds",
                "The newest recoverable point, per cell, location and system (0: nothing recoverable)",
                m.recoverable_at.clone(),
            );
            l.register(
                "geo_copy_last_success_timestamp_seconds",
                "When the newest complete copy pass to a location started",
                m.copied_at.clone(),
            );
            l.register(
                "drill_last_pass_timestamp_seconds",
                "When the cell's newest passing drill ended (0: none)",
                m.drill_passed_at.clone(),
            );
            l.register("drill_period_seconds", "The longest gap the cell's drill schedule allows", m.drill_period.clone());
            l.register(
                "cell_rto_target_seconds",
                "The tier's RTO, per cell (drills' demonstrated RTO is measured against it)",
                m.rto_target.clone(),
            );
            l.register("coordinator_leading", "1 while this coordinator leads (schedules and acts), else 0", m.leading.clone());
            l.register(
                "build",
                "The coordinator's version and git commit",
                prometheus_client::metrics::info::Info::new(vec![
                    ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                    ("commit".to_string(), env!("LIFEBOAT_GIT_COMMIT").to_string()),
                ]),
            );
            l.register(
                "backup_last_success_timestamp_seconds",
                "When the newest successful run of a kind finished",
                m.last_success.clone(),
            );
            l.register("runs", "Runs finished, by kind and outcome (retried: an attempt failed, another follows)", m.runs.clone());
            l.register("run_duration_seconds", "Run time from submission to outcome", m.durations.clone());
            l.register("scheduler_latency_seconds", "From a run's scheduled instant to its submission to the agent", m.latency.clone());
            l.register("runs_overdue", "Runs still going past their window", m.overdue.clone());
            l.register("drill_demonstrated_rto_seconds", "The newest drill's time to a restored, checked environment", m.drill_rto.clone());
            l.register(
                "drill_demonstrated_rpo_seconds",
                "The newest drill's target minus the Postgres point recovered",
                m.drill_rpo.clone(),
            );
            l.register(
                "drill_since_last_pass_seconds",
                "Time since the cell's newest passing drill (+Inf: none)",
                m.drill_since_pass.clone(),
            );
            l.register("drill_success_ratio", "Passing drills over all drills of the last 365 days", m.drill_success.clone());
            l.register("drill_verdict", "0 a passing drill within the period, 1 at risk, 2 breached", m.drill_verdict.clone());
            l.register(
                "failover_test_last_timestamp_seconds",
                "When the newest test failover of a scenario and failure ended",
                m.test_finished.clone(),
            );
            l.register("failover_test_passed", "Whether that test passed (1) or failed (0)", m.test_passed.clone());
            l.register(
                "chaos_drill_last_timestamp_seconds",
                "When the newest chaos drill (a forced failover and failback) of a scenario and cell ended",
                m.chaos_finished.clone(),
            );
            l.register(
                "chaos_drill_passed",
                "Whether that chaos drill failed the cell over and back (1) or not (0)",
                m.chaos_passed.clone(),
            );
            l.register("http_unauthorized_requests", "Requests refused for a missing or wrong token", m.unauthorized.clone());
        }
        // Every kind's outcomes exist from the start at 0: Prometheus'
        // increase() counts a failure only against an earlier sample.
        for kind in RunKind::ALL {
            for outcome in ["succeeded", "failed", "retried"] {
                let _ = m.runs.get_or_create(&KindOutcome { kind: kind.as_str().into(), outcome: outcome.into() });
            }
        }
        m
    }

    pub fn finished(&self, kind: RunKind, outcome: &str, seconds: Option<f64>) {
        let labels = KindOutcome { kind: kind.as_str().into(), outcome: outcome.into() };
        self.runs.get_or_create(&labels).inc();
        if let Some(s) = seconds {
            self.durations.get_or_create(&labels).observe(s);
        }
    }

    pub fn last_success(&self, cell: &str, kind: RunKind, at: OffsetDateTime) {
        self.last_success.get_or_create(&CellKind { cell: cell.into(), kind: kind.as_str().into() }).set(seconds(at));
    }

    /// The newest finished test failover (or, `chaos`, chaos drill) of `scenario` for `failed`.
    pub fn exercise(&self, chaos: bool, scenario: &str, failed: &str, finished: OffsetDateTime, passed: bool) {
        let labels = ScenarioFailure { scenario: scenario.into(), failed: failed.into() };
        let (at, ok) = match chaos {
            true => (&self.chaos_finished, &self.chaos_passed),
            false => (&self.test_finished, &self.test_passed),
        };
        at.get_or_create(&labels).set(seconds(finished));
        ok.get_or_create(&labels).set(i64::from(passed));
    }

    pub fn leading(&self, leading: bool) {
        self.leading.set(i64::from(leading));
    }

    pub fn scheduling_latency(&self, seconds: f64) {
        self.latency.observe(seconds.max(0.0));
    }

    pub fn unauthorized(&self) {
        self.unauthorized.inc();
    }

    pub fn overdue(&self, kind: RunKind) {
        self.overdue.get_or_create(&Kind { kind: kind.as_str().into() }).inc();
    }

    /// Set the compliance gauges from a freshly computed status.
    pub fn status(&self, status: &Status) {
        for c in &status.cells {
            self.rto_target.get_or_create(&Cell { cell: c.cell.clone() }).set(c.rto_seconds);
            for l in &c.locations {
                for (system, point) in [("postgres", &l.postgres), ("kafka", &l.kafka)] {
                    let Some(p) = point else { continue };
                    let labels = Exposure { cell: c.cell.clone(), location: l.location.clone(), system: system.into() };
                    // Nothing recoverable: exposure is unbounded; +Inf says so.
                    self.exposure.get_or_create(&labels).set(p.exposure_seconds.unwrap_or(f64::INFINITY));
                    self.target.get_or_create(&labels).set(p.target_seconds);
                    self.verdict.get_or_create(&labels).set(verdict_number(p.verdict));
                    self.recoverable_at.get_or_create(&labels).set(p.recoverable_to.map_or(0.0, seconds));
                }
                if let Some(lag) = l.copy_lag_seconds {
                    let labels = CellLocation { cell: c.cell.clone(), location: l.location.clone() };
                    self.copy_lag.get_or_create(&labels).set(lag);
                    self.copied_at.get_or_create(&labels).set(seconds(status.computed_at) - lag);
                }
            }
            if let Some(d) = &c.drills {
                let cell = Cell { cell: c.cell.clone() };
                if let Some(v) = d.rto_seconds {
                    self.drill_rto.get_or_create(&cell).set(v);
                }
                if let Some(v) = d.rpo_seconds {
                    self.drill_rpo.get_or_create(&cell).set(v);
                }
                self.drill_since_pass.get_or_create(&cell).set(d.since_passed_seconds.unwrap_or(f64::INFINITY));
                self.drill_passed_at.get_or_create(&cell).set(d.last_passed.map_or(0.0, seconds));
                self.drill_period.get_or_create(&cell).set(d.period_seconds);
                if let Some(v) = d.success_rate {
                    self.drill_success.get_or_create(&cell).set(v);
                }
                self.drill_verdict.get_or_create(&cell).set(verdict_number(d.verdict));
            }
        }
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().expect("metrics registry")).expect("writing to a String");
        out
    }
}
