//! The agent's Prometheus metrics (`GET /metrics`): jobs by kind and
//! outcome, their durations, jobs running, refused requests. Labels carry
//! kinds and outcomes only, never arguments, so no secret or path leaks.

use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

use super::jobs::State;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    kind: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Kind {
    kind: String,
}

pub struct Metrics {
    registry: Mutex<Registry>,
    jobs: Family<Outcome, Counter>,
    durations: Family<Outcome, Histogram>,
    running: Family<Kind, Gauge>,
    unauthorized: Counter,
}

fn duration_histogram() -> Histogram {
    // 1 s to about 9 hours.
    Histogram::new(exponential_buckets(1.0, 2.0, 16))
}

impl Metrics {
    pub fn new(cell: &str) -> Metrics {
        let mut registry = Registry::with_prefix("lifeboat_agent");
        let jobs = Family::<Outcome, Counter>::default();
        let durations = Family::<Outcome, Histogram>::new_with_constructor(duration_histogram as fn() -> Histogram);
        let running = Family::<Kind, Gauge>::default();
        let unauthorized = Counter::default();
        registry.register("jobs", "Jobs finished, by kind and outcome", jobs.clone());
        registry.register("job_duration_seconds", "Job run time, by kind and outcome", durations.clone());
        registry.register("jobs_running", "Jobs running now, by kind", running.clone());
        registry.register("unauthorized_requests", "Requests refused for a missing or wrong token", unauthorized.clone());
        registry.register(
            "build",
            "The agent's version, git commit and cell",
            Info::new(vec![
                ("version".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("commit".to_string(), env!("LIFEBOAT_GIT_COMMIT").to_string()),
                ("cell".to_string(), cell.to_string()),
            ]),
        );
        Metrics { registry: Mutex::new(registry), jobs, durations, running, unauthorized }
    }

    pub fn finished(&self, kind: &str, state: State, seconds: f64) {
        let outcome = match state {
            State::Succeeded => "succeeded",
            _ => "failed",
        };
        let labels = Outcome { kind: kind.to_string(), outcome: outcome.to_string() };
        self.jobs.get_or_create(&labels).inc();
        self.durations.get_or_create(&labels).observe(seconds);
    }

    pub fn running(&self, kind: &str, delta: i64) {
        self.running.get_or_create(&Kind { kind: kind.to_string() }).inc_by(delta);
    }

    pub fn unauthorized(&self) {
        self.unauthorized.inc();
    }

    /// Register more metrics (geo-copy lag) owned by other modules.
    pub fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        self.registry.lock().expect("metrics registry lock")
    }

    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry()).expect("writing to a String");
        out
    }
}
