//! Checking a parsed plan and resolving it: unique names, references that
//! resolve, durations and cron expressions that parse, secrets given by
//! reference only, DR cells where the tier needs them, storage locations
//! for every scenario the tier covers, and schedules that can meet the
//! tier's RPO. Each problem names the file and line and says what to fix.
//!
//! One validator per section: [`header`] (`[plan]`, `[defaults]`),
//! [`catalog`] (tiers, regions, locations, recovery sites, hooks, the
//! defaults' retention), then [`cell`] for each cell, with [`smoke`] for
//! its smoke checks and [`failover`] for its `[cell.failover]`, then each
//! scenario ([`failover`] too), checked against the resolved cells.

mod catalog;
mod cell;
mod check;
mod failover;
mod smoke;

use std::collections::HashMap;
use std::path::Path;

use super::load::PlanFile;
use super::{schema, Diagnostic, Plan};
use check::Check;

/// Check `files` and resolve the plan (meaningful only without problems).
pub fn validate(dir: &Path, files: &[PlanFile]) -> (Plan, Vec<Diagnostic>) {
    let mut check = Check { problems: Vec::new(), files };
    let (mut plan, defaults) = header(dir, files, &mut check);
    let catalog = catalog::Catalog::read(files, defaults, &mut check, &mut plan);
    let mut tenants = HashMap::new();
    for (i, f) in files.iter().enumerate() {
        for c in &f.doc.cell {
            let cell = cell::validate(&catalog, &mut check, &mut tenants, i, c.get_ref());
            plan.cells.push(cell);
        }
    }
    if plan.cells.is_empty() && !files.is_empty() {
        check.problems.push(Diagnostic::new(dir, 0, "the plan has no [[cell]]".into()));
    }
    for (i, f) in files.iter().enumerate() {
        for s in &f.doc.recovery_site {
            failover::guest_ports(&mut check, i, s.get_ref(), &plan);
        }
        for s in &f.doc.scenario {
            let mut scenario = failover::scenario(&catalog, &mut check, i, s.get_ref(), &plan);
            failover::can_be_carried_out(&mut check, i, s.get_ref(), &scenario, &plan);
            failover::test(&mut check, i, s.get_ref(), &mut scenario, &plan);
            failover::chaos(&mut check, i, s.get_ref(), &mut scenario, &plan);
            plan.scenarios.push(scenario);
        }
    }
    check.problems.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    (plan, check.problems)
}

/// `[plan]` and `[defaults]`: one of each across the files. Returns the
/// plan with its name, description and report key, and where the defaults are.
fn header<'a>(dir: &Path, files: &'a [PlanFile], check: &mut Check<'_>) -> (Plan, Option<(usize, &'a schema::Defaults)>) {
    let mut plan = Plan {
        name: String::new(),
        description: String::new(),
        report_public_key: None,
        controls: vec![],
        tiers: vec![],
        regions: vec![],
        locations: vec![],
        cells: vec![],
        sites: vec![],
        hooks: vec![],
        scenarios: vec![],
    };
    let mut defaults: Option<(usize, &schema::Defaults)> = None;
    for (i, f) in files.iter().enumerate() {
        if let Some(meta) = &f.doc.plan {
            if plan.name.is_empty() {
                plan.name = meta.name.clone();
                plan.description = meta.description.clone();
                plan.report_public_key = report_key(dir, f, meta, check);
                plan.controls = controls(f, meta, check);
            } else {
                check.problems.push(Diagnostic::new(&f.path, 0, "a second [plan] table; give the plan's name in one file".into()));
            }
        }
        if let Some(d) = &f.doc.defaults {
            match defaults {
                Some((first, _)) => {
                    let first = files[first].path.display().to_string();
                    let message = format!("a second [defaults] table (the first is in {first}); merge them");
                    check.problems.push(Diagnostic::new(&f.path, 0, message));
                }
                None => defaults = Some((i, d)),
            }
        }
    }
    if plan.name.is_empty() && !files.is_empty() {
        check.problems.push(Diagnostic::new(dir, 0, "no [plan] table naming the plan; add [plan] name = \"...\" to one file".into()));
    }
    (plan, defaults)
}

/// `[[plan.controls]]`: each with an id, named once, for known operations.
fn controls(f: &PlanFile, meta: &schema::PlanMeta, check: &mut Check<'_>) -> Vec<crate::plan::ControlDef> {
    let mut out: Vec<crate::plan::ControlDef> = Vec::new();
    for c in &meta.controls {
        let line = f.line(c.span().start);
        let problem = |m: String| Diagnostic::new(&f.path, line, m);
        let c = c.get_ref();
        if c.id.trim().is_empty() {
            check.problems.push(problem("a control without an id; give id = \"ISO 27001 A.8.13\" or the like".into()));
            continue;
        }
        if out.iter().any(|o| o.id == c.id) {
            check.problems.push(problem(format!("control {:?} is listed twice", c.id)));
            continue;
        }
        if let Some(bad) = c.operations.iter().find(|o| !crate::plan::REPORT_OPERATIONS.contains(&o.as_str())) {
            let known = crate::plan::REPORT_OPERATIONS.join(", ");
            check.problems.push(problem(format!("control {:?}: operation {bad:?} writes no report; give {known}", c.id)));
            continue;
        }
        out.push(crate::plan::ControlDef { id: c.id.clone(), title: c.title.clone(), operations: c.operations.clone() });
    }
    out
}

/// The published report key, relative to the plan directory, if it reads.
fn report_key(dir: &Path, f: &PlanFile, meta: &schema::PlanMeta, check: &mut Check<'_>) -> Option<std::path::PathBuf> {
    let k = meta.report_public_key.as_ref()?;
    let path = dir.join(k);
    match crate::report::keys::Verifier::from_file(&path) {
        Ok(_) => Some(path),
        Err(e) => {
            check.problems.push(Diagnostic::new(&f.path, 0, format!("report_public_key {k:?}: {e:#}")));
            None
        }
    }
}
