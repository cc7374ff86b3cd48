//! Kafka topic snapshots into the Lifeboat repository, and point-in-time
//! restores with consumer-offset translation.
//!
//! - [`record`]: a record as stored, byte for byte, and its content hash
//! - [`details`]: what a snapshot manifest records (ranges, configs, groups)
//! - [`client`]: broker connections with timeouts and clear errors
//! - [`snapshot`]: full and incremental snapshots (each continues where the
//!   previous one ended; records lost to retention are reported as gaps)
//! - [`stored`]: snapshots in the repository (self-contained manifests whose
//!   older segments reuse earlier snapshots' chunks), reading records back
//! - [`follow`]: the continuous mode, sealing what a long-running tail read
//!   every few seconds (manifests of kind `kafka-seal`)
//! - [`compact`]: folding seals' small segments and chunks into a regular
//!   snapshot
//! - [`restore`]: resumable, idempotent restores, offset map, group offsets
//! - [`verify`]: restored topics against their snapshot
//!
//! Retention needs little of its own: regular manifests are self-contained,
//! so the repository's retention (by kind `kafka-`) never deletes data a
//! retained snapshot needs; a seal goes once a regular snapshot folded it
//! (`Policy::folded_kind`).

pub mod client;
pub mod compact;
pub mod details;
pub mod follow;
pub mod record;
pub mod restore;
pub mod security;
pub mod snapshot;
pub mod stored;
pub mod verify;

use lifeboat_repository::RepoError;

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error(transparent)]
    Repo(#[from] RepoError),
    /// Bad input or a state the operator must change; the text says how.
    #[error("{0}")]
    Invalid(String),
    /// The brokers failed or could not be reached.
    #[error("{context}: {source}")]
    Broker { context: String, source: rdkafka::error::KafkaError },
    #[error("{0}")]
    Failed(String),
    /// A partition's reader was stopped because the repository stopped
    /// taking its records; the repository's own error says why.
    #[error("the repository stopped taking records")]
    Stopped,
}

pub type Result<T, E = KafkaError> = std::result::Result<T, E>;

pub(crate) fn broker(context: impl Into<String>) -> impl FnOnce(rdkafka::error::KafkaError) -> KafkaError {
    let context = context.into();
    move |source| KafkaError::Broker { context, source }
}

/// Snapshot kinds (the middle part of backup ids).
pub const KIND_FULL: &str = "kafka-full";
pub const KIND_INCREMENTAL: &str = "kafka-incr";
/// What the continuous mode seals every few seconds: only the new segments.
pub const KIND_SEAL: &str = "kafka-seal";
