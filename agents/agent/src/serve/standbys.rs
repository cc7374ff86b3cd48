//! The standbys this agent keeps for its guest cells, as the coordinator
//! and Prometheus see them: a guest's recovery points carry its standby
//! ([`of`]), and every `INTERVAL` their state is read into the metrics
//! `lifeboat_agent_standby_up`, `lifeboat_agent_standby_streaming` and
//! `lifeboat_agent_standby_replay_lag_seconds` (absent while not streaming:
//! the lag is then unknown from here, and the archive's point counts).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use lifeboat_api::standby::StandbyStatus;

use super::Agent;

const INTERVAL: Duration = Duration::from_secs(15);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Cell {
    cell: String,
}

pub struct StandbyMetrics {
    up: Family<Cell, Gauge>,
    streaming: Family<Cell, Gauge>,
    lag: Family<Cell, Gauge<f64, AtomicU64>>,
}

impl StandbyMetrics {
    pub fn new(metrics: &super::metrics::Metrics) -> StandbyMetrics {
        let m = StandbyMetrics { up: Family::default(), streaming: Family::default(), lag: Family::default() };
        let mut registry = metrics.registry();
        let root = registry.sub_registry_with_prefix("standby");
        root.register("up", "A guest's standby runs and answers (1) or not (0)", m.up.clone());
        root.register("streaming", "A guest's standby streams from its primary now", m.streaming.clone());
        root.register("replay_lag_seconds", "How far a streaming standby's replay is behind its primary", m.lag.clone());
        m
    }

    /// No standby of `cell` is kept here (any more): down, not streaming.
    fn none(&self, cell: &str) {
        let label = Cell { cell: cell.to_string() };
        self.up.get_or_create(&label).set(0);
        self.streaming.get_or_create(&label).set(0);
        self.lag.remove(&label);
    }

    fn record(&self, status: &StandbyStatus) {
        let label = Cell { cell: status.cell.clone() };
        self.up.get_or_create(&label).set(i64::from(status.state.running));
        self.streaming.get_or_create(&label).set(i64::from(status.state.streaming));
        match status.state.replay_lag_seconds {
            Some(lag) => {
                self.lag.get_or_create(&label).set(lag);
            }
            None => {
                self.lag.remove(&label);
            }
        }
    }
}

/// Guest `cell`'s standby kept under the restore root, as it is now.
pub async fn of(agent: &Agent, cell: &str) -> Option<StandbyStatus> {
    let root = agent.config.restore_root.as_deref()?;
    let (dir, record) = lifeboat_drill::standby::find(root, cell)?;
    Some(lifeboat_drill::standby::status(&dir, &record, "kept").await)
}

/// Read every guest's standby into the metrics, every [`INTERVAL`].
pub async fn run(agent: Arc<Agent>) {
    let cells: std::collections::BTreeSet<String> = agent.config.guests.iter().map(|g| g.cell.clone()).collect();
    loop {
        for cell in &cells {
            match of(&agent, cell).await {
                Some(status) => agent.standby_metrics.record(&status),
                None => agent.standby_metrics.none(cell),
            }
        }
        tokio::time::sleep(INTERVAL).await;
    }
}
