//! Failover: what operators run when a cell, a region or a cloud is lost.
//!
//! - [`assess`]: the failover plan of a scenario for what failed: per cell
//!   the recovery site, the location and recovery point it is recovered
//!   from, what would be lost (projected RPO) and how long it should take
//!   (estimated RTO from its last drill), in the scenario's order, with the
//!   steps and the gates that wait for an operator. Nothing changes.
//! - [`hooks`]: calling a scenario's `http` and `command` hooks, with an
//!   idempotency key, a timeout and bounded retries.
//! - [`journal`]: failovers, their steps and approvals in the state
//!   database, each step written before its side effect.
//! - [`engine`]: carrying a journaled failover out: fence, restore (a
//!   takeover at the recovery site), smoke, route, verify, report, in waves.
//! - [`report`]: a cell's failover report, signed onto its chain.
//! - [`commit`]: re-protecting the new primaries once a failover is confirmed.
//! - [`failback`]: a committed failover's cells moved back home, without loss.
//! - [`standby`]: the standbys the plan keeps at recovery sites.
//! - [`view`]: a failover as `failover status` and the coordinator's API show it.

pub mod assess;
pub mod commit;
pub mod engine;
pub mod failback;
pub mod hooks;
pub mod journal;
pub mod mirror;
pub mod report;
pub mod standby;
pub mod view;
