//! A cell's smoke checks (`[[cell.smoke]]`): exactly one of SQL with an
//! expected value, a Kafka check alone, or the payments-against-events
//! check with its SQL and topic; a Kafka check only on a cell with Kafka.

use std::time::Duration;

use lifeboat_api::Check as SmokeCheck;
use toml::Spanned;

use super::super::schema::Smoke;
use super::cell::At;
use super::check::Check;

const KAFKA_CHECKS: [&str; 3] = ["records-match-snapshot", "groups-translated", "payments-have-events"];

/// The cell's smoke checks that are valid; every other one is a diagnostic.
pub fn checks(check: &mut Check<'_>, at: &At<'_>) -> Vec<SmokeCheck> {
    let mut found = Vec::new();
    for smoke in &at.cell.smoke {
        let sm = smoke.get_ref();
        let Some(c) = one(check, at.file, sm) else { continue };
        if c.needs_kafka() && at.cell.kafka.is_none() {
            check.at(at.file, &sm.name, format!("smoke check {:?} reads Kafka, but {} has no [cell.kafka]", sm.name.get_ref(), at.from));
        }
        found.push(c);
    }
    found
}

/// One smoke check, or None after saying what is wrong with it.
fn one(check: &mut Check<'_>, i: usize, sm: &Smoke) -> Option<SmokeCheck> {
    let name = sm.name.get_ref().clone();
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|v| v.get_ref().clone());
    let problem = match (text(&sm.sql), text(&sm.expect), sm.kafka.as_ref().map(|k| k.get_ref().as_str())) {
        (Some(sql), Some(expect), None) if sm.topic.is_none() && sm.grace.is_none() => return Some(SmokeCheck::Sql { name, sql, expect }),
        (None, None, Some("records-match-snapshot")) if sm.topic.is_none() => return Some(SmokeCheck::RecordsMatchSnapshot { name }),
        (None, None, Some("groups-translated")) if sm.topic.is_none() => return Some(SmokeCheck::GroupsTranslated { name }),
        (Some(sql), None, Some("payments-have-events")) => match text(&sm.topic) {
            Some(topic) => {
                let grace = match &sm.grace {
                    Some(g) => check.duration(i, g, "grace").unwrap_or_default(),
                    None => Duration::from_secs(10),
                };
                return Some(SmokeCheck::PaymentsHaveEvents { name, sql, topic, grace });
            }
            None => format!("smoke check {name:?}: payments-have-events needs topic (the events' source topic)"),
        },
        (None, None, Some("payments-have-events")) => {
            format!("smoke check {name:?}: payments-have-events needs sql returning each payment's key (text) and commit time, and topic")
        }
        (_, _, Some(k)) if !KAFKA_CHECKS.contains(&k) => {
            let at = sm.kafka.as_ref().expect("matched Some");
            check.at(i, at, format!("kafka check {k:?}: use records-match-snapshot, groups-translated or payments-have-events"));
            return None;
        }
        _ => format!(
            "smoke check {name:?}: give sql and expect; or kafka = records-match-snapshot or groups-translated alone; or kafka = payments-have-events with sql (key, commit time) and topic"
        ),
    };
    check.at(i, &sm.name, problem);
    None
}
