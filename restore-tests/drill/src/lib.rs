//! Restore drills: restore a cell's Postgres (point in time) and Kafka (up
//! to the same instant) into a scratch environment, run the plan's smoke
//! checks against it, time every phase, and remove everything it created,
//! also when it fails or is interrupted.
//!
//! - [`spec`]: what the coordinator asks for (the wire type of the agent's
//!   `drill` job), always compiled
//! - [`outcome`]: what a drill reports back (steps, checks, timings,
//!   recovery points), always compiled
//! - `run` (feature `run`, the agent): the drill itself
//! - `scratch` (feature `run`): the scratch environment and its cleanup
//! - `checks` (feature `run`): the smoke checks

pub mod outcome;
pub mod spec;

#[cfg(feature = "run")]
mod checks;
#[cfg(feature = "run")]
pub mod run;
#[cfg(feature = "run")]
pub mod scratch;

pub use outcome::{DrillOutcome, Step};
pub use spec::{Check, DrillSpec};
