//! One cell: its tier and region exist, a DR cell where the tier needs
//! one, tenants in no other cell, an agent with its token by reference,
//! locations for every scenario of the tier, Postgres and Kafka settings,
//! and schedules that parse and can meet the tier's RPO.

use std::collections::HashMap;

use toml::Spanned;

use super::super::schema::{self, Role, Strategy};
use super::super::{defaults, schedule, CellPlan, CellSchedules, TierTarget};
use super::catalog::Catalog;
use super::check::Check;

/// The cell being checked, where it is written, and its tier's targets.
pub struct At<'a> {
    pub file: usize,
    pub cell: &'a schema::Cell,
    /// `cell "name"`, for messages.
    pub from: String,
    pub tier: Option<TierTarget>,
}

/// Check one cell and resolve it. `tenants` holds every tenant seen so far.
pub fn validate(
    catalog: &Catalog<'_>,
    check: &mut Check<'_>,
    tenants: &mut HashMap<String, String>,
    file: usize,
    c: &schema::Cell,
) -> CellPlan {
    let at = At { file, cell: c, from: format!("cell {:?}", c.name.get_ref()), tier: catalog.tier_targets.get(c.tier.get_ref()).cloned() };
    catalog.tiers.require(check, file, &c.tier, &at.from);
    catalog.regions.require(check, file, &c.region, &at.from);
    dr_cell(catalog, check, &at);
    unique_tenants(check, tenants, &at);
    check.agent(file, &c.agent, &at.from);
    locations(catalog, check, &at);
    postgres(check, &at);
    kafka(check, &at);
    if c.postgres.is_none() && c.kafka.is_none() {
        check.at(file, &c.name, format!("{} protects nothing: give it [cell.postgres] and/or [cell.kafka]", at.from));
    }
    let schedules = schedules(catalog, check, &at);
    let smoke_checks = super::smoke::checks(check, &at);
    let failover = super::failover::cell(catalog, check, &at);
    CellPlan {
        name: c.name.get_ref().clone(),
        tier: c.tier.get_ref().clone(),
        region: c.region.get_ref().clone(),
        dr_cell: c.dr_cell.as_ref().map(|d| d.get_ref().clone()),
        tenants: c.tenants.iter().map(|t| t.get_ref().clone()).collect(),
        agent_url: c.agent.get_ref().url.get_ref().clone(),
        agent_token: c.agent.get_ref().token.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default(),
        locations: c.locations.iter().map(|l| l.get_ref().clone()).collect(),
        postgres: c.postgres.is_some(),
        kafka_brokers: c.kafka.as_ref().map(|k| k.get_ref().brokers.get_ref().clone()),
        kafka_topics: c.kafka.as_ref().map(|k| k.get_ref().topics.get_ref().clone()),
        schedules,
        retention: catalog.retention.clone(),
        database: c.postgres.as_ref().and_then(|p| conninfo_dbname(p.get_ref().conninfo.get_ref())).unwrap_or_else(|| "postgres".into()),
        smoke_checks,
        failover,
    }
}

/// `dbname` of a conninfo in either form (key=value or postgresql:// URI).
fn conninfo_dbname(conninfo: &str) -> Option<String> {
    conninfo.parse::<tokio_postgres::Config>().ok()?.get_dbname().map(str::to_string)
}

/// A DR cell: needed by active-passive and warm-standby tiers, never itself.
fn dr_cell(catalog: &Catalog<'_>, check: &mut Check<'_>, at: &At<'_>) {
    let (c, i, from) = (at.cell, at.file, &at.from);
    match &c.dr_cell {
        Some(dr) => {
            catalog.cells.require(check, i, dr, &format!("{from} dr_cell"));
            if dr.get_ref() == c.name.get_ref() {
                check.at(i, dr, format!("{from} cannot be its own DR cell"));
            }
        }
        None => {
            if let Some(t) = at.tier.as_ref().filter(|t| t.strategy != Strategy::ColdStandby) {
                let message =
                    format!("{from} is in tier {:?} ({}) but has no dr_cell; name the cell it fails over to", t.name, t.strategy.as_str());
                check.at(i, &c.name, message);
            }
        }
    }
}

/// Tenants live in exactly one cell.
fn unique_tenants(check: &mut Check<'_>, seen: &mut HashMap<String, String>, at: &At<'_>) {
    for t in &at.cell.tenants {
        let here = check.place(at.file, t);
        match seen.get(t.get_ref()) {
            Some(first) => {
                let message = format!("tenant {:?} is already in another cell (at {first}); a tenant lives in one cell", t.get_ref());
                check.at(at.file, t, message);
            }
            None => {
                seen.insert(t.get_ref().clone(), here);
            }
        }
    }
}

/// A primary location, plus what the tier's scenarios need, each on the
/// right side of the cell's region and cloud.
fn locations(catalog: &Catalog<'_>, check: &mut Check<'_>, at: &At<'_>) {
    let (c, i, from) = (at.cell, at.file, &at.from);
    let cloud = catalog.region_cloud.get(c.region.get_ref()).copied();
    let mut roles = Vec::new();
    for l in &c.locations {
        catalog.locations.require(check, i, l, from);
        let Some((role, region)) = catalog.location_info.get(l.get_ref()) else { continue };
        roles.push(*role);
        let loc_cloud = catalog.region_cloud.get(region).copied();
        if *role == Role::CrossCloud && loc_cloud.is_some() && loc_cloud == cloud {
            check.at(i, l, format!("location {:?} is cross-cloud but on the cell's own cloud", l.get_ref()));
        }
        if *role == Role::SecondaryRegion && region == c.region.get_ref() {
            check.at(i, l, format!("location {:?} is a secondary region but in the cell's own region", l.get_ref()));
        }
    }
    if !roles.contains(&Role::Primary) {
        check.at(i, &c.name, format!("{from} has no location with role \"primary\""));
    }
    if at.tier.as_ref().is_some_and(|t| t.strategy != Strategy::ColdStandby) && !roles.contains(&Role::SecondaryRegion) {
        check.at(i, &c.name, format!("{from} needs a \"secondary-region\" location for its tier's regional-outage scenario"));
    }
}

/// What is wrong with a conninfo of the plan: it does not parse, or it
/// holds a password (`instead` says where the password goes).
pub fn conninfo_problem(conninfo: &str, instead: &str) -> Option<String> {
    match conninfo.parse::<tokio_postgres::Config>() {
        Err(e) => {
            let why = std::error::Error::source(&e).map(|c| format!("{e}: {c}")).unwrap_or_else(|| e.to_string());
            Some(format!("conninfo does not parse ({why}); give key=value pairs or a postgresql:// URI"))
        }
        Ok(c) if c.get_password().is_some() => Some(format!("conninfo holds a password; {instead}")),
        Ok(_) => None,
    }
}

/// Postgres: no password in the conninfo, and an `archive_timeout` under the tier's RPO.
fn postgres(check: &mut Check<'_>, at: &At<'_>) {
    let Some(pg) = &at.cell.postgres else { return };
    let (pg, i) = (pg.get_ref(), at.file);
    if let Some(problem) = conninfo_problem(pg.conninfo.get_ref(), "give it as postgres.password = \"env:...\" or \"file:...\"") {
        check.at(i, &pg.conninfo, problem);
    }
    if let Some(p) = &pg.password {
        check.secret(i, p, "postgres.password");
    }
    let timeout = match &pg.archive_timeout {
        Some(t) => check.duration(i, t, "archive_timeout"),
        None => lifeboat_api::duration::parse(defaults::ARCHIVE_TIMEOUT).ok(),
    };
    if let (Some(t), Some(tier)) = (timeout, &at.tier) {
        if t >= tier.rpo {
            let target = pg.archive_timeout.as_ref().unwrap_or(&at.cell.name);
            let message = format!(
                "archive_timeout {} cannot meet tier {:?}'s RPO of {}: WAL may wait that long before it is archived; lower it",
                lifeboat_api::duration::format(t),
                tier.name,
                lifeboat_api::duration::format(tier.rpo)
            );
            check.at(i, target, message);
        }
    }
}

/// Kafka: brokers as host:port, topics as a regular expression.
fn kafka(check: &mut Check<'_>, at: &At<'_>) {
    let Some(k) = &at.cell.kafka else { return };
    let k = k.get_ref();
    check.brokers(at.file, &k.brokers);
    if let Err(e) = regex::Regex::new(k.topics.get_ref()) {
        check.at(at.file, &k.topics, format!("topics is not a valid regular expression: {e}"));
    }
}

/// A cron expression: the cell's, else the plan's default, else the
/// platform's; with where it was written (`None`: built in).
fn schedule_of<'a>(
    cell: &'a Option<Spanned<String>>,
    plan: Option<(usize, &'a Option<Spanned<String>>)>,
    builtin: &str,
    cell_file: usize,
) -> (String, Option<(usize, &'a Spanned<String>)>) {
    match (cell, plan) {
        (Some(c), _) => (c.get_ref().clone(), Some((cell_file, c))),
        (None, Some((f, Some(p)))) => (p.get_ref().clone(), Some((f, p))),
        _ => (builtin.to_string(), None),
    }
}

/// The cell's effective schedules: each parses, and Kafka snapshots come
/// often enough for the tier's Kafka RPO.
fn schedules(catalog: &Catalog<'_>, check: &mut Check<'_>, at: &At<'_>) -> CellSchedules {
    let (s, d, i) = (&at.cell.schedules, catalog.schedules, at.file);
    let pg_full = schedule_of(&s.pg_full, d.map(|(f, d)| (f, &d.pg_full)), defaults::PG_FULL, i);
    let pg_incr = schedule_of(&s.pg_incremental, d.map(|(f, d)| (f, &d.pg_incremental)), defaults::PG_INCREMENTAL, i);
    let kafka = schedule_of(&s.kafka_snapshot, d.map(|(f, d)| (f, &d.kafka_snapshot)), defaults::KAFKA_SNAPSHOT, i);
    let drill = schedule_of(&s.drill, d.map(|(f, d)| (f, &d.drill)), defaults::DRILL, i);
    let ret = schedule_of(&s.retention, d.map(|(f, d)| (f, &d.retention)), defaults::RETENTION, i);
    let verify = schedule_of(&s.verify, d.map(|(f, d)| (f, &d.verify)), defaults::VERIFY, i);
    let sample = schedule_of(&s.verify_sample, d.map(|(f, d)| (f, &d.verify_sample)), defaults::VERIFY_SAMPLE, i);
    let all = [
        ("pg_full", &pg_full),
        ("pg_incremental", &pg_incr),
        ("kafka_snapshot", &kafka),
        ("drill", &drill),
        ("retention", &ret),
        ("verify", &verify),
        ("verify_sample", &sample),
    ];
    for (what, (expr, written)) in all {
        let problem = match schedule::parse(expr) {
            Err(e) => Some(format!("schedules.{what}: {e}")),
            Ok(cron) if what == "kafka_snapshot" && at.cell.kafka.is_some() => too_sparse_for_kafka(&cron, expr, catalog.now, at),
            Ok(_) => None,
        };
        match (problem, written) {
            (None, _) => {}
            (Some(message), Some((f, v))) => check.at(*f, v, message),
            (Some(message), None) => check.at(i, &at.cell.name, message),
        }
    }
    CellSchedules {
        pg_full: pg_full.0,
        pg_incremental: pg_incr.0,
        kafka_snapshot: kafka.0,
        drill: drill.0,
        retention: ret.0,
        verify: verify.0,
        verify_sample: sample.0,
    }
}

/// Why a snapshot schedule cannot meet the tier's Kafka RPO, if it cannot.
fn too_sparse_for_kafka(cron: &croner::Cron, expr: &str, now: time::OffsetDateTime, at: &At<'_>) -> Option<String> {
    let (gap, tier) = (schedule::longest_gap(cron, now)?, at.tier.as_ref()?);
    (gap > tier.kafka_rpo).then(|| {
        format!(
            "schedules.kafka_snapshot {expr:?} leaves up to {} between snapshots, more than tier {:?}'s Kafka RPO of {}; snapshot more often or set the tier's kafka_rpo",
            lifeboat_api::duration::format(gap),
            tier.name,
            lifeboat_api::duration::format(tier.kafka_rpo)
        )
    })
}
