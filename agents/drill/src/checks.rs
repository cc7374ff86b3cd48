//! The smoke checks a drill runs against its scratch environment: SQL with
//! an expected value, restored Kafka records against the snapshot,
//! translated consumer groups, and the cross-system check that the
//! database and the event log describe the same moment.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::TopicPartitionList;
use serde_json::json;
use time::OffsetDateTime;

use lifeboat_kafka::client::{blocking, Brokers};
use lifeboat_kafka::restore::{RestoreReport as KafkaRestored, RestoreRequest as KafkaRequest};
use lifeboat_postgres::backup::describe;
use lifeboat_repository::Repository;

use lifeboat_api::{Check, Outcome, Step};

/// What a check may look at.
pub struct Restored<'a> {
    /// Scratch Postgres conninfo, as the checks' role (None: Postgres was
    /// not restored; an error: the checks cannot log in, and fail with it).
    pub pg: Option<Result<String, String>>,
    /// The Kafka restore (None: Kafka was not restored).
    pub kafka: Option<(&'a Repository, &'a KafkaRequest, &'a KafkaRestored)>,
    pub target: OffsetDateTime,
}

/// Run one check; a check that cannot run is skipped with the reason.
pub async fn run(check: &Check, r: &Restored<'_>) -> Step {
    let started = Instant::now();
    let name = check.name();
    let (outcome, message, evidence) = match outcome(check, r).await {
        Ok((true, message, evidence)) => (Outcome::Passed, message, evidence),
        Ok((false, message, evidence)) => (Outcome::Failed, message, evidence),
        Err(NotRun::Skipped(reason)) => (Outcome::Skipped, Some(reason), serde_json::Value::Null),
        Err(NotRun::Error(e)) => (Outcome::Failed, Some(e), serde_json::Value::Null),
    };
    Step::new(name, outcome, started.elapsed().as_secs_f64(), message, evidence)
}

/// A check that could not look: skipped (nothing to look at) or failed (an error).
enum NotRun {
    Skipped(String),
    Error(String),
}

type Found = (bool, Option<String>, serde_json::Value);

fn error(e: impl std::fmt::Display) -> NotRun {
    NotRun::Error(e.to_string())
}

async fn outcome(check: &Check, r: &Restored<'_>) -> Result<Found, NotRun> {
    let pg = || match &r.pg {
        None => Err(NotRun::Skipped("Postgres was not restored".into())),
        Some(login) => login.clone().map_err(NotRun::Error),
    };
    let kafka = || r.kafka.ok_or_else(|| NotRun::Skipped("Kafka was not restored".into()));
    match check {
        Check::Sql { sql, expect, .. } => {
            let value = query_value(&pg()?, sql).await.map_err(error)?;
            let ok = value.as_deref() == Some(expect.as_str());
            let message = (!ok).then(|| format!("returned {}, expected {expect}", value.as_deref().unwrap_or("NULL")));
            Ok((ok, message, json!({ "sql": sql, "value": value, "expect": expect })))
        }
        Check::RecordsMatchSnapshot { .. } => {
            let (repo, req, _) = kafka()?;
            let v = lifeboat_kafka::verify::verify(repo, req).await.map_err(error)?;
            let partitions: Vec<_> = v
                .partitions
                .iter()
                .map(|p| {
                    json!({ "topic": p.target, "partition": p.partition, "from_offset": p.from_offset, "records": p.actual.records,
                            "sha256": p.actual.sha256, "first_timestamp": p.actual.first_timestamp, "last_timestamp": p.actual.last_timestamp, "ok": p.ok })
                })
                .collect();
            let records: u64 = v.partitions.iter().map(|p| p.actual.records).sum();
            let ok = v.problems.is_empty() && v.partitions.iter().all(|p| p.ok);
            let message = (!ok).then(|| v.problems.join("; "));
            Ok((ok, message, json!({ "snapshot": v.snapshot, "records": records, "partitions": partitions })))
        }
        Check::GroupsTranslated { .. } => {
            let (_, req, restored) = kafka()?;
            if restored.groups.is_empty() {
                return Err(NotRun::Skipped("the snapshot holds no consumer group offsets".into()));
            }
            let (brokers, restored) = (req.brokers.clone(), restored.clone());
            blocking(move || groups_translated(&brokers, &restored)).await.map_err(error)
        }
        Check::PaymentsHaveEvents { sql, topic, grace, .. } => {
            let (_, req, _) = kafka()?;
            payments_have_events(&pg()?, sql, &req.brokers, &req.target_topic(topic), r.target, *grace).await.map_err(error)
        }
    }
}

/// The first value `sql` returns, as text. One statement only (a prepared
/// statement holds one), run in the checks' read-only session.
async fn query_value(conninfo: &str, sql: &str) -> Result<Option<String>, String> {
    let client = crate::confine::session(conninfo).await?;
    client.prepare(sql).await.map_err(|e| format!("{sql}: {}", describe(&e)))?;
    let messages = client.simple_query(sql).await.map_err(|e| format!("{sql}: {}", describe(&e)))?;
    for m in messages {
        if let tokio_postgres::SimpleQueryMessage::Row(row) = m {
            return Ok(row.get(0).map(str::to_string));
        }
    }
    Err(format!("{sql}: returned no row"))
}

fn groups_translated(brokers: &Brokers, restored: &KafkaRestored) -> Result<Found, String> {
    let mut wrong = Vec::new();
    let mut evidence = Vec::new();
    for g in &restored.groups {
        let consumer = brokers.group(&g.target_group).map_err(|e| e.to_string())?;
        let mut tpl = TopicPartitionList::new();
        for o in &g.offsets {
            tpl.add_partition(&target_topic(restored, &o.topic), o.partition);
        }
        let committed =
            consumer.committed_offsets(tpl, brokers.timeout).map_err(|e| format!("reading offsets of {}: {e}", g.target_group))?;
        for o in &g.offsets {
            let topic = target_topic(restored, &o.topic);
            let got = committed.find_partition(&topic, o.partition).and_then(|e| e.offset().to_raw());
            evidence.push(json!({ "group": g.target_group, "topic": topic, "partition": o.partition,
                                  "source_offset": o.source_offset, "expected": o.target_offset, "committed": got }));
            if got != Some(o.target_offset) {
                wrong.push(format!("{} on {topic}/{}: committed {got:?}, expected {}", g.target_group, o.partition, o.target_offset));
            }
        }
    }
    let message = (!wrong.is_empty()).then(|| wrong.join("; "));
    Ok((wrong.is_empty(), message, json!({ "groups": restored.groups.len(), "offsets": evidence })))
}

fn target_topic(restored: &KafkaRestored, source: &str) -> String {
    restored.topics.iter().find(|t| t.source == source).map(|t| t.target.clone()).unwrap_or_else(|| source.to_string())
}

/// Payments against their events in the restored topic.
async fn payments_have_events(
    conninfo: &str,
    sql: &str,
    brokers: &Brokers,
    topic: &str,
    target: OffsetDateTime,
    grace: Duration,
) -> Result<Found, String> {
    let client = crate::confine::session(conninfo).await?;
    let rows = client.query(sql, &[]).await.map_err(|e| format!("{sql}: {}", describe(&e)))?;
    let mut payments: HashMap<String, OffsetDateTime> = HashMap::new();
    for row in rows {
        let key: String = row.try_get(0).map_err(|e| format!("{sql}: the first column must be the payment's key as text: {e}"))?;
        let at: std::time::SystemTime =
            row.try_get(1).map_err(|e| format!("{sql}: the second column must be the commit time (timestamptz): {e}"))?;
        payments.insert(key, OffsetDateTime::from(at));
    }
    let events = {
        let (brokers, topic) = (brokers.clone(), topic.to_string());
        blocking(move || read_keys(&brokers, &topic)).await?
    };
    let settled = target - grace;
    let mut missing: Vec<&String> = payments.iter().filter(|(k, at)| **at <= settled && !events.contains(*k)).map(|(k, _)| k).collect();
    let in_flight = payments.iter().filter(|(k, at)| **at > settled && !events.contains(*k)).count();
    let after_target = payments.values().filter(|at| **at > target).count();
    let mut orphans: Vec<&String> = events.iter().filter(|k| !payments.contains_key(*k)).collect();
    missing.sort();
    orphans.sort();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("{} payments committed by the target have no event (first: {})", missing.len(), missing[0]));
    }
    if !orphans.is_empty() {
        problems.push(format!(
            "{} events name payments the restored database lacks (first: {}): Kafka is ahead of Postgres, the cut is inconsistent",
            orphans.len(),
            orphans[0]
        ));
    }
    if after_target > 0 {
        problems.push(format!("{after_target} payments are stamped after the target: the database went past it"));
    }
    let evidence = json!({
        "payments": payments.len(), "events": events.len(), "topic": topic,
        "missing_events": missing.len(), "events_without_payment": orphans.len(),
        "in_flight_within_grace": in_flight, "grace_seconds": grace.as_secs_f64(),
        "missing_sample": missing.iter().take(10).collect::<Vec<_>>(),
        "orphan_sample": orphans.iter().take(10).collect::<Vec<_>>(),
    });
    let message = (!problems.is_empty()).then(|| problems.join("; "));
    Ok((problems.is_empty(), message, evidence))
}

/// Every record key of `topic` (all partitions, log start to end).
fn read_keys(brokers: &Brokers, topic: &str) -> Result<HashSet<String>, String> {
    let consumer = brokers.reader().map_err(|e| e.to_string())?;
    let metadata = brokers.metadata(&consumer).map_err(|e| e.to_string())?;
    let Some(t) = metadata.topics().iter().find(|t| t.name() == topic) else {
        return Err(format!("topic {topic} was not restored"));
    };
    let mut keys = HashSet::new();
    for p in t.partitions() {
        let (low, high) = brokers.watermarks(&consumer, topic, p.id()).map_err(|e| e.to_string())?;
        brokers
            .read_range(&consumer, (topic, p.id()), (low, high), "rerun the drill", |r| {
                if let Some(k) = r.key {
                    keys.insert(String::from_utf8_lossy(k).into_owned());
                }
                Ok(())
            })
            .map_err(|e| e.to_string())?;
    }
    Ok(keys)
}
