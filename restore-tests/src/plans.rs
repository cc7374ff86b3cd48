//! Plan files for tests that need a coordinator over one cell: a
//! cold-standby tier, one region, one `file://` primary location, and the
//! cell's agent. Schedules never fire on their own unless given.

use std::path::Path;

use crate::served::Service;

/// What varies between one-cell plans.
pub struct OneCell<'a> {
    pub plan: &'a str,
    pub cell: &'a str,
    /// The cell's agent's URL.
    pub agent: &'a str,
    /// The agent's token file.
    pub token: &'a Path,
    pub postgres_conninfo: &'a str,
    /// Extra `[defaults.*]` tables, written before the tier.
    pub defaults: &'a str,
    /// Extra lines of the `[[cell]]` table (e.g. its own `schedules`).
    pub cell_lines: &'a str,
}

/// `[defaults.schedules]` that never fire on their own (once a year, at new year).
pub const QUIET_SCHEDULES: &str = r#"[defaults.schedules]
pg_full = "0 0 1 1 *"
pg_incremental = "0 0 1 1 *"
kafka_snapshot = "0 0 1 1 *"
drill = "0 0 1 1 *"
retention = "0 0 1 1 *"
verify_sample = "0 0 1 1 *"
"#;

/// Tier `t1`: 5 min / 15 min, Kafka 90 min, cold standby.
pub const TIER_T1: &str = r#"[[tier]]
name = "t1"
rpo = "5m"
rto = "15m"
kafka_rpo = "90m"
strategy = "cold-standby"
"#;

/// A recovery site of a plan under test: its agent, the shared test
/// broker for its guests' topics (under `prefix`), their ports from `port`.
pub struct Site<'a> {
    pub name: &'a str,
    pub region: &'a str,
    pub agent: &'a Service,
    pub token: &'a Path,
    pub capacity: u32,
    pub brokers: &'a str,
    pub prefix: &'a str,
    pub port: u16,
}

impl Site<'_> {
    /// Its `[[recovery_site]]` table, and a `[[scenario]]` of `scope` with
    /// no gate, in `tier_order` (a TOML array), `parallelism` cells at once.
    pub fn with_scenario(&self, scenario: &str, scope: &str, tier_order: &str, parallelism: u32, rto: &str) -> String {
        format!(
            r#"[[recovery_site]]
name = "{name}"
region = "{region}"
agent = {{ url = "{url}", token = "file:{token}" }}
capacity = {capacity}
kafka = {{ brokers = "{brokers}", topic_prefix = "{prefix}" }}
postgres = {{ port = {port} }}

[[scenario]]
name = "{scenario}"
scope = "{scope}"
tier_order = {tier_order}
parallelism = {parallelism}
approve = []
rto = "{rto}"
"#,
            name = self.name,
            region = self.region,
            url = self.agent.url,
            token = self.token.display(),
            capacity = self.capacity,
            brokers = self.brokers,
            prefix = self.prefix,
            port = self.port,
        )
    }
}

/// Regions `r-a` and `r-b` of one cloud, a tier `t1` (5 min / 15 min,
/// cold standby) and the location `main` (primary, in `r-a`) of a plan
/// named `plan`.
pub fn two_regions(plan: &str) -> String {
    format!(
        r#"{TIER_T1}
[[region]]
name = "r-a"
cloud = "azure"

[[region]]
name = "r-b"
cloud = "azure"

[[location]]
name = "main"
url = "file:///{plan}/main"
region = "r-a"
role = "primary"
"#
    )
}

/// Write the plan into `dir/plan.toml` and check it with `lifeboat plan validate`.
pub fn write_one_cell(dir: &Path, p: &OneCell<'_>) {
    std::fs::create_dir_all(dir).unwrap();
    let text = format!(
        r#"[plan]
name = "{plan}"
description = "one cell, cold standby"

{quiet}{defaults}
[[tier]]
name = "t3"
rpo = "1h"
rto = "4h"
strategy = "cold-standby"

[[region]]
name = "r"
cloud = "azure"

[[location]]
name = "p"
url = "file:///{plan}"
region = "r"
role = "primary"

[[cell]]
name = "{cell}"
tier = "t3"
region = "r"
tenants = ["tenant-{cell}"]
agent = {{ url = "{url}", token = "file:{token}" }}
locations = ["p"]
postgres = {{ conninfo = "{conninfo}" }}
{cell_lines}
"#,
        cell_lines = p.cell_lines,
        quiet = QUIET_SCHEDULES,
        plan = p.plan,
        cell = p.cell,
        defaults = p.defaults,
        url = p.agent,
        token = p.token.display(),
        conninfo = p.postgres_conninfo,
    );
    std::fs::write(dir.join("plan.toml"), text).unwrap();
    let out = std::process::Command::new(crate::lifeboat_bin()).args(["plan", "validate", dir.to_str().unwrap()]).output().unwrap();
    assert!(out.status.success(), "the test plan is invalid: {}", String::from_utf8_lossy(&out.stderr));
}

/// The `[[cell]]` table of a [`crate::payments::PaymentsCell`] in tier `t1`
/// and region `r-a`, with its agent, `locations` (a TOML array), `extra`
/// lines of the cell table, and the smoke checks a payments cell has: the
/// ledger balances, every payment has its event, the records match the
/// snapshot, the consumer groups were translated.
pub fn payments_cell(cell: &crate::payments::PaymentsCell, agent_url: &str, token: &Path, locations: &str, extra: &str) -> String {
    format!(
        r#"[[cell]]
name = "{name}"
tier = "t1"
region = "r-a"
tenants = ["tenant-{name}"]
agent = {{ url = "{agent_url}", token = "file:{token}" }}
locations = {locations}
postgres = {{ conninfo = "{conn}" }}
kafka = {{ brokers = "{brokers}", topics = "{name}\\..*" }}
{extra}

[[cell.smoke]]
name = "ledger balances"
sql = "select coalesce(sum(amount), 0) = 0 from ledger"
expect = "t"

[[cell.smoke]]
name = "every payment has its event"
kafka = "payments-have-events"
sql = "select id::text, at from payments"
topic = "{topic}"
grace = "5s"

[[cell.smoke]]
name = "records match the snapshot"
kafka = "records-match-snapshot"

[[cell.smoke]]
name = "consumer groups translated"
kafka = "groups-translated"
"#,
        name = cell.name,
        token = token.display(),
        conn = cell.conninfo(),
        brokers = cell.kafka.address,
        topic = cell.topic,
    )
}
