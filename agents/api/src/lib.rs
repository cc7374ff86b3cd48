//! The contract between the coordinator and its agents: every type that
//! crosses the agent's HTTP API, with serde only and no I/O. The agent's
//! handlers answer with these types, `lifeboat-client` sends and reads
//! them, and the OpenAPI document (`docs/agent-api.json`) is generated from
//! them ([`openapi`]), so a renamed field breaks the build of both sides
//! and the published document together.
//!
//! - [`jobs`]: what a caller may ask for (one spec per job kind), the job
//!   record with its state and progress
//! - [`results`]: what a finished job reports, one type per kind
//! - [`recovery`]: how far the cell can be recovered from each location
//! - [`drill`]: the restore drill the coordinator asks for, and its outcome
//! - [`service`]: health, version, report lists, error bodies
//! - [`standby`]: the standbys a recovery site keeps for its guests
//! - [`reprotect`]: a failover's new primary made to archive and back up again
//! - [`failback`]: a cell handed back home from its new primary, without loss
//! - [`openapi`]: the endpoints and the document generated from the types
//!
//! Instants are `time::OffsetDateTime` in RFC 3339; durations are
//! `std::time::Duration` written in whole units ("35d", "24h", [`duration`]).

pub mod drill;
pub mod duration;
pub mod failback;
pub mod jobs;
pub mod openapi;
pub mod recovery;
pub mod reprotect;
pub mod results;
mod schema;
pub mod service;
pub mod standby;

pub use drill::{Check, ChecksSignature, DrillOutcome, DrillSpec, DrillTarget, Outcome, Step};
pub use jobs::{Job, JobKind, JobSpec, JobState, PgTarget, Progress, RetentionOf};
pub use recovery::{LocationPoint, LocationRole, Recovery};
pub use results::JobResult;
pub use service::ErrorBody;
