//! What the whole plan defines, read before any cell is checked: the names
//! of every tier, region, location, cell, recovery site, hook and scenario
//! (so references resolve in any order), the tiers' targets, the regions'
//! clouds, the locations' roles, the recovery sites and hooks, and the
//! defaults' retention ages.

use std::collections::HashMap;
use std::time::Duration;

use super::super::load::PlanFile;
use super::super::schema::{self, Cloud, Role};
use super::super::{defaults, CellRetention, LocationDef, Plan, RegionDef, TierTarget};
use super::check::{Check, Names};

pub struct Catalog<'a> {
    pub tiers: Names,
    pub regions: Names,
    pub locations: Names,
    pub cells: Names,
    pub sites: Names,
    pub hooks: Names,
    pub scenarios: Names,
    pub tier_targets: HashMap<String, TierTarget>,
    pub region_cloud: HashMap<String, Cloud>,
    /// Per location: its role and region.
    pub location_info: HashMap<String, (Role, String)>,
    /// The `[defaults.schedules]` table and its file.
    pub schedules: Option<(usize, &'a schema::Schedules)>,
    pub retention: CellRetention,
    pub now: time::OffsetDateTime,
}

impl<'a> Catalog<'a> {
    /// Read every file's tiers, regions and locations into `plan`, checking them.
    pub fn read(
        files: &'a [PlanFile],
        defaults: Option<(usize, &'a schema::Defaults)>,
        check: &mut Check<'_>,
        plan: &mut Plan,
    ) -> Catalog<'a> {
        let mut catalog = Catalog {
            tiers: Names::new("tier"),
            regions: Names::new("region"),
            locations: Names::new("location"),
            cells: Names::new("cell"),
            sites: Names::new("recovery_site"),
            hooks: Names::new("hook"),
            scenarios: Names::new("scenario"),
            tier_targets: HashMap::new(),
            region_cloud: HashMap::new(),
            location_info: HashMap::new(),
            schedules: defaults.map(|(f, d)| (f, &d.schedules)),
            retention: retention(defaults, check),
            now: crate::clock::now(),
        };
        // Names first, so references can be checked in any order.
        for (i, f) in files.iter().enumerate() {
            f.doc.tier.iter().for_each(|t| catalog.tiers.add(check, i, &t.get_ref().name));
            f.doc.region.iter().for_each(|r| catalog.regions.add(check, i, &r.get_ref().name));
            f.doc.location.iter().for_each(|l| catalog.locations.add(check, i, &l.get_ref().name));
            f.doc.cell.iter().for_each(|c| catalog.cells.add(check, i, &c.get_ref().name));
            f.doc.recovery_site.iter().for_each(|s| catalog.sites.add(check, i, &s.get_ref().name));
            f.doc.hook.iter().for_each(|h| catalog.hooks.add(check, i, &h.get_ref().name));
            f.doc.scenario.iter().for_each(|s| catalog.scenarios.add(check, i, &s.get_ref().name));
        }
        for (i, f) in files.iter().enumerate() {
            f.doc.tier.iter().for_each(|t| catalog.tier(check, i, t.get_ref(), plan));
            for r in &f.doc.region {
                let r = r.get_ref();
                catalog.region_cloud.insert(r.name.get_ref().clone(), r.cloud);
                plan.regions.push(RegionDef { name: r.name.get_ref().clone(), cloud: r.cloud });
            }
            f.doc.location.iter().for_each(|l| catalog.location(check, i, l.get_ref(), plan));
        }
        for (i, f) in files.iter().enumerate() {
            f.doc.recovery_site.iter().for_each(|s| plan.sites.push(super::failover::site(&catalog, check, i, s.get_ref())));
            f.doc.hook.iter().for_each(|h| plan.hooks.push(super::failover::hook(check, i, h.get_ref())));
        }
        catalog
    }

    fn tier(&mut self, check: &mut Check<'_>, i: usize, t: &schema::Tier, plan: &mut Plan) {
        let rpo = check.duration(i, &t.rpo, "rpo");
        let rto = check.duration(i, &t.rto, "rto");
        let kafka_rpo = match &t.kafka_rpo {
            Some(k) => check.duration(i, k, "kafka_rpo"),
            None => rpo,
        };
        if let (Some(rpo), Some(rto), Some(kafka_rpo)) = (rpo, rto, kafka_rpo) {
            let target = TierTarget { name: t.name.get_ref().clone(), rpo, rto, kafka_rpo, strategy: t.strategy };
            self.tier_targets.insert(target.name.clone(), target.clone());
            plan.tiers.push(target);
        }
    }

    fn location(&mut self, check: &mut Check<'_>, i: usize, l: &schema::Location, plan: &mut Plan) {
        self.regions.require(check, i, &l.region, &format!("location {:?}", l.name.get_ref()));
        let url = l.url.get_ref();
        if !["file:///", "s3://", "az://"].iter().any(|s| url.starts_with(s)) || url.contains('@') {
            let message = format!("url {url:?}: use file:///dir, s3://bucket/prefix or az://container/prefix, without credentials");
            check.at(i, &l.url, message);
        }
        for (key, value) in &l.secrets {
            check.secret(i, value, &format!("secrets.{key}"));
        }
        self.location_info.insert(l.name.get_ref().clone(), (l.role, l.region.get_ref().clone()));
        plan.locations.push(LocationDef {
            name: l.name.get_ref().clone(),
            url: url.clone(),
            region: l.region.get_ref().clone(),
            role: l.role,
        });
    }
}

/// The defaults' retention ages (the platform's where not given).
fn retention(defaults: Option<(usize, &schema::Defaults)>, check: &mut Check<'_>) -> CellRetention {
    let (file, given) = match defaults {
        Some((f, d)) => (f, Some(&d.retention)),
        None => (0, None),
    };
    let mut keep = |value: Option<&toml::Spanned<String>>, builtin: &str, what: &str| -> Duration {
        match value {
            Some(v) => check.duration(file, v, what).unwrap_or_default(),
            None => lifeboat_api::duration::parse(builtin).expect("built-in durations parse"),
        }
    };
    CellRetention {
        pg_full: keep(given.and_then(|k| k.pg_full.as_ref()), defaults::KEEP_PG_FULL, "retention.pg_full"),
        pg_incremental: keep(given.and_then(|k| k.pg_incremental.as_ref()), defaults::KEEP_PG_INCREMENTAL, "retention.pg_incremental"),
        kafka: keep(given.and_then(|k| k.kafka.as_ref()), defaults::KEEP_KAFKA, "retention.kafka"),
    }
}
