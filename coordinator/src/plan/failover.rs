//! Where each cell of a failover scenario is recovered: the recovery site
//! that hosts it and the plan location its data comes from, chosen from the
//! plan alone. The validator runs it for every cell, region and cloud a
//! scenario could lose, so a plan that could not be carried out does not
//! validate; the failover planner starts from the same placement.
//!
//! Rules: cells go in the scenario's tier order (then by name); each takes
//! the first of its `[cell.failover] sites` that survives the failure
//! (another agent than the cell's own; another region; another cloud),
//! has Kafka brokers if the cell has Kafka, and still has room. Data comes
//! from the nearest of the cell's locations that survives: its primary
//! when only the cell failed, its `secondary-region` copy (else the
//! `cross-cloud` one) when its region failed, its `cross-cloud` copy when
//! its cloud failed.

use std::collections::HashMap;

use serde::Serialize;

use super::{CellPlan, LocationDef, Plan, Role, ScenarioDef, Scope, SiteDef};

/// One cell's place in a scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Placement {
    pub cell: String,
    pub site: String,
    /// The plan location its data comes from.
    pub location: String,
}

/// The cells lost when `failed` (a cell, region or cloud name, as `scope`
/// says) fails, in the order `scenario` fails them over.
pub fn affected<'a>(plan: &'a Plan, scenario: &ScenarioDef, failed: &str) -> Vec<&'a CellPlan> {
    let mut cells: Vec<&CellPlan> = plan
        .cells
        .iter()
        .filter(|c| match scenario.scope {
            Scope::Cell => c.name == failed,
            Scope::Region => c.region == failed,
            Scope::Cloud => plan.cloud_of(&c.region).is_some_and(|cloud| cloud.as_str() == failed),
        })
        .collect();
    let rank = |c: &CellPlan| scenario.tier_order.iter().position(|t| *t == c.tier).unwrap_or(usize::MAX);
    cells.sort_by(|a, b| (rank(a), &a.name).cmp(&(rank(b), &b.name)));
    cells
}

/// Every cell, region or cloud (as `scenario`'s scope says) whose failure
/// loses at least one cell, each once.
pub fn failures(plan: &Plan, scenario: &ScenarioDef) -> Vec<String> {
    let all: Vec<String> = match scenario.scope {
        Scope::Cell => plan.cells.iter().map(|c| c.name.clone()).collect(),
        Scope::Region => plan.regions.iter().map(|r| r.name.clone()).collect(),
        Scope::Cloud => plan.regions.iter().map(|r| r.cloud.as_str().to_string()).collect(),
    };
    let mut seen = std::collections::BTreeSet::new();
    all.into_iter().filter(|f| seen.insert(f.clone()) && !affected(plan, scenario, f).is_empty()).collect()
}

/// Place `cells`, which fail together, in their order: the placements, and
/// for each cell that fits nowhere, why.
pub fn place(plan: &Plan, scope: Scope, cells: &[&CellPlan]) -> (Vec<Placement>, Vec<String>) {
    let mut taken: HashMap<&str, u32> = HashMap::new();
    let (mut placed, mut problems) = (Vec::new(), Vec::new());
    for cell in cells {
        let Some(location) = source_location(plan, scope, cell) else {
            problems.push(format!("cell {:?} has no location outside the failed {} to recover from", cell.name, scope.as_str()));
            continue;
        };
        let usable: Vec<&SiteDef> = cell
            .failover
            .sites
            .iter()
            .filter_map(|s| plan.site(s))
            .filter(|s| survives(plan, scope, cell, s) && (cell.kafka_brokers.is_none() || s.kafka_brokers.is_some()))
            .collect();
        let free = usable.iter().find(|s| taken.get(s.name.as_str()).copied().unwrap_or(0) < s.capacity);
        match free {
            Some(site) => {
                *taken.entry(&site.name).or_default() += 1;
                placed.push(Placement { cell: cell.name.clone(), site: site.name.clone(), location: location.to_string() });
            }
            None if usable.is_empty() => problems.push(no_site(scope, cell)),
            None => {
                let full: Vec<String> = usable.iter().map(|s| format!("{} (capacity {})", s.name, s.capacity)).collect();
                problems.push(format!("cell {:?}: every recovery site it may use is full: {}", cell.name, full.join(", ")));
            }
        }
    }
    (placed, problems)
}

fn no_site(scope: Scope, cell: &CellPlan) -> String {
    let outside = match scope {
        Scope::Cell => "hosted by another agent than its own",
        Scope::Region => "outside its region",
        Scope::Cloud => "on another cloud",
    };
    let kafka = if cell.kafka_brokers.is_some() { " with [recovery_site.kafka]" } else { "" };
    let sites = if cell.failover.sites.is_empty() { "none".to_string() } else { cell.failover.sites.join(", ") };
    format!("cell {:?} has no recovery site {outside}{kafka} (its [cell.failover] sites: {sites})", cell.name)
}

/// Whether `site` is still there when `cell` fails under `scope`.
fn survives(plan: &Plan, scope: Scope, cell: &CellPlan, site: &SiteDef) -> bool {
    match scope {
        Scope::Cell => site.agent_url != cell.agent_url,
        Scope::Region => site.region != cell.region,
        Scope::Cloud => plan.cloud_of(&site.region) != plan.cloud_of(&cell.region),
    }
}

/// The plan location `cell` is recovered from under `scope`: the nearest
/// of its locations that survives (primary, then the secondary-region
/// copy, then the cross-cloud copy).
pub fn source_location<'a>(plan: &'a Plan, scope: Scope, cell: &CellPlan) -> Option<&'a str> {
    let survives = |l: &LocationDef| match scope {
        Scope::Cell => true,
        Scope::Region => l.region != cell.region,
        Scope::Cloud => plan.cloud_of(&l.region) != plan.cloud_of(&cell.region),
    };
    let rank = |l: &LocationDef| [Role::Primary, Role::SecondaryRegion, Role::CrossCloud].iter().position(|r| *r == l.role);
    let candidates = cell.locations.iter().filter_map(|n| plan.locations.iter().find(|d| d.name == *n)).filter(|d| survives(d));
    candidates.min_by_key(|d| rank(d)).map(|d| d.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shipped platform plan places every cell in each of its scenarios.
    #[test]
    fn the_platform_plan_places_every_cell() {
        let plan = crate::plan::tests::platform_plan();
        let region = plan.scenarios.iter().find(|s| s.scope == Scope::Region).unwrap();
        let cells = affected(&plan, region, "azure-weu");
        assert_eq!(cells.len(), 5);
        assert!(cells.windows(2).all(|w| plan_rank(region, w[0]) <= plan_rank(region, w[1])), "tier order");
        let (placed, problems) = place(&plan, Scope::Region, &cells);
        assert!(problems.is_empty(), "{problems:?}");
        // weu-5 (tier 3, cold) has no secondary-region copy: its cross-cloud one serves.
        let from_copy = |p: &Placement| p.location == "weu-copy-in-neu" || (p.cell == "weu-5" && p.location == "aws-euc1");
        assert!(placed.iter().all(from_copy), "{placed:?}");
        let cloud = plan.scenarios.iter().find(|s| s.scope == Scope::Cloud).unwrap();
        let all = affected(&plan, cloud, "azure");
        assert_eq!(all.len(), plan.cells.len());
        let (placed, problems) = place(&plan, Scope::Cloud, &all);
        assert!(problems.is_empty() && placed.len() == all.len(), "{problems:?}");
        assert!(placed.iter().all(|p| p.location.starts_with("aws-")), "{placed:?}");
    }

    fn plan_rank(s: &ScenarioDef, c: &CellPlan) -> usize {
        s.tier_order.iter().position(|t| *t == c.tier).unwrap()
    }

    /// Capacity is shared: two cells that need the same one-cell site
    /// cannot both fail over into it.
    #[test]
    fn a_full_site_is_named() {
        let mut plan = crate::plan::tests::platform_plan();
        plan.cells.iter_mut().find(|c| c.name == "weu-2").unwrap().failover.sites = vec!["neu-1-host".into()];
        let region = plan.scenarios.iter().find(|s| s.scope == Scope::Region).unwrap();
        let cells = affected(&plan, region, "azure-weu");
        let (placed, problems) = place(&plan, Scope::Region, &cells);
        assert_eq!((problems.len(), placed.len()), (1, 4), "the others are still placed: {problems:?}");
        assert!(problems[0].contains("\"weu-2\"") && problems[0].contains("full"), "{problems:?}");
    }
}
