//! Restore drills, as the agent runs them: restore a cell's Postgres
//! (point in time) and Kafka (up to the same instant) into a scratch
//! environment, run the plan's smoke checks against it, time every phase,
//! and remove everything it created, also when it fails or is interrupted.
//! What a drill is asked for and reports are wire types of the contract
//! (`lifeboat_api::drill`).
//!
//! - [`run`]: the drill itself, step by step
//! - [`scratch`]: the scratch environment and its cleanup
//! - [`standby`]: a guest cell's standby, kept where its takeover would go
//! - [`reprotect`]: a takeover made to archive and back up again
//! - [`failback`]: the home rebuilt as a standby, the takeover handed back
//! - `checks`: the smoke checks
//! - [`confine`]: what the scratch server and the checks are allowed

mod checks;
pub mod confine;
pub mod failback;
pub mod reprotect;
pub mod run;
pub mod scratch;
pub mod standby;
