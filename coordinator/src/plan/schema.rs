//! The plan files' schema, as written (TOML): every table refuses unknown
//! keys, and every named entry keeps its position for error messages.
//!
//! A plan is a directory of `*.toml` files; each may hold any of the
//! sections below, and the loader merges them (names must be unique across
//! all files).

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDoc {
    pub plan: Option<PlanMeta>,
    pub defaults: Option<Defaults>,
    #[serde(default)]
    pub tier: Vec<Spanned<Tier>>,
    #[serde(default)]
    pub region: Vec<Spanned<Region>>,
    #[serde(default)]
    pub location: Vec<Spanned<Location>>,
    #[serde(default)]
    pub cell: Vec<Spanned<Cell>>,
    #[serde(default)]
    pub recovery_site: Vec<Spanned<RecoverySite>>,
    #[serde(default)]
    pub hook: Vec<Spanned<Hook>>,
    #[serde(default)]
    pub scenario: Vec<Spanned<Scenario>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlanMeta {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// The published key drill reports are verified with (report-signing.pub),
    /// relative to the plan directory.
    #[serde(default)]
    pub report_public_key: Option<String>,
    /// The compliance controls reports evidence (`[[plan.controls]]`).
    #[serde(default)]
    pub controls: Vec<Spanned<Control>>,
}

/// A control of a compliance framework (ISO 27001, SOC 2, ...) that the
/// plan's reports evidence, kept in the plan so that compliance teams edit
/// it; each report names the controls of its operation, signed with it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Control {
    pub id: String,
    #[serde(default)]
    pub title: String,
    /// The operations whose reports evidence it (drill, failover,
    /// failover-test); every operation when empty.
    #[serde(default)]
    pub operations: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    #[serde(default)]
    pub schedules: Schedules,
    #[serde(default)]
    pub retention: Retention,
}

/// Cron expressions (5 fields, or 6 with seconds first; UTC).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedules {
    pub pg_full: Option<Spanned<String>>,
    pub pg_incremental: Option<Spanned<String>>,
    pub kafka_snapshot: Option<Spanned<String>>,
    pub drill: Option<Spanned<String>>,
    pub retention: Option<Spanned<String>>,
    /// `repo verify` of the cell's primary location and its copies (default weekly).
    pub verify: Option<Spanned<String>>,
    /// The sampled `repo verify` of the newest objects of every location (default daily).
    pub verify_sample: Option<Spanned<String>>,
}

/// How long backups are kept (durations such as `35d`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    pub pg_full: Option<Spanned<String>>,
    pub pg_incremental: Option<Spanned<String>>,
    pub kafka: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    ActivePassive,
    WarmStandby,
    ColdStandby,
}

impl Strategy {
    /// As written in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::ActivePassive => "active-passive",
            Strategy::WarmStandby => "warm-standby",
            Strategy::ColdStandby => "cold-standby",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: Spanned<String>,
    pub rpo: Spanned<String>,
    pub rto: Spanned<String>,
    pub strategy: Strategy,
    /// Kafka's recovery point objective (snapshots), when it differs from `rpo`.
    pub kafka_rpo: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Cloud {
    Azure,
    Aws,
}

impl Cloud {
    pub fn as_str(self) -> &'static str {
        match self {
            Cloud::Azure => "azure",
            Cloud::Aws => "aws",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Region {
    pub name: Spanned<String>,
    pub cloud: Cloud,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Primary,
    SecondaryRegion,
    CrossCloud,
}

impl Role {
    /// As written in plans.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::SecondaryRegion => "secondary-region",
            Role::CrossCloud => "cross-cloud",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    pub name: Spanned<String>,
    /// `file:///dir`, `s3://bucket/prefix` or `az://container/prefix`.
    pub url: Spanned<String>,
    pub region: Spanned<String>,
    pub role: Role,
    /// Credentials, by reference only (`env:NAME` or `file:PATH`).
    #[serde(default)]
    pub secrets: BTreeMap<String, Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cell {
    pub name: Spanned<String>,
    pub tier: Spanned<String>,
    pub region: Spanned<String>,
    pub dr_cell: Option<Spanned<String>>,
    #[serde(default)]
    pub tenants: Vec<Spanned<String>>,
    pub agent: Spanned<Agent>,
    /// Location names: the first with role `primary` is where backups go.
    pub locations: Vec<Spanned<String>>,
    pub postgres: Option<Spanned<Postgres>>,
    pub kafka: Option<Spanned<Kafka>>,
    #[serde(default)]
    pub schedules: Schedules,
    #[serde(default)]
    pub smoke: Vec<Spanned<Smoke>>,
    pub failover: Option<Spanned<CellFailover>>,
}

/// How a cell fails over: the standby it keeps, where it can be recovered.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CellFailover {
    /// Default from the tier's strategy.
    pub standby: Option<Spanned<Standby>>,
    /// Recovery sites, in order of preference.
    #[serde(default)]
    pub sites: Vec<Spanned<String>>,
    /// How a `stream` standby at the first site reaches the primary
    /// (libpq, no password; default: the cell's `postgres.conninfo`).
    pub primary_conninfo: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Standby {
    /// Cold: restored from the repository at failover time.
    None,
    /// Warm: replays archived WAL from the secondary-region copy.
    Archive,
    /// Hot: streams from the primary while it lives.
    Stream,
}

impl Standby {
    pub fn as_str(self) -> &'static str {
        match self {
            Standby::None => "none",
            Standby::Archive => "archive",
            Standby::Stream => "stream",
        }
    }

    /// What a tier's strategy keeps by default (and at least).
    pub fn of(strategy: Strategy) -> Standby {
        match strategy {
            Strategy::ActivePassive => Standby::Stream,
            Strategy::WarmStandby => Standby::Archive,
            Strategy::ColdStandby => Standby::None,
        }
    }
}

/// An agent that can host other cells' recovered copies (guest cells).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecoverySite {
    pub name: Spanned<String>,
    pub region: Spanned<String>,
    pub agent: Spanned<Agent>,
    /// Guest cells it can host at once.
    pub capacity: Option<Spanned<u32>>,
    /// Where guest cells' Kafka topics are restored.
    pub kafka: Option<Spanned<SiteKafka>>,
    /// How guest cells' Postgres servers listen.
    pub postgres: Option<Spanned<SitePostgres>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SitePostgres {
    /// The first guest's port; the next guests take the ports after it.
    pub port: Spanned<u16>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteKafka {
    pub brokers: Spanned<String>,
    /// Guest cells' topics and consumer groups are restored under this
    /// prefix (default none: the cell's own names).
    pub topic_prefix: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum HookKind {
    Http,
    Command,
}

/// An action outside Lifeboat a failover step calls (fence, route, notify, verify).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Hook {
    pub name: Spanned<String>,
    pub kind: HookKind,
    /// `http`: the URL POSTed to.
    pub url: Option<Spanned<String>>,
    /// `http`: a bearer token, by reference.
    pub token: Option<Spanned<String>>,
    /// `command`: the program and its arguments.
    pub command: Option<Spanned<Vec<String>>>,
    pub timeout: Option<Spanned<String>>,
    pub retries: Option<Spanned<u32>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    Cell,
    Region,
    Cloud,
}

impl Scope {
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Cell => "cell",
            Scope::Region => "region",
            Scope::Cloud => "cloud",
        }
    }
}

/// A failover scenario operators run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: Spanned<String>,
    pub scope: Scope,
    #[serde(default)]
    pub description: String,
    /// Tiers in the order they fail over (default: by RTO, shortest first).
    #[serde(default)]
    pub tier_order: Vec<Spanned<String>>,
    /// Cells failing over at once (default 1).
    pub parallelism: Option<Spanned<u32>>,
    /// Steps that wait for `failover approve` (default: fence).
    pub approve: Option<Spanned<Vec<String>>>,
    /// Hook names by step (`fence`, `route`, `notify`, `verify`).
    #[serde(default)]
    pub hooks: BTreeMap<String, Spanned<String>>,
    /// The whole scenario's recovery time objective (default: the longest tier RTO).
    pub rto: Option<Spanned<String>>,
    /// Its scheduled test (a `--test` failover the served coordinator runs).
    pub test: Option<Spanned<ScenarioTest>>,
    /// A forced-failover chaos drill (scope `cell` only; none by default).
    pub chaos: Option<Spanned<ScenarioChaos>>,
}

/// When the served coordinator crashes a cell's primary and fails it over
/// to its standby and back, unattended.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioChaos {
    /// Cron (UTC), e.g. monthly: "0 3 15 * *".
    pub schedule: Spanned<String>,
    /// The cells (default: every cell with a `stream` standby).
    #[serde(default)]
    pub cells: Vec<Spanned<String>>,
}

/// When a scenario is tested and what each test fails.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScenarioTest {
    /// Cron (UTC), or "off" (default: quarterly, see `defaults::FAILOVER_TEST`).
    pub schedule: Option<Spanned<String>>,
    /// The cells, regions or clouds (as the scope says) each test fails, one
    /// test each (default: every one that holds cells).
    #[serde(default)]
    pub failed: Vec<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Agent {
    pub url: Spanned<String>,
    /// The agent's API token, by reference.
    pub token: Option<Spanned<String>>,
    /// Accept an `http://` URL to a host other than loopback (the token
    /// and every answer then cross the network in the clear).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Postgres {
    /// libpq conninfo without a password.
    pub conninfo: Spanned<String>,
    pub password: Option<Spanned<String>>,
    /// The cluster's `archive_timeout`: the longest WAL stays unarchived.
    pub archive_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kafka {
    pub brokers: Spanned<String>,
    /// Regular expression over whole topic names.
    pub topics: Spanned<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Smoke {
    pub name: Spanned<String>,
    /// SQL whose single value must equal `expect`.
    pub sql: Option<Spanned<String>>,
    pub expect: Option<Spanned<String>>,
    /// A Kafka check: `records-match-snapshot`, `groups-translated` or
    /// `payments-have-events`.
    pub kafka: Option<Spanned<String>>,
    /// `payments-have-events`: the source topic holding the events.
    pub topic: Option<Spanned<String>>,
    /// `payments-have-events`: how long after its commit an event may be
    /// published (payments this close to the target may lack their event).
    pub grace: Option<Spanned<String>>,
}
