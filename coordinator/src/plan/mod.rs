//! DR plans: the platform's tiers, regions, storage locations and cells,
//! with schedules, retention and smoke checks, as TOML files in a directory
//! (GitOps). [`load`] reads them, [`validate`] checks them and resolves the
//! effective plan; every problem is a [`Diagnostic`] with file and line.
//!
//! - [`schema`]: the files' shape as written
//! - [`load`]: reading and parsing the directory
//! - [`validate`]: references, secrets, schedules against tier targets
//! - [`schedule`]: cron expressions (UTC) and their longest gap
//! - [`failover`]: which recovery site and location serve each cell in a scenario

pub mod failover;
pub mod load;
pub mod schedule;
pub mod schema;
pub mod stored;
pub mod validate;

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

pub use schema::{Cloud, HookKind, Role, Scope, Standby, Strategy};

/// One problem in a plan, at a file and line (0: the file as a whole).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub line: usize,
    pub message: String,
}

impl Diagnostic {
    pub fn new(file: &Path, line: usize, message: String) -> Diagnostic {
        Diagnostic { file: file.to_path_buf(), line, message }
    }
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.message)
        } else {
            write!(f, "{}: {}", self.file.display(), self.message)
        }
    }
}

/// A validated plan with every default applied.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    pub name: String,
    pub description: String,
    /// The published report key (`[plan] report_public_key`), resolved.
    pub report_public_key: Option<PathBuf>,
    /// The controls reports evidence (`[[plan.controls]]`).
    pub controls: Vec<ControlDef>,
    pub tiers: Vec<TierTarget>,
    pub regions: Vec<RegionDef>,
    pub locations: Vec<LocationDef>,
    pub cells: Vec<CellPlan>,
    pub sites: Vec<SiteDef>,
    pub hooks: Vec<HookDef>,
    pub scenarios: Vec<ScenarioDef>,
}

/// What a cell's agent calls its own repository; it knows its copies by
/// their plan location names.
pub use lifeboat_api::recovery::PRIMARY as AGENT_PRIMARY;

/// A compliance control and the report operations that evidence it.
#[derive(Debug, Clone, Serialize)]
pub struct ControlDef {
    pub id: String,
    pub title: String,
    /// Empty: every operation.
    pub operations: Vec<String>,
}

/// The operations reports are written for.
pub const REPORT_OPERATIONS: [&str; 3] = ["drill", "failover", "failover-test"];

impl Plan {
    /// The controls a report of `operation` evidences, as the report names them.
    pub fn controls_for(&self, operation: &str) -> Vec<crate::report::Control> {
        self.controls
            .iter()
            .filter(|c| c.operations.is_empty() || c.operations.iter().any(|o| o == operation))
            .map(|c| crate::report::Control { id: c.id.clone(), title: c.title.clone() })
            .collect()
    }

    /// The targets of `cell`'s tier.
    pub fn tier_of(&self, cell: &CellPlan) -> &TierTarget {
        self.tiers.iter().find(|t| t.name == cell.tier).expect("validated plans name known tiers")
    }

    pub fn site(&self, name: &str) -> Option<&SiteDef> {
        self.sites.iter().find(|s| s.name == name)
    }

    pub fn cloud_of(&self, region: &str) -> Option<Cloud> {
        self.regions.iter().find(|r| r.name == region).map(|r| r.cloud)
    }

    /// The name the cell's agent uses for plan location `location`.
    pub fn agent_location_name<'a>(&self, location: &'a str) -> &'a str {
        match self.locations.iter().any(|l| l.name == location && l.role == Role::Primary) {
            true => AGENT_PRIMARY,
            false => location,
        }
    }

    /// A recovery site's answer with its locations named as the cell's
    /// own agent names them (its primary is `primary`).
    pub fn name_locations(&self, r: &mut lifeboat_api::Recovery) {
        for l in &mut r.locations {
            l.location = self.agent_location_name(&l.location).to_string();
        }
    }

    /// The Postgres port guest `cell` gets at `site`: the site's first port
    /// plus the cell's place among the cells that list the site, so guests
    /// of different failovers at one site never share a port.
    pub fn guest_port(&self, site: &SiteDef, cell: &str) -> Option<u16> {
        let guests = self.cells.iter().filter(|c| c.failover.sites.contains(&site.name));
        let n = guests.map(|c| c.name.as_str()).position(|c| c == cell)?;
        u16::try_from(usize::from(site.postgres_port) + n).ok()
    }

    /// The plan location a name from `cell`'s agent stands for.
    pub fn plan_location_name(&self, cell: &CellPlan, agent_name: &str) -> String {
        if agent_name != AGENT_PRIMARY {
            return agent_name.to_string();
        }
        cell.locations
            .iter()
            .find(|l| self.locations.iter().any(|d| &d.name == *l && d.role == Role::Primary))
            .cloned()
            .unwrap_or_else(|| AGENT_PRIMARY.to_string())
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct TierTarget {
    pub name: String,
    #[serde(with = "secs")]
    pub rpo: Duration,
    #[serde(with = "secs")]
    pub rto: Duration,
    #[serde(with = "secs")]
    pub kafka_rpo: Duration,
    pub strategy: Strategy,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionDef {
    pub name: String,
    pub cloud: Cloud,
}

#[derive(Debug, Clone, Serialize)]
pub struct LocationDef {
    pub name: String,
    pub url: String,
    pub region: String,
    pub role: Role,
}

/// The effective schedules (cron, UTC) of a cell.
#[derive(Debug, Clone, Serialize)]
pub struct CellSchedules {
    pub pg_full: String,
    pub pg_incremental: String,
    pub kafka_snapshot: String,
    pub drill: String,
    pub retention: String,
    pub verify: String,
    pub verify_sample: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellRetention {
    #[serde(with = "secs")]
    pub pg_full: Duration,
    #[serde(with = "secs")]
    pub pg_incremental: Duration,
    #[serde(with = "secs")]
    pub kafka: Duration,
}

#[derive(Debug, Clone, Serialize)]
pub struct CellPlan {
    pub name: String,
    pub tier: String,
    pub region: String,
    pub dr_cell: Option<String>,
    pub tenants: Vec<String>,
    pub agent_url: String,
    /// The agent's API token, as a reference (`env:NAME` / `file:PATH`).
    pub agent_token: String,
    pub locations: Vec<String>,
    pub postgres: bool,
    pub kafka_brokers: Option<String>,
    pub kafka_topics: Option<String>,
    pub schedules: CellSchedules,
    pub retention: CellRetention,
    /// The database smoke-check SQL runs in (the conninfo's dbname).
    pub database: String,
    pub smoke_checks: Vec<lifeboat_api::Check>,
    pub failover: CellFailover,
}

/// How a cell fails over.
#[derive(Debug, Clone, Serialize)]
pub struct CellFailover {
    pub standby: Standby,
    /// Recovery sites, in order of preference; the standby is kept at the first.
    pub sites: Vec<String>,
    /// What a `stream` standby streams from (no password in it).
    pub primary_conninfo: Option<String>,
}

/// An agent that hosts other cells' recovered copies.
#[derive(Debug, Clone, Serialize)]
pub struct SiteDef {
    pub name: String,
    pub region: String,
    pub agent_url: String,
    /// The agent's API token, as a reference.
    pub agent_token: String,
    /// Guest cells it can host at once.
    pub capacity: u32,
    pub kafka_brokers: Option<String>,
    /// Guests' topics and groups are restored under this prefix.
    pub kafka_topic_prefix: String,
    /// The first guest port (see [`Plan::guest_port`]).
    pub postgres_port: u16,
}

/// Where a site's guests listen when the plan does not say.
pub const DEFAULT_GUEST_PORT: u16 = 5500;

#[derive(Debug, Clone, Serialize)]
pub struct HookDef {
    pub name: String,
    pub kind: HookKind,
    pub url: Option<String>,
    /// Bearer token for `http` hooks, as a reference.
    pub token: Option<String>,
    pub command: Vec<String>,
    #[serde(with = "secs")]
    pub timeout: Duration,
    pub retries: u32,
}

/// The steps of a failover, in order. A cell whose standby is promoted
/// skips the restore, and the other way round.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Assess,
    Fence,
    Promote,
    Restore,
    Smoke,
    Route,
    Verify,
    Report,
}

impl Step {
    pub const ALL: [Step; 8] =
        [Step::Assess, Step::Fence, Step::Promote, Step::Restore, Step::Smoke, Step::Route, Step::Verify, Step::Report];
    /// Steps an approval gate may hold (it waits before the step).
    pub const GATED: [Step; 4] = [Step::Fence, Step::Promote, Step::Restore, Step::Route];
    /// Steps that call a hook; `notify` hooks are called at the start, at
    /// each gate and at the end instead.
    pub const HOOKED: [&'static str; 4] = ["fence", "route", "notify", "verify"];

    pub fn as_str(self) -> &'static str {
        match self {
            Step::Assess => "assess",
            Step::Fence => "fence",
            Step::Promote => "promote",
            Step::Restore => "restore",
            Step::Smoke => "smoke",
            Step::Route => "route",
            Step::Verify => "verify",
            Step::Report => "report",
        }
    }

    pub fn parse(s: &str) -> Option<Step> {
        Step::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioDef {
    pub name: String,
    pub scope: Scope,
    pub description: String,
    /// Every tier, in the order their cells fail over.
    pub tier_order: Vec<String>,
    pub parallelism: u32,
    /// Steps that wait for an operator's approval.
    pub approve: Vec<Step>,
    /// Hook name by step (`fence`, `route`, `notify`, `verify`).
    pub hooks: std::collections::BTreeMap<String, String>,
    #[serde(with = "secs")]
    pub rto: Duration,
    /// Cron of its scheduled `--test` failovers (None: off).
    pub test_schedule: Option<String>,
    /// What each scheduled test fails, one test each.
    pub test_failed: Vec<String>,
    /// Cron of its chaos drills (None: none).
    pub chaos_schedule: Option<String>,
    /// The cells each chaos drill fails over and back, one after the other.
    pub chaos_cells: Vec<String>,
}

/// The platform defaults (design: Postgres full daily at 02:00, incremental
/// hourly, Kafka hourly, drills monthly, retention daily; fulls kept 35
/// days, incrementals and snapshots 7).
pub mod defaults {
    pub const PG_FULL: &str = "0 2 * * *";
    pub const PG_INCREMENTAL: &str = "0 * * * *";
    pub const KAFKA_SNAPSHOT: &str = "0 * * * *";
    pub const DRILL: &str = "0 3 1 * *";
    pub const RETENTION: &str = "30 4 * * *";
    /// Weekly: every object of the primary read and checked.
    pub const VERIFY: &str = "0 5 * * 0";
    /// Daily: the newest objects of every location read and checked.
    pub const VERIFY_SAMPLE: &str = "0 6 * * *";
    pub const KEEP_PG_FULL: &str = "35d";
    pub const KEEP_PG_INCREMENTAL: &str = "7d";
    pub const KEEP_KAFKA: &str = "7d";
    /// Postgres' own default `archive_timeout` is off; plans must bound it.
    pub const ARCHIVE_TIMEOUT: &str = "60s";
    /// Quarterly: each scenario's `--test` failover, 04:00 UTC on the 1st of January, April, July and October.
    pub const FAILOVER_TEST: &str = "0 4 1 1,4,7,10 *";
}

mod secs {
    pub fn serialize<S: serde::Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }
}

/// Load and validate the plan in `dir`: the plan, or every problem found.
pub fn load(dir: &Path) -> Result<Plan, Vec<Diagnostic>> {
    let (files, problems) = load::read_dir(dir);
    if !problems.is_empty() {
        // Cross-file checks on a partly read plan would only add noise.
        return Err(problems);
    }
    let (plan, problems) = validate::validate(dir, &files);
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

#[cfg(test)]
pub mod tests {
    /// The shipped demo plan. The directory comes from Cargo at run time:
    /// clones share one target directory, and a test binary built in
    /// another clone must not read that clone's files.
    pub fn demo_plan() -> super::Plan {
        super::load(&demo_dir()).unwrap()
    }

    /// Where the shipped demo plan is.
    pub fn demo_dir() -> std::path::PathBuf {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        std::path::Path::new(&manifest).join("../plans/demo")
    }

    /// The shipped platform plan (10 cells, three scenarios).
    pub fn platform_plan() -> super::Plan {
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
        super::load(&std::path::Path::new(&manifest).join("../plans/platform")).unwrap()
    }
}
