//! `--kafka-follow`: the service runs the cell's Kafka follower (the
//! continuous snapshot mode, see `lifeboat_kafka::follow`) beside its jobs.
//! Each seal holds the Kafka snapshot jobs' lock, so a scheduled snapshot
//! (which folds the seals) never runs at the same time as one; metrics say
//! when the newest seal read its high watermarks and how many failed.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use lifeboat_api::jobs::JobKind;
use lifeboat_kafka::client::Brokers;
use lifeboat_kafka::follow::Follower;
use lifeboat_kafka::snapshot::SnapshotRequest;

use super::Agent;

/// A seal with nothing new is still written once the previous is this old.
const IDLE: Duration = Duration::from_secs(60);
/// Brokers that do not answer for this long fail the seal (it is retried).
const BROKER_TIMEOUT: Duration = Duration::from_secs(30);

pub struct FollowMetrics {
    last: Gauge<f64, AtomicU64>,
    failures: Counter,
}

impl FollowMetrics {
    pub fn new(metrics: &super::metrics::Metrics) -> FollowMetrics {
        let m = FollowMetrics { last: Gauge::default(), failures: Counter::default() };
        let mut registry = metrics.registry();
        let root = registry.sub_registry_with_prefix("kafka_seal");
        root.register(
            "last_timestamp_seconds",
            "When the newest Kafka seal read its high watermarks (the cell's Kafka recovery point)",
            m.last.clone(),
        );
        root.register("failures", "Kafka seals that failed (each is retried)", m.failures.clone());
        m
    }
}

/// The request a follower seals with: the agent's brokers and topics.
pub fn request(agent: &Agent) -> anyhow::Result<SnapshotRequest> {
    let (Some(list), Some(topics)) = (&agent.config.kafka_brokers, &agent.config.kafka_topics) else {
        anyhow::bail!("--kafka-follow needs --kafka-brokers and --kafka-topics");
    };
    Ok(SnapshotRequest { cell: agent.config.cell.clone(), brokers: Brokers::new(list, BROKER_TIMEOUT)?, topics: topics.clone() })
}

/// Seal every `every` for as long as the service runs, never while a
/// Kafka snapshot job runs.
pub async fn run(agent: Arc<Agent>, req: SnapshotRequest, every: Duration) {
    let follower = Follower::new(agent.repo.clone(), req, IDLE).sharing(agent.kind_lock(JobKind::KafkaSnapshot));
    let report = |result: &lifeboat_kafka::Result<Option<lifeboat_kafka::stored::Snapshot>>| match result {
        Ok(Some(s)) => {
            agent.follow_metrics.last.set(s.manifest.started.unix_timestamp_nanos() as f64 / 1e9);
            tracing::debug!(seal = %s.manifest.id, records = s.details.records(), "sealed");
        }
        Ok(None) => {}
        Err(e) => {
            agent.follow_metrics.failures.inc();
            tracing::error!("a Kafka seal failed (retrying, backing off to a minute): {e}");
        }
    };
    lifeboat_kafka::follow::follow(follower, every, report, std::future::pending()).await
}
