//! Failover sections: recovery sites (an agent endpoint, a region, room
//! for guest cells), hooks (an https URL or a command, a timeout, bounded
//! retries), each cell's `[cell.failover]` (a standby at least as warm as
//! its tier's strategy keeps, sites that exist), and scenarios (known
//! tiers, hooks and gated steps) that can be carried out: every cell,
//! region or cloud the scenario could lose has each of its cells placed on
//! a surviving site with room ([`crate::plan::failover::place`]).

use std::collections::BTreeMap;
use std::time::Duration;

use super::super::failover::{affected, failures, place};
use super::super::schema::{self, HookKind, Standby};
use super::super::{CellFailover, HookDef, Plan, ScenarioDef, SiteDef, Step};
use super::catalog::Catalog;
use super::cell::At;
use super::check::Check;

/// Hooks are retried at most this often: a failover must not stall on one.
const MAX_RETRIES: u32 = 10;
const HOOK_TIMEOUT: &str = "30s";

pub fn site(catalog: &Catalog<'_>, check: &mut Check<'_>, i: usize, s: &schema::RecoverySite) -> SiteDef {
    let from = format!("recovery_site {:?}", s.name.get_ref());
    catalog.regions.require(check, i, &s.region, &from);
    check.agent(i, &s.agent, &from);
    let capacity = s.capacity.as_ref().map_or(1, |c| *c.get_ref());
    if let Some(c) = s.capacity.as_ref().filter(|c| *c.get_ref() == 0) {
        check.at(i, c, format!("{from}: capacity must be at least 1 guest cell"));
    }
    if let Some(k) = &s.kafka {
        check.brokers(i, &k.get_ref().brokers);
    }
    let postgres_port = s.postgres.as_ref().map_or(crate::plan::DEFAULT_GUEST_PORT, |p| *p.get_ref().port.get_ref());
    let agent = s.agent.get_ref();
    SiteDef {
        name: s.name.get_ref().clone(),
        region: s.region.get_ref().clone(),
        agent_url: agent.url.get_ref().clone(),
        agent_token: agent.token.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default(),
        capacity,
        kafka_brokers: s.kafka.as_ref().map(|k| k.get_ref().brokers.get_ref().clone()),
        kafka_topic_prefix: s
            .kafka
            .as_ref()
            .and_then(|k| k.get_ref().topic_prefix.as_ref())
            .map(|p| p.get_ref().clone())
            .unwrap_or_default(),
        postgres_port,
    }
}

/// A site's guests each get a port of their own (see `Plan::guest_port`):
/// they must all lie between 1024 and 65535.
pub fn guest_ports(check: &mut Check<'_>, i: usize, s: &schema::RecoverySite, plan: &Plan) {
    let Some(p) = s.postgres.as_ref().map(|p| &p.get_ref().port) else { return };
    let guests = plan.cells.iter().filter(|c| c.failover.sites.contains(s.name.get_ref())).count().max(1);
    if *p.get_ref() < 1024 || usize::from(*p.get_ref()) + guests > 65536 {
        let from = format!("recovery_site {:?}", s.name.get_ref());
        check.at(i, p, format!("{from}: postgres port must leave room for its {guests} possible guest(s) between 1024 and 65535"));
    }
}

pub fn hook(check: &mut Check<'_>, i: usize, h: &schema::Hook) -> HookDef {
    let from = format!("hook {:?}", h.name.get_ref());
    match h.kind {
        HookKind::Http => {
            match &h.url {
                Some(url) => check.endpoint(i, url, false, &format!("{from} url")),
                None => check.at(i, &h.name, format!("{from}: kind \"http\" needs url = \"https://...\"")),
            }
            if let Some(token) = &h.token {
                check.secret(i, token, "token");
            }
            if let Some(c) = &h.command {
                check.at(i, c, format!("{from}: command is for kind \"command\""));
            }
        }
        HookKind::Command => {
            if h.command.as_ref().is_none_or(|c| c.get_ref().first().is_none_or(|p| p.is_empty())) {
                check.at(i, &h.name, format!("{from}: kind \"command\" needs command = [\"program\", \"arg\", ...]"));
            }
            if let Some(v) = h.url.as_ref().or(h.token.as_ref()) {
                check.at(i, v, format!("{from}: url and token are for kind \"http\""));
            }
        }
    }
    let timeout = match &h.timeout {
        Some(t) => check.duration(i, t, "timeout").unwrap_or_default(),
        None => lifeboat_api::duration::parse(HOOK_TIMEOUT).expect("built-in durations parse"),
    };
    let retries = h.retries.as_ref().map_or(3, |r| *r.get_ref());
    if let Some(r) = h.retries.as_ref().filter(|r| *r.get_ref() > MAX_RETRIES) {
        check.at(i, r, format!("{from}: retries {} is more than {MAX_RETRIES}; a failover must not stall on one hook", r.get_ref()));
    }
    HookDef {
        name: h.name.get_ref().clone(),
        kind: h.kind,
        url: h.url.as_ref().map(|u| u.get_ref().clone()),
        token: h.token.as_ref().map(|t| t.get_ref().clone()),
        command: h.command.as_ref().map(|c| c.get_ref().clone()).unwrap_or_default(),
        timeout,
        retries,
    }
}

/// A cell's `[cell.failover]`: the standby (the tier's by default, never
/// colder) and its recovery sites.
pub fn cell(catalog: &Catalog<'_>, check: &mut Check<'_>, at: &At<'_>) -> CellFailover {
    // A cell without Postgres keeps no database standby, whatever its tier.
    let least = at.tier.as_ref().filter(|_| at.cell.postgres.is_some()).map_or(Standby::None, |t| Standby::of(t.strategy));
    let given = at.cell.failover.as_ref().map(|f| f.get_ref().clone()).unwrap_or_default();
    let standby = match &given.standby {
        Some(s) => {
            if *s.get_ref() < least {
                let tier = at.tier.as_ref().expect("a standby above none comes from a tier");
                let message = format!(
                    "{}: standby {:?} is colder than tier {:?} ({}) keeps; use {:?} or warmer (stream > archive > none)",
                    at.from,
                    s.get_ref().as_str(),
                    tier.name,
                    tier.strategy.as_str(),
                    least.as_str()
                );
                check.at(at.file, s, message);
            }
            *s.get_ref()
        }
        None => least,
    };
    if standby != Standby::None && at.cell.postgres.is_none() {
        check.at(at.file, &at.cell.name, format!("{}: a {:?} standby needs [cell.postgres]", at.from, standby.as_str()));
    }
    for s in &given.sites {
        catalog.sites.require(check, at.file, s, &format!("{} failover", at.from));
    }
    if standby != Standby::None && given.sites.is_empty() {
        check.at(
            at.file,
            &at.cell.name,
            format!("{}: a {:?} standby is kept at a recovery site; list one in failover.sites", at.from, standby.as_str()),
        );
    }
    let primary_conninfo = match (&given.primary_conninfo, &at.cell.postgres) {
        (Some(c), _) => {
            let instead = "give it in a passfile on the recovery site's host (passfile=PATH, or ~postgres/.pgpass)";
            match super::cell::conninfo_problem(c.get_ref(), instead) {
                Some(problem) => check.at(at.file, c, format!("{}: failover.primary_conninfo: {problem}", at.from)),
                None if standby != Standby::Stream => check.at(
                    at.file,
                    c,
                    format!("{}: failover.primary_conninfo is for a \"stream\" standby, this one is {:?}", at.from, standby.as_str()),
                ),
                None => {}
            }
            Some(c.get_ref().clone())
        }
        (None, Some(pg)) if standby == Standby::Stream => Some(pg.get_ref().conninfo.get_ref().clone()),
        _ => None,
    };
    CellFailover { standby, sites: given.sites.iter().map(|s| s.get_ref().clone()).collect(), primary_conninfo }
}

/// A scenario, resolved against the plan's tiers and hooks.
pub fn scenario(catalog: &Catalog<'_>, check: &mut Check<'_>, i: usize, s: &schema::Scenario, plan: &Plan) -> ScenarioDef {
    let from = format!("scenario {:?}", s.name.get_ref());
    let mut tier_order: Vec<String> = Vec::new();
    for t in &s.tier_order {
        catalog.tiers.require(check, i, t, &from);
        if tier_order.contains(t.get_ref()) {
            check.at(i, t, format!("{from}: tier {:?} is listed twice in tier_order", t.get_ref()));
        }
        tier_order.push(t.get_ref().clone());
    }
    let mut rest: Vec<_> = plan.tiers.iter().filter(|t| !tier_order.contains(&t.name)).collect();
    rest.sort_by_key(|t| (t.rto, t.name.clone()));
    tier_order.extend(rest.into_iter().map(|t| t.name.clone()));
    let parallelism = s.parallelism.as_ref().map_or(1, |p| *p.get_ref());
    if let Some(p) = s.parallelism.as_ref().filter(|p| *p.get_ref() == 0) {
        check.at(i, p, format!("{from}: parallelism must be at least 1"));
    }
    ScenarioDef {
        name: s.name.get_ref().clone(),
        scope: s.scope,
        description: s.description.clone(),
        tier_order,
        parallelism,
        approve: gates(check, i, s, &from),
        hooks: hooks(catalog, check, i, s, &from),
        rto: match &s.rto {
            Some(r) => check.duration(i, r, "rto").unwrap_or_default(),
            None => plan.tiers.iter().map(|t| t.rto).max().unwrap_or(Duration::ZERO),
        },
        test_schedule: None,
        test_failed: Vec::new(),
        chaos_schedule: None,
        chaos_cells: Vec::new(),
    }
}

/// The scenario's chaos drill: a cron, and cells that keep a `stream`
/// standby (a drill promotes it; a cold restore would lose the WAL the
/// crashed primary never archived).
pub fn chaos(check: &mut Check<'_>, i: usize, s: &schema::Scenario, scenario: &mut ScenarioDef, plan: &Plan) {
    let Some(given) = &s.chaos else { return };
    let from = format!("scenario {:?} chaos", scenario.name);
    if scenario.scope != schema::Scope::Cell {
        check.at(i, given, format!("{from}: a chaos drill fails one cell over and back; give it to a scenario with scope = \"cell\""));
        return;
    }
    let given = given.get_ref();
    match crate::plan::schedule::parse(given.schedule.get_ref()) {
        Ok(_) => scenario.chaos_schedule = Some(given.schedule.get_ref().clone()),
        Err(why) => check.at(i, &given.schedule, format!("{from}: schedule {why}")),
    }
    let hot = |name: &str| plan.cells.iter().any(|c| c.name == name && c.failover.standby == Standby::Stream);
    for c in &given.cells {
        if !hot(c.get_ref()) {
            check.at(i, c, format!("{from}: cell {:?} keeps no \"stream\" standby (a chaos drill promotes one)", c.get_ref()));
        }
    }
    scenario.chaos_cells = match given.cells.is_empty() {
        true => plan.cells.iter().filter(|c| hot(&c.name)).map(|c| c.name.clone()).collect(),
        false => given.cells.iter().map(|c| c.get_ref().clone()).collect(),
    };
}

/// The scenario's scheduled test: its cron ("off": none) and what each
/// test fails (each must be something the scenario's scope can lose).
pub fn test(check: &mut Check<'_>, i: usize, s: &schema::Scenario, scenario: &mut ScenarioDef, plan: &Plan) {
    let given = s.test.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default();
    let from = format!("scenario {:?} test", scenario.name);
    scenario.test_schedule = match &given.schedule {
        Some(e) if e.get_ref() == "off" => None,
        Some(e) => match crate::plan::schedule::parse(e.get_ref()) {
            Ok(_) => Some(e.get_ref().clone()),
            Err(why) => {
                check.at(i, e, format!("{from}: schedule {why}; or \"off\""));
                None
            }
        },
        None => Some(crate::plan::defaults::FAILOVER_TEST.to_string()),
    };
    let known = failures(plan, scenario);
    for f in &given.failed {
        if !known.contains(f.get_ref()) {
            let message = format!(
                "{from}: {} {:?} holds no cell this scenario fails over (it can fail: {})",
                scenario.scope.as_str(),
                f.get_ref(),
                known.join(", ")
            );
            check.at(i, f, message);
        }
    }
    scenario.test_failed = if given.failed.is_empty() { known } else { given.failed.iter().map(|f| f.get_ref().clone()).collect() };
}

/// The gated steps (default: fence, the point of no return).
fn gates(check: &mut Check<'_>, i: usize, s: &schema::Scenario, from: &str) -> Vec<Step> {
    let Some(approve) = &s.approve else { return vec![Step::Fence] };
    let mut steps = Vec::new();
    for name in approve.get_ref() {
        match Step::parse(name).filter(|s| Step::GATED.contains(s)) {
            Some(step) => steps.push(step),
            None => {
                let gated: Vec<&str> = Step::GATED.iter().map(|s| s.as_str()).collect();
                check.at(i, approve, format!("{from}: approve {name:?} is not a step a gate can hold ({})", gated.join(", ")))
            }
        }
    }
    steps
}

fn hooks(catalog: &Catalog<'_>, check: &mut Check<'_>, i: usize, s: &schema::Scenario, from: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (step, name) in &s.hooks {
        if !Step::HOOKED.contains(&step.as_str()) {
            check.at(i, name, format!("{from}: hooks.{step}: no step calls a hook by that name ({})", Step::HOOKED.join(", ")));
        }
        catalog.hooks.require(check, i, name, &format!("{from} hooks.{step}"));
        out.insert(step.clone(), name.get_ref().clone());
    }
    out
}

/// Every cell, region or cloud `scenario` could lose can be failed over:
/// each of its cells placed on a surviving site with room.
pub fn can_be_carried_out(check: &mut Check<'_>, i: usize, s: &schema::Scenario, scenario: &ScenarioDef, plan: &Plan) {
    for failed in failures(plan, scenario) {
        let cells = affected(plan, scenario, &failed);
        let (_, problems) = place(plan, scenario.scope, &cells);
        for p in problems {
            let message = format!("scenario {:?}: when {} {failed:?} fails, {p}", scenario.name, scenario.scope.as_str());
            check.at(i, &s.name, message);
        }
    }
}
