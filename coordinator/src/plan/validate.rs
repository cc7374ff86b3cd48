//! Checking a parsed plan and resolving it: unique names, references that
//! resolve, durations and cron expressions that parse, secrets given by
//! reference only, DR cells where the tier needs them, storage locations
//! for every scenario the tier covers, and schedules that can meet the
//! tier's RPO. Each problem names the file and line and says what to fix.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use lifeboat_drill::Check as SmokeCheck;
use toml::Spanned;

use super::load::PlanFile;
use super::schema::{self, Role, Strategy};
use super::{defaults, schedule, CellPlan, CellRetention, CellSchedules, Diagnostic, LocationDef, Plan, RegionDef, TierTarget};

/// Collects diagnostics with the position of a spanned value in a file.
struct Check<'a> {
    problems: Vec<Diagnostic>,
    files: &'a [PlanFile],
}

impl Check<'_> {
    fn at<T>(&mut self, file: usize, item: &Spanned<T>, message: String) {
        let f = &self.files[file];
        self.problems.push(Diagnostic::new(&f.path, f.line(item.span().start), message));
    }

    fn place<T>(&self, file: usize, item: &Spanned<T>) -> String {
        let f = &self.files[file];
        format!("{}:{}", f.path.display(), f.line(item.span().start))
    }

    fn duration(&mut self, file: usize, value: &Spanned<String>, what: &str) -> Option<Duration> {
        match humantime::parse_duration(value.get_ref()) {
            Ok(d) if d > Duration::ZERO => Some(d),
            Ok(_) => {
                self.at(file, value, format!("{what} must be longer than zero"));
                None
            }
            Err(e) => {
                self.at(
                    file,
                    value,
                    format!("{what} = {:?} is not a duration ({e}); write e.g. \"5m\", \"4h\" or \"35d\"", value.get_ref()),
                );
                None
            }
        }
    }

    /// A secret must be `env:NAME` or `file:PATH`, never the secret itself.
    fn secret(&mut self, file: usize, value: &Spanned<String>, what: &str) {
        let v = value.get_ref();
        let ok = match v.split_once(':') {
            Some(("env", name)) => !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
            Some(("file", path)) => !path.is_empty(),
            _ => false,
        };
        if !ok {
            self.at(file, value, format!("{what} must be a reference, env:NAME or file:PATH; secrets never go in plan files"));
        }
    }
}

/// Names of one kind, with where each was first defined.
struct Names {
    kind: &'static str,
    seen: HashMap<String, String>,
}

impl Names {
    fn new(kind: &'static str) -> Names {
        Names { kind, seen: HashMap::new() }
    }

    fn add(&mut self, check: &mut Check, file: usize, name: &Spanned<String>) {
        let n = name.get_ref();
        let valid = !n.is_empty() && n.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid {
            check.at(file, name, format!("{} name {n:?}: use lowercase letters, digits and '-'", self.kind));
        }
        let here = check.place(file, name);
        if let Some(first) = self.seen.get(n) {
            check.at(file, name, format!("duplicate {} name {n:?} (first defined at {first})", self.kind));
        } else {
            self.seen.insert(n.clone(), here);
        }
    }

    fn has(&self, n: &str) -> bool {
        self.seen.contains_key(n)
    }

    fn list(&self) -> String {
        let mut all: Vec<&str> = self.seen.keys().map(String::as_str).collect();
        all.sort();
        if all.is_empty() {
            "none are defined".into()
        } else {
            format!("defined: {}", all.join(", "))
        }
    }

    fn require(&self, check: &mut Check, file: usize, r: &Spanned<String>, from: &str) {
        if !self.has(r.get_ref()) {
            check.at(file, r, format!("{from} refers to unknown {} {:?} ({})", self.kind, r.get_ref(), self.list()));
        }
    }
}

/// A cron expression: the cell's, else the plan's default, else the
/// platform's; with where it was written (`None`: built in).
/// `dbname` of a libpq key=value conninfo.
fn conninfo_dbname(conninfo: &str) -> Option<String> {
    conninfo.split_whitespace().find_map(|kv| kv.strip_prefix("dbname=")).map(|v| v.trim_matches('\'').to_string())
}

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

/// Check `files` and resolve the plan (meaningful only without problems).
pub fn validate(dir: &Path, files: &[PlanFile]) -> (Plan, Vec<Diagnostic>) {
    let mut check = Check { problems: Vec::new(), files };
    let mut plan = Plan {
        name: String::new(),
        description: String::new(),
        report_public_key: None,
        tiers: vec![],
        regions: vec![],
        locations: vec![],
        cells: vec![],
    };

    // Plan metadata and defaults: at most one of each.
    let mut defaults_at: Option<(usize, &schema::Defaults)> = None;
    for (i, f) in files.iter().enumerate() {
        if let Some(meta) = &f.doc.plan {
            if plan.name.is_empty() {
                plan.name = meta.name.clone();
                plan.description = meta.description.clone();
                if let Some(k) = &meta.report_public_key {
                    let path = dir.join(k);
                    match crate::report::keys::Verifier::from_file(&path) {
                        Ok(_) => plan.report_public_key = Some(path),
                        Err(e) => check.problems.push(Diagnostic::new(&f.path, 0, format!("report_public_key {k:?}: {e:#}"))),
                    }
                }
            } else {
                check.problems.push(Diagnostic::new(&f.path, 0, "a second [plan] table; give the plan's name in one file".into()));
            }
        }
        if let Some(d) = &f.doc.defaults {
            if let Some((fi, _)) = defaults_at {
                let first = files[fi].path.display().to_string();
                check.problems.push(Diagnostic::new(
                    &f.path,
                    0,
                    format!("a second [defaults] table (the first is in {first}); merge them"),
                ));
            } else {
                defaults_at = Some((i, d));
            }
        }
    }
    if plan.name.is_empty() && !files.is_empty() {
        check.problems.push(Diagnostic::new(dir, 0, "no [plan] table naming the plan; add [plan] name = \"...\" to one file".into()));
    }

    // Names first, so references can be checked in any order.
    let (mut tiers, mut regions, mut locations, mut cells) =
        (Names::new("tier"), Names::new("region"), Names::new("location"), Names::new("cell"));
    for (i, f) in files.iter().enumerate() {
        f.doc.tier.iter().for_each(|t| tiers.add(&mut check, i, &t.get_ref().name));
        f.doc.region.iter().for_each(|r| regions.add(&mut check, i, &r.get_ref().name));
        f.doc.location.iter().for_each(|l| locations.add(&mut check, i, &l.get_ref().name));
        f.doc.cell.iter().for_each(|c| cells.add(&mut check, i, &c.get_ref().name));
    }

    let mut tier_targets: HashMap<String, TierTarget> = HashMap::new();
    let mut region_cloud = HashMap::new();
    let mut location_info: HashMap<String, (Role, String)> = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        for t in &f.doc.tier {
            let t = t.get_ref();
            let rpo = check.duration(i, &t.rpo, "rpo");
            let rto = check.duration(i, &t.rto, "rto");
            let kafka_rpo = match &t.kafka_rpo {
                Some(k) => check.duration(i, k, "kafka_rpo"),
                None => rpo,
            };
            if let (Some(rpo), Some(rto), Some(kafka_rpo)) = (rpo, rto, kafka_rpo) {
                let target = TierTarget { name: t.name.get_ref().clone(), rpo, rto, kafka_rpo, strategy: t.strategy };
                tier_targets.insert(target.name.clone(), target.clone());
                plan.tiers.push(target);
            }
        }
        for r in &f.doc.region {
            let r = r.get_ref();
            region_cloud.insert(r.name.get_ref().clone(), r.cloud);
            plan.regions.push(RegionDef { name: r.name.get_ref().clone(), cloud: r.cloud });
        }
        for l in &f.doc.location {
            let l = l.get_ref();
            regions.require(&mut check, i, &l.region, &format!("location {:?}", l.name.get_ref()));
            let url = l.url.get_ref();
            if !["file:///", "s3://", "az://"].iter().any(|s| url.starts_with(s)) || url.contains('@') {
                check.at(
                    i,
                    &l.url,
                    format!("url {url:?}: use file:///dir, s3://bucket/prefix or az://container/prefix, without credentials"),
                );
            }
            for (key, value) in &l.secrets {
                check.secret(i, value, &format!("secrets.{key}"));
            }
            location_info.insert(l.name.get_ref().clone(), (l.role, l.region.get_ref().clone()));
            plan.locations.push(LocationDef {
                name: l.name.get_ref().clone(),
                url: url.clone(),
                region: l.region.get_ref().clone(),
                role: l.role,
            });
        }
    }

    // Defaults: cron expressions and retention durations.
    let plan_sched = defaults_at.map(|(f, d)| (f, &d.schedules));
    let plan_keep = defaults_at.map(|(f, d)| (f, &d.retention));
    let keep = |check: &mut Check, v: Option<&Spanned<String>>, f: usize, builtin: &str, what: &str| -> Duration {
        match v {
            Some(v) => check.duration(f, v, what).unwrap_or_default(),
            None => humantime::parse_duration(builtin).expect("built-in durations parse"),
        }
    };
    let (dfile, dkeep) = match plan_keep {
        Some((f, k)) => (f, Some(k)),
        None => (0, None),
    };
    let retention = CellRetention {
        pg_full: keep(&mut check, dkeep.and_then(|k| k.pg_full.as_ref()), dfile, defaults::KEEP_PG_FULL, "retention.pg_full"),
        pg_incremental: keep(
            &mut check,
            dkeep.and_then(|k| k.pg_incremental.as_ref()),
            dfile,
            defaults::KEEP_PG_INCREMENTAL,
            "retention.pg_incremental",
        ),
        kafka: keep(&mut check, dkeep.and_then(|k| k.kafka.as_ref()), dfile, defaults::KEEP_KAFKA, "retention.kafka"),
    };

    let mut tenants_seen: HashMap<String, String> = HashMap::new();
    let now = chrono::Utc::now();
    for (i, f) in files.iter().enumerate() {
        for spanned in &f.doc.cell {
            let c = spanned.get_ref();
            let name = c.name.get_ref().clone();
            let from = format!("cell {name:?}");
            tiers.require(&mut check, i, &c.tier, &from);
            regions.require(&mut check, i, &c.region, &from);
            let tier = tier_targets.get(c.tier.get_ref()).cloned();
            let cloud = region_cloud.get(c.region.get_ref()).copied();

            // DR cell: needed by active-passive and warm-standby tiers.
            match &c.dr_cell {
                Some(dr) => {
                    cells.require(&mut check, i, dr, &format!("{from} dr_cell"));
                    if dr.get_ref() == &name {
                        check.at(i, dr, format!("{from} cannot be its own DR cell"));
                    }
                }
                None => {
                    if let Some(t) = tier.as_ref().filter(|t| t.strategy != Strategy::ColdStandby) {
                        check.at(
                            i,
                            &c.name,
                            format!("{from} is in tier {:?} ({:?}) but has no dr_cell; name the cell it fails over to", t.name, t.strategy),
                        );
                    }
                }
            }

            // Tenants live in exactly one cell.
            for t in &c.tenants {
                let here = check.place(i, t);
                if let Some(first) = tenants_seen.get(t.get_ref()) {
                    check.at(i, t, format!("tenant {:?} is already in another cell (at {first}); a tenant lives in one cell", t.get_ref()));
                } else {
                    tenants_seen.insert(t.get_ref().clone(), here);
                }
            }

            // Agent: an endpoint and its token, by reference.
            let agent = c.agent.get_ref();
            if !(agent.url.get_ref().starts_with("http://") || agent.url.get_ref().starts_with("https://")) {
                check.at(i, &agent.url, format!("agent url {:?}: use http(s)://host:port", agent.url.get_ref()));
            }
            match &agent.token {
                Some(token) => check.secret(i, token, "agent.token"),
                None => {
                    check.at(i, &c.agent, format!("{from}: agent.token is missing; give the agent's API token as env:NAME or file:PATH"))
                }
            }

            // Locations: a primary, plus what the tier's scenarios need.
            let mut roles = Vec::new();
            for l in &c.locations {
                locations.require(&mut check, i, l, &from);
                if let Some((role, region)) = location_info.get(l.get_ref()) {
                    roles.push(*role);
                    let loc_cloud = region_cloud.get(region).copied();
                    if *role == Role::CrossCloud && loc_cloud.is_some() && loc_cloud == cloud {
                        check.at(i, l, format!("location {:?} is cross-cloud but on the cell's own cloud", l.get_ref()));
                    }
                    if *role == Role::SecondaryRegion && region == c.region.get_ref() {
                        check.at(i, l, format!("location {:?} is a secondary region but in the cell's own region", l.get_ref()));
                    }
                }
            }
            if !roles.contains(&Role::Primary) {
                check.at(i, &c.name, format!("{from} has no location with role \"primary\""));
            }
            if tier.as_ref().is_some_and(|t| t.strategy != Strategy::ColdStandby) && !roles.contains(&Role::SecondaryRegion) {
                check.at(i, &c.name, format!("{from} needs a \"secondary-region\" location for its tier's regional-outage scenario"));
            }

            // Postgres and Kafka, and whether the schedules meet the tier's RPO.
            if let Some(pg) = &c.postgres {
                let pg = pg.get_ref();
                if pg.conninfo.get_ref().contains("password=") {
                    check.at(
                        i,
                        &pg.conninfo,
                        "conninfo holds a password; give it as postgres.password = \"env:...\" or \"file:...\"".into(),
                    );
                }
                if let Some(p) = &pg.password {
                    check.secret(i, p, "postgres.password");
                }
                let timeout = match &pg.archive_timeout {
                    Some(t) => check.duration(i, t, "archive_timeout"),
                    None => humantime::parse_duration(defaults::ARCHIVE_TIMEOUT).ok(),
                };
                if let (Some(t), Some(tier)) = (timeout, &tier) {
                    if t >= tier.rpo {
                        let target = pg.archive_timeout.as_ref().unwrap_or(&c.name);
                        check.at(
                            i,
                            target,
                            format!(
                                "archive_timeout {} cannot meet tier {:?}'s RPO of {}: WAL may wait that long before it is archived; lower it",
                                humantime::format_duration(t),
                                tier.name,
                                humantime::format_duration(tier.rpo)
                            ),
                        );
                    }
                }
            }
            if let Some(k) = &c.kafka {
                let brokers = k.get_ref().brokers.get_ref();
                if brokers.split(',').any(|b| b.rsplit_once(':').is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err())) {
                    check.at(i, &k.get_ref().brokers, format!("brokers {brokers:?}: give host:port[,host:port...]"));
                }
                if let Err(e) = regex::Regex::new(k.get_ref().topics.get_ref()) {
                    check.at(i, &k.get_ref().topics, format!("topics is not a valid regular expression: {e}"));
                }
            }

            let s = &c.schedules;
            let d = plan_sched;
            let pg_full = schedule_of(&s.pg_full, d.map(|(f, d)| (f, &d.pg_full)), defaults::PG_FULL, i);
            let pg_incr = schedule_of(&s.pg_incremental, d.map(|(f, d)| (f, &d.pg_incremental)), defaults::PG_INCREMENTAL, i);
            let kafka = schedule_of(&s.kafka_snapshot, d.map(|(f, d)| (f, &d.kafka_snapshot)), defaults::KAFKA_SNAPSHOT, i);
            let drill = schedule_of(&s.drill, d.map(|(f, d)| (f, &d.drill)), defaults::DRILL, i);
            let ret = schedule_of(&s.retention, d.map(|(f, d)| (f, &d.retention)), defaults::RETENTION, i);
            for (what, (expr, at)) in
                [("pg_full", &pg_full), ("pg_incremental", &pg_incr), ("kafka_snapshot", &kafka), ("drill", &drill), ("retention", &ret)]
            {
                let parsed = schedule::parse(expr);
                match (&parsed, at) {
                    (Err(e), Some((f, v))) => check.at(*f, v, format!("schedules.{what}: {e}")),
                    (Err(e), None) => check.at(i, &c.name, format!("schedules.{what}: {e}")),
                    (Ok(cron), _) => {
                        if what == "kafka_snapshot" && c.kafka.is_some() {
                            if let (Some(gap), Some(tier)) = (schedule::longest_gap(cron, now), &tier) {
                                if gap > tier.kafka_rpo {
                                    let message = format!(
                                        "schedules.kafka_snapshot {expr:?} leaves up to {} between snapshots, more than tier {:?}'s Kafka RPO of {}; snapshot more often or set the tier's kafka_rpo",
                                        humantime::format_duration(gap),
                                        tier.name,
                                        humantime::format_duration(tier.kafka_rpo)
                                    );
                                    match at {
                                        Some((f, v)) => check.at(*f, v, message),
                                        None => check.at(i, &c.name, message),
                                    }
                                }
                            }
                        }
                    }
                }
            }
            if c.postgres.is_none() && c.kafka.is_none() {
                check.at(i, &c.name, format!("{from} protects nothing: give it [cell.postgres] and/or [cell.kafka]"));
            }
            let mut smoke_checks = Vec::new();
            for smoke in &c.smoke {
                let sm = smoke.get_ref();
                let name = sm.name.get_ref().clone();
                let text = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.get_ref().clone());
                let found = match (text(&sm.sql), text(&sm.expect), sm.kafka.as_ref().map(|k| k.get_ref().as_str())) {
                    (Some(sql), Some(expect), None) if sm.topic.is_none() && sm.grace.is_none() => {
                        Some(SmokeCheck::Sql { name, sql, expect })
                    }
                    (None, None, Some("records-match-snapshot")) if sm.topic.is_none() => Some(SmokeCheck::RecordsMatchSnapshot { name }),
                    (None, None, Some("groups-translated")) if sm.topic.is_none() => Some(SmokeCheck::GroupsTranslated { name }),
                    (Some(sql), None, Some("payments-have-events")) => match text(&sm.topic) {
                        Some(topic) => {
                            let grace = text(&sm.grace).unwrap_or_else(|| "10s".into());
                            if let Some(g) = &sm.grace {
                                check.duration(i, g, "grace");
                            }
                            Some(SmokeCheck::PaymentsHaveEvents { name, sql, topic, grace })
                        }
                        None => {
                            check.at(
                                i,
                                &sm.name,
                                format!("smoke check {:?}: payments-have-events needs topic (the events' source topic)", sm.name.get_ref()),
                            );
                            None
                        }
                    },
                    (None, None, Some("payments-have-events")) => {
                        check.at(
                            i,
                            &sm.name,
                            format!("smoke check {:?}: payments-have-events needs sql returning each payment's key (text) and commit time, and topic", sm.name.get_ref()),
                        );
                        None
                    }
                    (_, _, Some(k)) if !["records-match-snapshot", "groups-translated", "payments-have-events"].contains(&k) => {
                        let at = sm.kafka.as_ref().expect("matched Some");
                        check.at(
                            i,
                            at,
                            format!("kafka check {k:?}: use records-match-snapshot, groups-translated or payments-have-events"),
                        );
                        None
                    }
                    _ => {
                        check.at(
                            i,
                            &sm.name,
                            format!(
                                "smoke check {:?}: give sql and expect; or kafka = records-match-snapshot or groups-translated alone; or kafka = payments-have-events with sql (key, commit time) and topic",
                                sm.name.get_ref()
                            ),
                        );
                        None
                    }
                };
                if let Some(found) = found {
                    if found.needs_kafka() && c.kafka.is_none() {
                        check.at(i, &sm.name, format!("smoke check {:?} reads Kafka, but {from} has no [cell.kafka]", sm.name.get_ref()));
                    }
                    smoke_checks.push(found);
                }
            }

            plan.cells.push(CellPlan {
                name,
                tier: c.tier.get_ref().clone(),
                region: c.region.get_ref().clone(),
                dr_cell: c.dr_cell.as_ref().map(|d| d.get_ref().clone()),
                tenants: c.tenants.iter().map(|t| t.get_ref().clone()).collect(),
                agent_url: agent.url.get_ref().clone(),
                agent_token: agent.token.as_ref().map(|t| t.get_ref().clone()).unwrap_or_default(),
                locations: c.locations.iter().map(|l| l.get_ref().clone()).collect(),
                postgres: c.postgres.is_some(),
                kafka_brokers: c.kafka.as_ref().map(|k| k.get_ref().brokers.get_ref().clone()),
                kafka_topics: c.kafka.as_ref().map(|k| k.get_ref().topics.get_ref().clone()),
                schedules: CellSchedules {
                    pg_full: pg_full.0,
                    pg_incremental: pg_incr.0,
                    kafka_snapshot: kafka.0,
                    drill: drill.0,
                    retention: ret.0,
                },
                retention: retention.clone(),
                database: c
                    .postgres
                    .as_ref()
                    .and_then(|p| conninfo_dbname(p.get_ref().conninfo.get_ref()))
                    .unwrap_or_else(|| "postgres".into()),
                smoke_checks,
            });
        }
    }
    if plan.cells.is_empty() && !files.is_empty() {
        check.problems.push(Diagnostic::new(dir, 0, "the plan has no [[cell]]".into()));
    }
    check.problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    (plan, check.problems)
}
